"""Stages return typed results (tasks/stages/results.py): the flow reads no file, the results
round-trip through Prefect's record serializers and the store, and they enter downstream cache
keys exactly as the plain artifact references they replaced."""

from __future__ import annotations

import ast
import json
import pickle
from pathlib import Path

import pytest

from faceless.tasks.runtime import caching, store
from faceless.tasks.stages import results
from faceless.tasks.stages.results import (AlignmentResult, ArtifactRef, ClipResult, KeyframeResult, MusicResult,
                                           NarrationResult, PlanResult, StageResult, Storyboard, VideoResult)

ROOT = Path(__file__).resolve().parent.parent
FLOW = ROOT / "flows" / "story_to_video.py"

# Everything in the flow module that would open or parse a file.
READERS = {"open", "read_json", "read_text", "read_bytes", "load", "loads", "path_of", "path", "fetch"}


def test_the_flow_module_opens_no_file_and_reads_no_json():
    tree = ast.parse(FLOW.read_text(encoding="utf-8"))
    calls = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            calls.add(func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else "")
    assert not calls & READERS, sorted(calls & READERS)
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                for alias in node.names}
    modules = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {"json", "store", "open"} & imported
    assert "faceless.tasks.runtime.store" not in modules


def _ref(stage: str, files: dict[str, str], **meta) -> dict:
    return {"kind": "artifact", "stage": stage, "key": "k" * 32, "files": files, "meta": meta, "seconds": 1.5,
            "attempts": 2, "degraded": {"decode_chunk_size": 4}, "rendered_by": "here", "cached": False}


def examples() -> list[StageResult]:
    shot = {"index": 0, "sentences": [0], "words": (0, 3), "text": "A fox ran.", "start": 0.0, "end": 1.25,
            "cast": ["Fox"], "prompt": "a fox", "prompt_2": "a fox, night", "prompt_tokens": 5,
            "description": "a fox running, night", "negative_prompt": "blurry", "seed": 7}
    return [
        PlanResult.of(_ref("plan", {"plan.json": "a"}, sentences=1), title="Fox", slug="fox", style="ink",
                      setting="", cast={"Fox": "a red fox"}, seed=3, negative_prompt="blurry",
                      sentences=[{"index": 0, "text": "A fox ran.", "words": ["A", "fox", "ran."]}]),
        NarrationResult.of(_ref("narrate", {"narration.wav": "b", "words.json": "c"}, duration=1.25), duration=1.25),
        AlignmentResult.of(_ref("align", {"words.json": "d", "subtitles.srt": "e", "subtitles.vtt": "f"}, cues=1)),
        Storyboard.of(_ref("storyboard", {"shots.json": "g"}, shots=1), shots=[shot]),
        KeyframeResult.of(_ref("keyframe", {"keyframe.png": "h"}, seed=7)),
        ClipResult.of(_ref("animate", {"clip.mp4": "i", "frames/0000.png": "j"}, windows=1,
                           fps_conditioning=None, interpolation=None)),
        VideoResult.of(_ref("compose", {"video.mp4": "l"}, frames=30, loudness={"music": None})),
        MusicResult.of(_ref("music", {"music.m4a": "m"}, source="song.m4a", sha256="m")),
    ]


@pytest.mark.parametrize("result", examples(), ids=lambda r: type(r).__name__)
def test_results_round_trip_through_json_and_pickle(result):
    assert type(result).model_validate_json(result.model_dump_json()) == result
    assert json.loads(result.model_dump_json())  # plain JSON all through
    assert pickle.loads(pickle.dumps(result)) == result
    assert type(result).__module__.startswith("faceless.tasks.stages.")


@pytest.mark.parametrize("result", examples(), ids=lambda r: type(r).__name__)
def test_results_round_trip_through_prefect_serializers(result):
    from prefect.serializers import JSONSerializer, PickleSerializer

    for serializer in (PickleSerializer(), JSONSerializer()):
        back = serializer.loads(serializer.dumps(result))
        assert type(back) is type(result) and back == result


def test_every_result_model_lives_in_a_stages_module():
    """A JSON record reader rebuilds only pydantic models from faceless.tasks.stages modules."""
    from pydantic import BaseModel

    models = [v for v in vars(results).values() if isinstance(v, type) and issubclass(v, BaseModel)]
    assert len(models) >= 11
    for model in models:
        if model is BaseModel:
            continue
        assert model.__module__ == "faceless.tasks.stages.results"
        for field in model.model_fields.values():  # nested models only, no dataclasses
            assert not hasattr(field.annotation, "__dataclass_fields__")


def test_a_result_enters_a_key_as_its_reference_did():
    """Downstream keys stay those of the plain references: no artifact is remade for this."""
    for result in examples():
        plain = result.ref.model_dump()
        assert store.artifact_key("next", 1, {"x": result}) == store.artifact_key("next", 1, {"x": plain})
        assert store.artifact_key("next", 1, {"x": [result]}) == store.artifact_key("next", 1, {"x": [plain]})
        # Where it came from (cached, seconds, machine) does not enter the key.
        moved = result.model_copy(update={"ref": result.ref.model_copy(update={"cached": True, "seconds": 9.0})})
        assert store.artifact_key("next", 1, {"x": moved}) == store.artifact_key("next", 1, {"x": result})
    board = examples()[3]
    assert store.artifact_key("keyframe", 3, {"shot": board.keyframe_inputs()[0]}) == store.artifact_key(
        "keyframe", 3, {"shot": {k: getattr(board.shots[0], k) for k in results.KEYFRAME_INPUTS}})


def test_prefect_records_of_dict_results_are_not_reused():
    assert caching.prefect_key("plan", "abc") == "plan-r2-abc"


def test_results_reach_their_files_and_round_trip_through_the_store(tmp_path, monkeypatch):
    monkeypatch.setenv("FACELESS_HOME", str(tmp_path))
    monkeypatch.delenv("FACELESS_SCRATCH", raising=False)

    def build(directory: Path) -> dict:
        store.write_json(directory / "shots.json", {"shots": [examples()[3].shots[0].model_dump(mode="json")]})
        return {"shots": 1}

    ref = store.produce("storyboard", "s" * 32, build)
    board = Storyboard.of(ref, **store.read_json(store.path_of(ref, "shots.json")))
    assert board.key == "s" * 32 and board.meta == {"shots": 1} and not board.ref.cached
    assert board.path("shots.json") == store.artifact_dir("storyboard", "s" * 32) / "shots.json"
    assert board.shots == examples()[3].shots and board.indexes == [0] and board.seeds == [7]
    assert board.starts == [0.0] and board.descriptions == ["a fox running, night"]
    assert store.as_ref(board) == ref
    again = Storyboard.of(store.load("storyboard", "s" * 32), shots=board.shots)
    assert again.ref.cached and store.artifact_key("x", 1, {"b": again}) == store.artifact_key("x", 1, {"b": board})
    with pytest.raises(KeyError):
        board.path("missing.json")


def test_meta_is_held_as_the_manifest_holds_it():
    fresh = KeyframeResult.of(_ref("keyframe", {"keyframe.png": "h"}, size=(720, 1280), latent_shape=[1, 4]))
    assert fresh.meta == {"size": [720, 1280], "latent_shape": [1, 4]}
    assert KeyframeResult.model_validate_json(fresh.model_dump_json()).meta == fresh.meta


def test_plan_and_music_helpers():
    plan, *_, music = examples()
    assert plan.voice_lines() == [{"index": 0, "text": "A fox ran.", "words": ["A", "fox", "ran."]}]
    assert plan.word_count == 3 and music.file == "music.m4a"
    with pytest.raises(ValueError):
        ArtifactRef.model_validate({"kind": "other", "stage": "x", "key": "y", "files": {}})


class _Transaction:
    def __init__(self, key: str) -> None:
        self.key = key


def _as_task(monkeypatch, task, **inputs):
    """Run a stage task's body as Prefect would, with the key its cache policy computes."""
    key = task.cache_policy.compute_key(None, inputs, {})
    monkeypatch.setattr(caching, "get_transaction", lambda: _Transaction(key))
    return task.fn(**inputs)


def test_a_stage_returns_the_same_result_built_or_found_in_the_store(tmp_path, monkeypatch):
    """Built: from what the stage has in memory. Found (an earlier run, another machine): read
    back from the artifact's files. The two are the same result."""
    from faceless.tasks.stages.plan import plan_task
    from faceless.tasks.stages.storyboard import storyboard_task

    monkeypatch.setenv("FACELESS_HOME", str(tmp_path))
    story = "---\ncast:\n  Mara: a girl in a red coat\n---\nMara ran. She stopped, and then she smiled."
    settings = {"style": "ink", "seed": 5, "negative_prompt": "blurry"}
    built = _as_task(monkeypatch, plan_task, story=story, title="", settings=settings)
    found = _as_task(monkeypatch, plan_task, story=story, title="", settings=settings)
    assert isinstance(built, PlanResult) and not built.ref.cached and found.ref.cached
    assert found.model_dump(exclude={"ref"}) == built.model_dump(exclude={"ref"})
    assert built.cast == {"Mara": "a girl in a red coat"} and len(built.sentences) == 2
    assert json.loads(built.path("plan.json").read_text()) == built.model_dump(mode="json", exclude={"ref"})

    words = [{"index": i, "sentence": 0 if i < 2 else 1, "text": w, "start": 0.4 * i, "end": 0.4 * i + 0.3}
             for i, w in enumerate("Mara ran. She stopped, and then she smiled.".split())]
    alignment = AlignmentResult.of(store.produce("align", "a" * 32, lambda d: store.write_json(
        d / "words.json", {"duration": 3.5, "words": words})))
    plan_settings = {"shot_seconds": {"target": 2.0, "max": 3.0}}
    built = _as_task(monkeypatch, storyboard_task, plan=found, alignment=alignment, settings=plan_settings)
    found = _as_task(monkeypatch, storyboard_task, plan=found, alignment=alignment, settings=plan_settings)
    assert not built.ref.cached and found.ref.cached and found.shots == built.shots
    assert [s.model_dump(mode="json") for s in built.shots] == json.loads(built.path("shots.json").read_text())["shots"]
    assert built.shots[-1].end == 3.5 and "Mara: a girl in a red coat" in built.shots[-1].description
