"""The story-to-video flow: wiring of the stages, no media or model code.

    plan -> narrate -> align -> storyboard (-> writer) -> keyframe[shot] (-> review) -> animate[shot] -> compose
        `-> cast[member] (keyframe backends that take references) --^                music ---^

With `storyboard.writer: llm` a language model rewrites each shot's prompts (tasks/stages/writer.py);
with `review` a person approves or edits the shots after their keyframes (flows/review.py).
With a keyframe backend that takes cast references (studio's SDXL with `keyframe.references`),
the cast stage makes one reference picture per cast member, or takes the story's own, and each
shot's keyframe is conditioned on the references of the members it shows (tasks/stages/cast.py).

Every stage is a cached task that writes a file artifact and returns a small typed result: the
artifact's reference and what the next stages need (tasks/stages/results.py), so this flow
never opens a file. The storyboard cuts the narration into shots on its word times, so the
pictures wait for the words; each shot's clip needs its keyframe and its length
(tasks/stages/timeline.py).

Profiles whose models share one GPU (`memory.release_between_stages`) run the model stages
one family at a time: narrate and align, then every keyframe, then every clip, each family's
models loaded once for all shots and released before the next family loads.
"""

from __future__ import annotations

import functools
from pathlib import Path

from prefect import flow, get_run_logger, unmapped
from prefect.futures import wait
from prefect.task_runners import ThreadPoolTaskRunner

from faceless.flows import deliver, report
from faceless.flows.preflight import preflight
from faceless.flows.review import review_storyboard
from faceless.flows.manifest import StageLedger, build_manifest
from faceless.flows.parameters import ProfileName
from faceless.tasks import models
from faceless.tasks.backends import base as backends
from faceless.tasks.runtime import gpu, live
from faceless.tasks.runtime.caching import with_store
from faceless.tasks.stages.align import align_task
from faceless.tasks.stages.animate import animate_task, expect_prompts
from faceless.tasks.stages.cast import cast_members, cast_task, shot_references, takes_references
from faceless.tasks.stages.compose import compose_task
from faceless.tasks.stages.keyframe import drawing_groups, keyframe_task
from faceless.tasks.stages.music import music_task
from faceless.tasks.stages.narrate import narrate_task
from faceless.tasks.stages.plan import plan_task
from faceless.tasks.stages.storyboard import storyboard_task
from faceless.tasks.stages.timeline import clip_settings, shot_timeline
from faceless.tasks.stages.writer import writer_task


def _release(logger, *families: str) -> None:
    released = models.release(*families)
    if released:
        logger.info("released %s before the next model stage", ", ".join(released))


def _storyboard(ledger, logger, plan, alignment, settings: dict, identities: dict):
    """The shots with their prompts: the rules storyboard, then, with `storyboard.writer: llm`, a
    language model's rewrite of what each shot shows (tasks/stages/writer.py)."""
    board = ledger.record("storyboard", with_store(storyboard_task)(plan, alignment, settings["plan"], return_state=True))
    if settings["storyboard"]["writer"] == "llm":
        board = ledger.record("writer", with_store(writer_task)(
            plan, board, settings["storyboard"], identities["storyboard"], return_state=True))
        # Once a story: nothing later needs the writer, and the GPU memory does.
        _release(logger, *backends.families("storyboard"))
    return board


def _cast(ledger, plan, settings: dict, identity: dict, images: dict) -> dict:
    """A reference per cast member, {name: CastResult}, when the keyframe backend takes them
    ({} otherwise): all made before the first keyframe, which is conditioned on them."""
    members = cast_members(plan.cast, images) if takes_references(settings) else []
    if not members:
        return {}
    futures = with_store(cast_task, retries=gpu.retries_for(settings)).map(
        members, list(range(len(members))), unmapped(settings), unmapped(plan.style), unmapped(plan.seed),
        unmapped(plan.negative_prompt), unmapped(identity))
    wait(futures)
    return {member["name"]: ledger.record("cast", future, i) for i, (member, future) in enumerate(zip(members, futures))}


def _keyframes(board, settings: dict, identity: dict, cast: dict, release=None) -> list:
    """A keyframe task per shot (a shot whose prompt, seed and references are unchanged comes
    back Cached), conditioned on the references of the cast members it shows, in shot order.
    Shots are run by the backend that draws them (modern: schnell for the shots showing nobody,
    klein for the others, `drawing_section`); with `release` (one family at a time) each group
    waits for the one before and the other keyframe families are released first."""
    references = [shot_references(shot.cast, cast) for shot in board.shots]
    inputs, futures, previous = board.keyframe_inputs(), [None] * len(board.shots), []
    for section, family, shots in drawing_groups(settings, references):
        if release:
            wait(previous)
            release(*[other for other in backends.families("keyframe") if other != family])
        previous = with_store(keyframe_task, retries=gpu.retries_for(section)).map(
            [inputs[i] for i in shots], [board.indexes[i] for i in shots], unmapped(settings), unmapped(identity),
            [references[i] for i in shots])
        for i, future in zip(shots, previous):
            futures[i] = future
    return futures


@flow(name="story-to-video", task_runner=ThreadPoolTaskRunner(max_workers=4))
def story_to_video(story: str = "", story_file: str = "", profile: ProfileName = "offline", profile_file: str = "",
                   out: str = "./out", size: str = "", music: str = "", voice: str = "",
                   redo_degraded: bool = False, review: bool = False, review_edits: str = "") -> str:
    """Render a story into a narrated, captioned video (vertical unless `size` says otherwise),
    with `music` ducked under the voice if given; returns the video's path (or, for a local run
    with `review` and no `review_edits`, the storyboard to review as text). Give exactly one of
    `story` and `story_file`; an empty text parameter is one not given. The run form draws each
    parameter from this signature (flows/parameters.py) and its description from Args below.

    Args:
        story: The story itself, typed or pasted here (UTF-8, up to 20,000 characters; it may
            start with front matter between two --- lines). Leave it empty to use story_file.
        story_file: Or the path of a UTF-8 .txt file with the story, on the worker's machine
            (relative to the clone). Leave it empty when the story is typed above.
        profile: One of the installed profiles: offline runs on a CPU with no network; studio,
            fast, modern and modern-quality need a GPU and the models' weights; tiny, modern-tiny
            and modern-quality-tiny are the smallest (random weights, for trying a code path out).
        profile_file: Or the path of a profile YAML file of your own, used instead of profile.
            Leave it empty to use profile.
        out: The folder the video goes into, in a folder named after the story (video.mp4,
            subtitles, narration, keyframes, manifest.json).
        size: The video's WIDTHxHEIGHT, e.g. 1080x1920, 1920x1080 or 1080x1080. Leave it empty
            for the profile's own (720x1280).
        music: The path of an audio file to loop under the narration, ducked while the voice
            speaks. Leave it empty for none.
        voice: The voice that reads the story, whatever its language: one of the profile's
            narrate backend (e.g. ef_dora for Kokoro) or espeak:LANGUAGE (e.g. espeak:de) for eSpeak NG.
            Leave it empty for the profile's voice for the story's language.
        redo_degraded: Make again, at full settings, the shots an earlier run had to make with
            less (down the degrade ladder after running out of GPU memory); otherwise they are
            reused, and listed in the summary and manifest.
        review: Stop after the storyboard and its keyframes, before animation, for a person to
            approve or change shots: a deployment run is suspended (no worker waits) and its page
            shows the storyboard; Resume's form takes each shot's prompt and a new seed.
        review_edits: Or the path of a YAML file of shot edits (docs/storyboard-review.md) to
            apply before animation. Leave it empty for none.
    """
    profile = profile_file or profile  # a file of your own, else the installed profile
    logger, ledger = get_run_logger(), StageLedger()
    inputs = preflight(story, story_file, profile, out, size, music, voice=voice,  # every deployment run too
                       review_edits=review_edits)
    settings, identities = inputs.settings, inputs.identities
    music_ref = with_store(music_task)(music) if music else None
    one_family_at_a_time = settings["memory"]["release_between_stages"]

    plan = ledger.record("plan", with_store(plan_task)(inputs.text, inputs.title, settings["plan"], return_state=True))
    narration = ledger.record("narrate", with_store(narrate_task)(
        plan.voice_lines(), settings["narrate"], identities["narrate"], return_state=True))
    alignment = ledger.record("align", with_store(align_task)(
        narration, settings["align"], identities["align"], return_state=True))
    if one_family_at_a_time:
        _release(logger, *backends.families("narrate", "align"))

    board = _storyboard(ledger, logger, plan, alignment, settings, identities)
    logger.info("%s: %d sentences in %d shots", plan.title, len(plan.sentences), len(board.shots))
    cast = _cast(ledger, plan, settings["keyframe"], identities["keyframe"], inputs.cast_images)
    timeline = shot_timeline(board.starts, narration.duration, settings["compose"])
    # The view's count of stage tasks: these, the music, a keyframe and a clip a shot, compose.
    live.expect(len(ledger.stages) + (music_ref is not None) + 2 * len(board.shots) + 1)

    make_keyframes = functools.partial(_keyframes, settings=settings["keyframe"], identity=identities["keyframe"],
                                       cast=cast, release=one_family_at_a_time and functools.partial(_release, logger))
    keyframe_futures = make_keyframes(board)
    if review or review_edits:  # a person approves or edits the shots before animation (flows/review.py)
        board, keyframe_futures, stopped = review_storyboard(board, keyframe_futures, make_keyframes, cast=cast,
                                                             edits_file=review_edits, slug=plan.slug, title=plan.title)
        if stopped:  # a local run: the storyboard is printed, edits come with the next run
            return stopped
    if one_family_at_a_time:
        wait(keyframe_futures)
        _release(logger, *backends.families("keyframe"))
    animate_settings = clip_settings(settings)
    expect_prompts(animate_settings, board.descriptions)  # encoded in one batch by the first shot that runs
    animate_futures = with_store(animate_task, retries=gpu.retries_for(animate_settings)).map(
        keyframe_futures, board.descriptions, board.indexes, board.seeds, timeline.clip_frames,
        unmapped(animate_settings), unmapped(identities["animate"]))
    # Let every shot finish (or fail) before reporting: a failure at shot 7 still leaves
    # shots 1-6 done and cached for the resume.
    wait([*keyframe_futures, *animate_futures])
    keyframes = [ledger.record("keyframe", future, i) for i, future in zip(board.indexes, keyframe_futures)]
    clips = [ledger.record("animate", future, i) for i, future in zip(board.indexes, animate_futures)]

    video = ledger.record("compose", with_store(compose_task)(
        narration, alignment, clips, timeline.for_compose(), settings["compose"], music_ref, return_state=True))
    manifest = build_manifest(
        ledger=ledger, plan=plan, profile=profile, settings=settings, identities=identities, board=board,
        timeline=timeline, narration=narration, alignment=alignment, clips=clips, video=video,
        music=music, music_ref=music_ref, cast=cast)
    target = deliver.export(Path(out), plan.slug, video, narration, alignment, keyframes, manifest)
    report.publish(manifest, target, cast)
    logger.info("%s", ledger.summary())
    logger.info("video: %s", target / "video.mp4")
    return str(target / "video.mp4")
