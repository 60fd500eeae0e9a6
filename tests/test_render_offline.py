"""End to end through the real CLI, a real Prefect server and the offline profile: no mocks."""

from __future__ import annotations

import json
import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import srt
import webvtt

from conftest import make_env, render, write_music

pytestmark = pytest.mark.slow  # renders videos through the CLI on a real Prefect server

FRONT_MATTER = """---
setting: an old oak wood on a hill at dusk
style: storybook watercolour
cast:
  Fox: a small red fox with a white-tipped tail
---
"""
BODY = (
    "A small fox found a golden key under the old oak tree. "
    "She opened the door in the hill and stepped into a room full of stars.\n"
    "An owl asked her what she wished for. "
    "She wished for the sun to rise again, and it did."
)
STORY = FRONT_MATTER + BODY
EDITED = STORY.replace("An owl asked her what she wished for.", "A sleepy owl asked her, twice, what she wished for.")


def stage_runs(manifest: dict) -> dict[tuple[str, int | None], dict]:
    return {(s["stage"], s["scene"]): s for s in manifest["stages"]}


def computed(manifest: dict) -> set[tuple[str, int | None]]:
    return {key for key, s in stage_runs(manifest).items() if not s["cached"]}


@pytest.fixture(scope="module")
def first(prefect_server, models_home, tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    env = make_env(prefect_server, root / "home", models_home)
    story = root / "fox-and-key.txt"
    story.write_text(STORY, encoding="utf-8")
    out = root / "out"
    result = render(env, story, out)
    folder = out / "fox-and-key"
    return {"env": env, "story": story, "out": out, "folder": folder, "result": result, "root": root,
            "manifest": json.loads((folder / "manifest.json").read_text())}


def test_first_render_writes_every_deliverable(first):
    folder = first["folder"]
    assert first["result"].stdout.strip().splitlines()[-1] == str(folder / "video.mp4")
    for name in ("video.mp4", "narration.wav", "subtitles.srt", "subtitles.vtt", "manifest.json"):
        assert (folder / name).stat().st_size > 0, name
    manifest = first["manifest"]
    shots = len(manifest["scenes"])
    assert shots == 4, "one shot a sentence: each is spoken for 2-6 s"
    assert sorted(p.name for p in (folder / "keyframes").iterdir()) == [f"scene-{i:02d}.png" for i in range(shots)]
    assert not computed(manifest) ^ set(stage_runs(manifest)), "a fresh store computes every stage"
    assert [(s["stage"], s["scene"]) for s in manifest["stages"]] == [
        ("plan", None), ("narrate", None), ("align", None), ("storyboard", None),
        *[("keyframe", i) for i in range(shots)], *[("animate", i) for i in range(shots)], ("compose", None)]
    for stage in manifest["stages"]:
        # The narration's and each keyframe's row also name the backend that made them (modern's
        # keyframes: klein for the shots showing cast members, schnell for the others).
        made_by = {"narrate": "piper", "keyframe": "sdxl-ensemble"}.get(stage["stage"])
        extra = {"backend"} if made_by else set()
        assert set(stage) == {"stage", "scene", "key", "cached", "seconds", "attempts", "degraded", "placement", *extra}
        assert stage.get("backend") == made_by, stage
        assert stage["attempts"] == 1 and stage["seconds"] >= 0
        # Where the model stages' models sat (the memory plan's placement): on this machine, the CPU.
        model_stage = stage["stage"] in ("keyframe", "animate")
        assert stage["placement"] == ({"placement": "cpu", "predicted_peak_gib": None} if model_stage else None), stage
    assert manifest["seeds"] == [s["seed"] for s in manifest["scenes"]]
    assert manifest["models"]["keyframe"] == {"base": "tiny:sdxl-base@v2", "refiner": "tiny:sdxl-refiner@v2"}
    # Shot clips tile the narration: each starts where the previous one ended.
    frames = [s["frames"] for s in manifest["scenes"]]
    assert sum(frames) == manifest["video"]["frames"]
    assert manifest["settings"]["compose"]["fps"] == 24


def test_each_shot_has_its_prompt_window_and_interpolation(first):
    """The manifest's contract for shots, with the front matter's cast and setting in them."""
    fox = "a small red fox with a white-tipped tail"
    for i, shot in enumerate(first["manifest"]["scenes"]):
        assert {"index", "text", "start", "frames", "windows", "fps_conditioning", "interpolation",
                "prompt", "prompt_2", "prompt_tokens"} <= set(shot)
        assert shot["index"] == i and shot["text"] in BODY
        assert shot["frames"] / 24 <= 7.0 and shot["windows"] == 1
        assert 2 <= shot["fps_conditioning"] <= 24
        # The offline profile cross-fades its noise frames; tiny keeps motion-compensated
        # interpolation (tests/test_storyboard_render.py).
        assert shot["interpolation"].startswith("blend")
        sent = shot["prompt"] + " " + shot["prompt_2"]
        assert shot["prompt_tokens"] <= 77
        assert "an old oak wood on a hill at dusk" in sent and "storybook watercolour" in sent
        # Named ("fox") or referred back to ("She", "her"): every shot of this story shows the fox.
        assert fox in sent, shot
        assert shot["prompt"].startswith(shot["text"].rstrip("."))


def test_mp4_streams_are_publishable(first):
    video_path = first["folder"] / "video.mp4"
    with av.open(str(video_path)) as container:
        kinds = sorted(s.type for s in container.streams)
        assert kinds == ["audio", "subtitle", "video"]
        video = container.streams.video[0]
        assert video.codec_context.name == "h264"
        assert video.codec_context.pix_fmt == "yuv420p"
        assert (video.codec_context.width, video.codec_context.height) == (720, 1280)
        assert video.average_rate == Fraction(24)
        audio = container.streams.audio[0]
        assert audio.codec_context.name == "aac"
        assert audio.codec_context.channels == 2 and audio.codec_context.sample_rate == 48000
        assert container.streams.subtitles[0].codec_context.name == "mov_text"
        frame_times = [f.time for f in container.decode(video=0)]
    # Constant frame rate: every frame 1/24 s after the one before.
    steps = {round(b - a, 4) for a, b in zip(frame_times, frame_times[1:])}
    assert steps == {round(1 / 24, 4)}
    # Duration equals the narration's within one frame.
    with av.open(str(first["folder"] / "narration.wav")) as wav:
        stream = wav.streams.audio[0]
        narration = sum(f.samples for f in wav.decode(audio=0)) / stream.rate
    assert abs(len(frame_times) / 24 - narration) <= 1 / 24
    # +faststart: the index (moov) comes before the media data (mdat).
    head = video_path.read_bytes()[:1 << 20]
    assert 0 <= head.find(b"moov") < head.find(b"mdat")


def test_every_shot_is_a_moving_picture(first):
    """Each shot's stretch of the video changes from frame to frame (the cross-faded frames
    and the push-in), and its first and last frames differ: no shot is a still."""
    with av.open(str(first["folder"] / "video.mp4")) as container:
        # The top half only: the burned captions sit in the lower part.
        frames = [f.reformat(width=90, height=160).to_ndarray(format="rgb24")[:80].astype(int)
                  for f in container.decode(video=0)]
    start = 0
    for shot in first["manifest"]["scenes"]:
        span = frames[start:start + shot["frames"]]
        start += shot["frames"]
        steps = [np.abs(b - a).mean() for a, b in zip(span, span[1:])]
        assert np.mean([step > 0 for step in steps]) > 0.9, (shot["index"], steps)
        assert np.abs(span[-1] - span[0]).mean() > 2, shot["index"]


def test_soft_subtitle_track_holds_the_cues(first):
    with av.open(str(first["folder"] / "video.mp4")) as container:
        stream = container.streams.subtitles[0]
        texts = [sub.dialogue.decode() for packet in container.demux(stream) if packet.size
                 for sub in packet.decode()]
    cues = list(srt.parse((first["folder"] / "subtitles.srt").read_text(encoding="utf-8")))
    assert texts == [cue.content for cue in cues]


def test_subtitles_parse_and_hold_exactly_the_story_words(first):
    words = BODY.split()  # the front matter is not narrated
    cues = list(srt.parse((first["folder"] / "subtitles.srt").read_text(encoding="utf-8")))
    assert " ".join(c.content for c in cues).split() == words
    captions = webvtt.read(str(first["folder"] / "subtitles.vtt"))
    assert " ".join(c.text for c in captions).split() == words
    for cue in cues:
        lines = cue.content.split("\n")
        assert len(lines) <= 2 and all(len(line) <= 42 for line in lines), cue.content
        assert cue.end > cue.start
    for before, after in zip(cues, cues[1:]):
        assert before.end <= after.start, "cues overlap"
    duration = first["manifest"]["narration"]["duration"]
    assert cues[-1].end.total_seconds() <= duration + 1


def test_second_render_is_all_cached(first):
    result = render(first["env"], first["story"], first["out"])
    manifest = json.loads((first["folder"] / "manifest.json").read_text())
    assert computed(manifest) == set()
    assert all(s["cached"] for s in manifest["stages"])
    assert [s["key"] for s in manifest["stages"]] == [s["key"] for s in first["manifest"]["stages"]]
    assert result.stdout.strip().splitlines()[-1] == str(first["folder"] / "video.mp4")


def test_deleting_one_keyframe_reruns_exactly_that_keyframe(first):
    home = Path(first["env"]["FACELESS_HOME"])
    keyframe = stage_runs(first["manifest"])[("keyframe", 1)]
    artifact = home / "artifacts" / "keyframe" / keyframe["key"]
    before = (artifact / "keyframe.png").read_bytes()
    shutil.rmtree(artifact)

    render(first["env"], first["story"], first["out"])
    manifest = json.loads((first["folder"] / "manifest.json").read_text())
    # The keyframe is rebuilt bit for bit (seeded), so what depends on it is keyed on the same
    # content and stays cached: nothing downstream is redone for nothing.
    assert computed(manifest) == {("keyframe", 1)}
    assert (artifact / "keyframe.png").read_bytes() == before


def test_deleting_one_clip_reruns_exactly_that_clip(first):
    home = Path(first["env"]["FACELESS_HOME"])
    clip = stage_runs(first["manifest"])[("animate", 0)]
    (home / "artifacts" / "animate" / clip["key"] / "clip.mp4").unlink()

    render(first["env"], first["story"], first["out"])
    manifest = json.loads((first["folder"] / "manifest.json").read_text())
    assert computed(manifest) == {("animate", 0)}


def test_editing_one_sentence_reruns_only_what_it_touches(first):
    edited = first["root"] / "edited" / "fox-and-key.txt"
    edited.parent.mkdir()
    edited.write_text(EDITED, encoding="utf-8")
    out = first["root"] / "out-edited"
    render(first["env"], edited, out)
    manifest = json.loads((out / "fox-and-key" / "manifest.json").read_text())
    # The edited sentence is the third shot's: only its picture and clip are made again. The
    # other shots keep their words, so their prompts and seeds, and their lengths (narration
    # durations are deterministic), so their keyframes and clips stay cached.
    assert [s["text"] for s in manifest["scenes"]][2] == "A sleepy owl asked her, twice, what she wished for."
    assert computed(manifest) == {("plan", None), ("narrate", None), ("align", None), ("storyboard", None),
                                  ("keyframe", 2), ("animate", 2), ("compose", None)}
    cues = list(srt.parse((out / "fox-and-key" / "subtitles.srt").read_text(encoding="utf-8")))
    assert " ".join(c.content for c in cues).split() == EDITED.split("---\n")[-1].split()


def loudness_of(video: Path) -> tuple[float, float]:
    """Integrated loudness and true peak of an MP4's audio as encoded (after AAC), with
    FFmpeg's own EBU R128 meter on all its channels."""
    import av.filter

    with av.open(str(video)) as container:
        stream = container.streams.audio[0]
        graph = av.filter.Graph()
        nodes = [graph.add_abuffer(template=stream), graph.add("ebur128", "metadata=1:peak=true"),
                 graph.add("abuffersink")]
        nodes[0].link_to(nodes[1])
        nodes[1].link_to(nodes[2])
        graph.configure()
        metadata: dict = {}

        def drain():
            while True:
                try:
                    frame = graph.pull()
                except (av.BlockingIOError, av.EOFError):
                    return
                metadata.update(frame.metadata)

        for frame in container.decode(stream):
            graph.push(frame)
            drain()
        graph.push(None)
        drain()
    return float(metadata["lavfi.r128.I"]), 20 * np.log10(float(metadata["lavfi.r128.true_peak"]))


def test_audio_is_loudness_normalised(first):
    integrated, true_peak_db = loudness_of(first["folder"] / "video.mp4")
    assert -15.0 <= integrated <= -13.0
    assert true_peak_db <= -1.0


def test_landscape_size_with_music(first):
    """A 16:9 variant with background music: landscape pictures without distortion, the
    music ducked under the voice, and the mix still at -14 LUFS."""
    out = first["root"] / "out-landscape"
    music = first["root"] / "chord.m4a"
    write_music(music)
    render(first["env"], first["story"], out, "--size", "640x360", "--music", str(music))
    folder = out / "fox-and-key"
    integrated, true_peak_db = loudness_of(folder / "video.mp4")
    assert -15.0 <= integrated <= -13.0 and true_peak_db <= -1.0
    with av.open(str(folder / "video.mp4")) as container:
        video = container.streams.video[0]
        assert (video.codec_context.width, video.codec_context.height) == (640, 360)
        frames = sum(1 for _ in container.decode(video=0))
    manifest = json.loads((folder / "manifest.json").read_text())
    assert frames == manifest["video"]["frames"]
    assert manifest["music"]["file"] == "chord.m4a" and manifest["video"]["loudness"]["music"]["loops"] > 1
    # Keyframes are generated in the output's aspect (same pixel budget), not cropped from portrait.
    from PIL import Image

    with Image.open(folder / "keyframes" / "scene-00.png") as keyframe:
        assert keyframe.width > keyframe.height
        assert abs(keyframe.width / keyframe.height - 16 / 9) < 0.05
