"""The story-to-video flow: wiring of the stages, no media or model code.

    plan -> narrate -> align -> storyboard -> keyframe[shot] -> animate[shot] -> compose -> <out>/<slug>/

Every stage is a cached task that returns a small reference to a file artifact. The
storyboard cuts the narration into shots on its word times, so the pictures wait for the
words; each shot's clip needs its keyframe and its length.

Profiles whose models share one GPU (`memory.release_between_stages`) run the model stages
one family at a time: narrate and align, then every keyframe, then every clip, each family's
models loaded once for all shots and released before the next family loads.
"""

from __future__ import annotations

import time
from pathlib import Path

from prefect import flow, get_run_logger, unmapped
from prefect.futures import wait
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from faceless.flows import deliver, report, roots
from faceless.flows.timeline import shot_timeline
from faceless.tasks.runtime import gpu, store
from faceless.tasks import models
from faceless.tasks.stages.align import align_task
from faceless.tasks.stages.animate import animate_task
from faceless.tasks.runtime.caching import with_store
from faceless.tasks.media.captions import check_fonts
from faceless.tasks.stages.compose import compose_task
from faceless.tasks.stages.keyframe import keyframe_task
from faceless.tasks.media.music import import_music
from faceless.tasks.stages.narrate import narrate_task, voice_identity
from faceless.tasks.stages.plan import StoryError, plan_task, read_story_file, split_front_matter
from faceless.tasks.settings import load_profile
from faceless.tasks.stages.storyboard import storyboard_task


def story_input(story: str | None, story_file: str | None) -> tuple[str, str | None]:
    """The story text and its title (the file's name), from exactly one of the two."""
    if (story is None) == (story_file is None):
        raise StoryError("give exactly one of story (the text) or story_file (a path)")
    if story_file is not None:
        roots.check("story_file", story_file)
        return read_story_file(story_file), Path(story_file).stem.replace("_", " ")
    return story, None


def model_identities(profile: dict) -> dict:
    """Model identity per stage. Fails first, in seconds, naming every model whose weights
    are not on this machine (before any stage starts)."""
    models.require(profile)
    align = profile.get("align", {})
    return {
        "narrate": voice_identity(profile["narrate"]),
        "align": (models.identity(align["model"], "ctranslate2") if align.get("backend") == "faster-whisper"
                  else "the voice's own word times"),
        "keyframe": {role: models.identity(profile["keyframe"][role]) for role in ("base", "refiner")},
        "animate": {"svd": models.identity(profile["animate"]["model"])},
    }


def backends(profile: dict) -> dict:
    """What made each part of the video, in words, for the manifest."""
    return {
        "narrate": profile["narrate"]["backend"],
        "align": profile.get("align", {}).get("backend", "voice"),
        "keyframe": "sdxl base + refiner",
        "animate": "svd",
    }


def _release(logger, *families: str) -> None:
    released = models.release(*families)
    if released:
        logger.info("released %s before the next model stage", ", ".join(released))


def _record(stage: str, run, scene: int | None = None) -> tuple[dict, dict]:
    """The artifact of a finished task (a future or a state) and its line in the manifest."""
    if hasattr(run, "wait"):
        run.wait()
        run = run.state
    ref = run.result()
    cached = run.name == "Cached" or ref["cached"]
    return ref, {
        "stage": stage,
        "scene": scene,
        "key": ref["key"],
        "cached": cached,
        "seconds": 0.0 if cached else ref["seconds"],
        "attempts": ref["attempts"],
        "degraded": ref["degraded"],
    }


@flow(name="story-to-video", task_runner=ThreadPoolTaskRunner(max_workers=4))
def story_to_video(
    story: str | None = None,
    story_file: str | None = None,
    profile: str = "offline",
    out: str = "./out",
    size: str | None = None,
    music: str | None = None,
) -> str:
    """Render a story into a narrated, captioned video (vertical unless `size`, e.g. 1920x1080,
    says otherwise), with `music` (an audio file) ducked under the voice if given; returns the
    video's path."""
    logger = get_run_logger()
    started = time.perf_counter()
    loads_before = dict(models.LOADS)
    text, title = story_input(story, story_file)
    _, body = split_front_matter(text)  # refuse malformed front matter before any work
    deliver.output_folder(out)  # refuse a bad folder before any work, not after
    settings = load_profile(profile, size)
    identities = model_identities(settings)
    check_fonts(body, settings["compose"]["captions"])  # fail now, not at compose
    roots.check("music", music)
    music_ref = import_music(music) if music else None
    compose_settings = settings["compose"]
    animate_settings = {
        **settings["animate"],
        "out_width": compose_settings["width"],
        "out_height": compose_settings["height"],
        "out_fps": compose_settings["fps"],
    }
    one_family_at_a_time = bool(settings.get("memory", {}).get("release_between_stages"))
    stages: list[dict] = []

    plan_ref, record = _record("plan", with_store(plan_task)(text, title or "", settings["plan"], return_state=True))
    stages.append(record)
    plan = store.read_json(store.path_of(plan_ref, "plan.json"))

    narration, record = _record("narrate", with_store(narrate_task)(
        [{"index": s["index"], "text": s["text"], "words": s["words"]} for s in plan["sentences"]],
        settings["narrate"], identities["narrate"], return_state=True))
    stages.append(record)
    alignment, record = _record("align", with_store(align_task)(
        narration, settings["align"], identities["align"], return_state=True))
    stages.append(record)
    if one_family_at_a_time:
        _release(logger, "bark", "whisper")

    board, record = _record("storyboard", with_store(storyboard_task)(
        plan_ref, alignment, settings["plan"], return_state=True))
    stages.append(record)
    shots = store.read_json(store.path_of(board, "shots.json"))["shots"]
    logger.info("%s: %d sentences in %d shots", plan["title"], len(plan["sentences"]), len(shots))
    indexes = [shot["index"] for shot in shots]

    keyframe_futures = with_store(keyframe_task, retries=gpu.retries_for(settings["keyframe"])).map(
        [{k: shot[k] for k in ("prompt", "prompt_2", "negative_prompt", "seed")} for shot in shots], indexes,
        unmapped(settings["keyframe"]), unmapped(identities["keyframe"]),
    )
    duration = store.read_json(store.path_of(narration, "words.json"))["duration"]
    timeline = shot_timeline([shot["start"] for shot in shots], duration, compose_settings)
    if one_family_at_a_time:
        wait(keyframe_futures)
        _release(logger, "sdxl")
    animate_futures = with_store(animate_task, retries=gpu.retries_for(animate_settings)).map(
        keyframe_futures, indexes, [shot["seed"] for shot in shots], timeline["clip_frames"],
        unmapped(animate_settings), unmapped(identities["animate"]),
    )

    # Let every shot finish (or fail) before reporting: a failure at shot 7 still leaves
    # shots 1-6 done and cached for the resume.
    wait([*keyframe_futures, *animate_futures])
    keyframes, clips = [], []
    for index, future in zip(indexes, keyframe_futures):
        ref, record = _record("keyframe", future, index)
        keyframes.append(ref)
        stages.append(record)
    for index, future in zip(indexes, animate_futures):
        ref, record = _record("animate", future, index)
        clips.append(ref)
        stages.append(record)

    video, record = _record("compose", with_store(compose_task)(
        narration, alignment, clips, {"bounds": timeline["bounds"], "handles": timeline["handles"]},
        compose_settings, music_ref, return_state=True))
    stages.append(record)

    bounds, fps = timeline["bounds"], compose_settings["fps"]
    scene_rows = [
        {**shot, "start": bounds[i] / fps, "frames": bounds[i + 1] - bounds[i],
         "clip_frames": timeline["clip_frames"][i],
         **{k: clips[i]["meta"][k] for k in ("windows", "fps_conditioning", "interpolation")}}
        for i, shot in enumerate(shots)
    ]
    manifest = {
        "story": {"title": plan["title"], "slug": plan["slug"], "sentences": len(plan["sentences"]),
                  "words": sum(len(s["words"]) for s in plan["sentences"])},
        "profile": profile,
        "settings": settings,
        "models": identities,
        "backends": backends(settings),
        "model_loads": {family: count - loads_before.get(family, 0) for family, count in models.LOADS.items()
                        if count > loads_before.get(family, 0)},
        "seeds": [shot["seed"] for shot in shots],
        "scenes": scene_rows,
        "narration": {"duration": duration, **narration["meta"]},
        "subtitles": alignment["meta"],
        "video": video["meta"],
        "music": music_ref and {"file": Path(music).name, **music_ref["meta"]},
        "stages": stages,
        "flow_run_id": str(flow_run.id) if flow_run.id else None,
        "rendered_by": store.rendered_by(),
        "seconds": round(time.perf_counter() - started, 3),
    }
    target = deliver.export(Path(out), plan["slug"], video, narration, alignment, keyframes, manifest)
    report.publish(manifest, target)
    computed = [f"{r['stage']}{'' if r['scene'] is None else '[' + str(r['scene']) + ']'} {r['seconds']:.1f}s"
                for r in stages if not r["cached"]]
    logger.info("computed: %s; cached: %d of %d stages",
                ", ".join(computed) or "nothing", sum(r["cached"] for r in stages), len(stages))
    logger.info("video: %s", target / "video.mp4")
    return str(target / "video.mp4")
