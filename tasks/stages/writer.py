"""Shot writer: a language model rewrites each shot of the storyboard as what the camera sees.

The storyboard stage cuts the narration into shots and gives each the `rules` prompt (its words,
cast, setting and style). With `storyboard.writer: llm` this stage runs next: the profile's
small instruction-tuned model (loaded once for the story, on the GPU slot) writes each shot's
structured visual description (subject, action, setting, camera, motion, a short CLIP prompt and
a long T5/UMT5 description) under a JSON schema (tasks/text/shot_writing.py), and the shot's
prompts are made from it with the shot's cast descriptions and the story's style kept, within
CLIP's 77 tokens.

A shot whose answer is still unusable keeps its rules prompt: its `writer` says "rules" and
`writer_note` says why (the log says it too). Shots keep their times, words and seeds: only
what the pictures are made from changes, so keyframes follow the words as before.

Its artifact is the written storyboard, shots.json, keyed by the rules storyboard, the story's
plan, the writer's settings and the model's identity.
"""

from __future__ import annotations

import logging
from pathlib import Path

from prefect import task

from faceless.tasks import models
from faceless.tasks.runtime import gpu, store
from faceless.tasks.runtime.caching import ArtifactPolicy, run_stage_keeping
from faceless.tasks.stages.results import PlanResult, Storyboard
from faceless.tasks.text.shot_writing import description_schema, messages, read_description, shot_prompts

STAGE_VERSION = 1


def _logger():
    try:
        from prefect import get_run_logger

        return get_run_logger()
    except Exception:  # the plain function, outside a run
        return logging.getLogger("faceless.writer")


def _backend():
    """The storyboard's model backend, the shot writer (tasks/backends/base.py)."""
    from faceless.tasks.backends import base as backends

    return backends.get(backends.names("storyboard")[0])


def write_shot(writer, plan: dict, story: str, shot: dict, settings: dict) -> dict:
    """The shot with its prompts written by the model, or as it was (writer "rules") with the
    reason when the answer is unusable."""
    cast = {name: plan["cast"][name] for name in shot["cast"]}
    chat = messages(story=story, shot_text=shot["text"], cast=cast, setting=plan["setting"],
                    style=plan["style"], max_chars=settings["max_field_chars"])
    answer = _backend().generate_json(writer, chat, description_schema(settings["max_field_chars"]),
                                      max_new_tokens=settings["max_new_tokens"],
                                      temperature=settings["temperature"], seed=shot["seed"])
    written, reason = read_description(answer)
    if written is None:
        _logger().warning("shot %d: the writer's answer is unusable (%s): it keeps the rules prompt",
                          shot["index"], reason)
        return {**shot, "writer": "rules", "writer_note": f"unusable answer: {reason}"}
    prompts = shot_prompts(written, [f"{name}: {looks}" for name, looks in cast.items()], plan["style"])
    return {**shot, "prompt": prompts.prompt, "prompt_2": prompts.prompt_2, "prompt_tokens": prompts.tokens,
            "description": prompts.description, "visual": written.model_dump(), "writer": "llm",
            "writer_note": None}


def write_storyboard(plan_json: Path, shots_json: Path, settings: dict, directory: Path) -> tuple[dict, dict]:
    """The written shots.json in `directory`; returns the artifact's metadata and its content."""
    plan = store.read_json(plan_json)
    shots = store.read_json(shots_json)["shots"]
    story = " ".join(sentence["text"] for sentence in plan["sentences"])

    def on_gpu() -> list[dict]:
        writer = _backend().load_cached(settings["model"])
        with models.MODEL_LOCK, models.cpu_threads(writer.device, settings["cpu_threads"]):
            return [write_shot(writer, plan, story, shot, settings) for shot in shots]

    written = gpu.on_gpu("storyboard", on_gpu)
    board = {"shots": written}
    store.write_json(directory / "shots.json", board)
    fallbacks = [s["index"] for s in written if s["writer"] != "llm"]
    return {"shots": len(written), "written": len(written) - len(fallbacks), "fallbacks": fallbacks,
            "max_prompt_tokens": max(s["prompt_tokens"] for s in written)}, board


@task(name="writer", cache_policy=ArtifactPolicy(stage="writer", version=STAGE_VERSION))
def writer_task(plan: PlanResult, board: Storyboard, settings: dict, model: str) -> Storyboard:
    """`model`: the writer model's identity (its cache key part; the spec is in `settings`)."""
    ref, written = run_stage_keeping("writer", lambda directory: write_storyboard(
        plan.path("plan.json"), board.path("shots.json"), settings, directory))
    return Storyboard.of(ref, **(written or store.read_json(store.path_of(ref, "shots.json"))))
