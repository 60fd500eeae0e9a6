"""The modern code path end to end on tiny twins (`--profile modern-tiny`: Kokoro narrates and
times its own words, FLUX.1-schnell draws keyframes, Wan 2.2 TI2V animates each shot in one
native pass at the output frame rate), `--profile modern` refusing at once without the
weights, and the resilience guarantees on the new backends (an injected OOM in a `wan` animate
task steps down wan's own ladder; a render killed while animating resumes from finished shots).
Every render is the CLI against the session's real Prefect server."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import wave
from pathlib import Path

import av
import pytest
import srt

from conftest import BIN, make_env, render
from test_render_studio import make_env_without_server
from test_resilience import computed, task_run_counts
from test_resilience_store import FINISHED

# An unseen story with front matter and a cast of two; four very short sentences (the tiny
# Kokoro speaks about 0.1 s a phoneme: a sentence of 8 words takes about 3 s), which the
# storyboard joins (a sentence under half the 4 s target joins a neighbour) into 2-3 shots.
BODY = "Tomas woke. Ines knocked. She held a watch. He fixed it."
STORY = f"""---
title: The Clockmaker
style: ink and watercolour, warm amber light
setting: a narrow clock shop on a rainy street
cast:
  Tomas: an old clockmaker with round glasses and a leather apron
  Ines: a girl of twelve in a yellow raincoat with a long braid
seed: 11
---
{BODY}
"""
SLUG = "the-clockmaker"
BACKENDS = {"narrate": "kokoro", "align": "voice", "keyframe": "flux-schnell", "animate": "wan"}
FPS = 24


def write_story(folder: Path) -> Path:
    story = folder / "clockmaker.txt"
    story.write_text(STORY, encoding="utf-8")
    return story


def folder_of(out: Path) -> Path:
    """The render's folder (named from the story's title)."""
    folders = [p for p in out.iterdir() if p.is_dir()]
    assert len(folders) == 1, folders
    return folders[0]


def artifact(home: Path, stage: str, key: str) -> tuple[Path, dict]:
    directory = home / "artifacts" / stage / key
    return directory, json.loads((directory / "manifest.json").read_text())


@pytest.fixture(scope="module")
def modern(prefect_server, models_home, tmp_path_factory):
    """One clean modern-tiny render, shared by the end-to-end assertions (and its store reused
    by the OOM test, which only recomputes animate)."""
    root = tmp_path_factory.mktemp("modern-e2e")
    home = root / "home"
    env = make_env(prefect_server, home, models_home)
    story, out = write_story(root), root / "out"
    started = time.monotonic()
    result = render(env, story, out, "--profile", "modern-tiny")
    folder = folder_of(out)
    return {"env": env, "home": home, "root": root, "story": story, "folder": folder, "result": result,
            "seconds": time.monotonic() - started, "manifest": json.loads((folder / "manifest.json").read_text())}


def test_modern_tiny_renders_an_unseen_story_through_the_new_backends(modern):
    manifest, folder = modern["manifest"], modern["folder"]
    print(f"modern-tiny render: {modern['seconds']:.1f} s, {len(manifest['scenes'])} shots")
    assert modern["result"].stdout.strip().splitlines()[-1] == str(folder / "video.mp4")
    assert manifest["profile"] == "modern-tiny"
    assert manifest["backends"] == BACKENDS
    # schnell, and klein for the shots showing cast members (the story has a cast).
    assert list(manifest["models"]["keyframe"]) == ["flux-schnell", "flux2-klein"]
    assert manifest["models"]["keyframe"]["flux-schnell"].startswith("tiny:flux-schnell@")
    assert manifest["models"]["keyframe"]["flux2-klein"].startswith("tiny:flux2-klein@")
    assert list(manifest["models"]["animate"]) == ["wan"] and manifest["models"]["animate"]["wan"].startswith("tiny:wan@")
    # Once each, for all shots: schnell draws the references (and any shot showing nobody), klein the rest.
    assert manifest["model_loads"] == {"kokoro": 1, "writer": 1, "flux": 1, "flux2": 1, "wan": 1}
    assert manifest["narration"]["backend"] == "kokoro"
    assert {s["stage"] for s in manifest["stages"]} == {"plan", "narrate", "align", "storyboard", "writer", "cast",
                                                        "keyframe", "animate", "compose"}
    # The shot writer (its tiny random twin) wrote every shot, within 77 CLIP tokens.
    assert all(s["writer"] == "llm" and s["visual"] and s["prompt_tokens"] <= 77 for s in manifest["scenes"])
    assert all(not s["cached"] and s["attempts"] == 1 and s["degraded"] is None for s in manifest["stages"])
    assert 2 <= len(manifest["scenes"]) <= 3, [s["text"] for s in manifest["scenes"]]
    # The cast of two reaches the shots that name them or refer back to them.
    assert {name for shot in manifest["scenes"] for name in shot["cast"]} == {"Tomas", "Ines"}
    # Their references: one cast task per member, each drawn by schnell; every shot conditioned
    # on the references of the members it shows, and drawn by klein when it shows any.
    cast = sorted(s["scene"] for s in manifest["stages"] if s["stage"] == "cast")
    assert cast == [0, 1] and set(manifest["cast"]) == {"Tomas", "Ines"}
    assert all(member["source"] == "drawn" for member in manifest["cast"].values()), manifest["cast"]
    keyframes = {s["scene"]: s for s in manifest["stages"] if s["stage"] == "keyframe"}
    for i, shot in enumerate(manifest["scenes"]):
        assert shot["references"] == shot["cast"], shot
        assert keyframes[i]["backend"] == ("flux2-klein" if shot["cast"] else "flux-schnell"), (shot, keyframes[i])
        _, record = artifact(modern["home"], "keyframe", keyframes[i]["key"])
        assert record["meta"]["references"] == shot["cast"], record["meta"]
    for shot in manifest["scenes"]:
        assert shot["windows"] == 1 and shot["interpolation"] is None, shot
        assert shot["frames"] / FPS <= 5.0 + 1 / FPS, shot
        # modern's sampler: the distilled model's three timesteps, guidance off.
        assert (shot["sampler"], shot["num_inference_steps"]) == ("distilled", 3), shot


def test_each_clip_is_generated_in_one_pass_at_the_output_frame_rate(modern):
    manifest = modern["manifest"]
    animate = {s["scene"]: s for s in manifest["stages"] if s["stage"] == "animate"}
    assert sorted(animate) == list(range(len(manifest["scenes"])))
    for i, shot in enumerate(manifest["scenes"]):
        directory, record = artifact(modern["home"], "animate", animate[i]["key"])
        meta = record["meta"]
        frame_count = meta["frame_count"]
        assert frame_count == shot["clip_frames"] >= shot["frames"], (meta, shot)
        # Wan makes 4k + 1 frames covering the shot, and every output frame is a generated one.
        assert meta["native_frames"] >= frame_count and (meta["native_frames"] - 1) % 4 == 0, meta
        assert meta["native_frames"] - frame_count < 4, meta
        assert meta["generated_frames"] == frame_count, meta
        assert meta["windows"] == 1 and meta["interpolation"] is None and meta["fps_conditioning"] is None, meta
        assert len(list((directory / "frames").glob("*.png"))) == frame_count
        with av.open(str(directory / "clip.mp4")) as container:
            stream = container.streams.video[0]
            assert stream.average_rate == FPS, stream.average_rate
            assert (stream.width, stream.height) == (720, 1280)
            assert sum(1 for _ in container.decode(video=0)) == frame_count


def test_video_covers_the_kokoro_narration_within_a_frame_with_subtitles(modern):
    folder, manifest = modern["folder"], modern["manifest"]
    with wave.open(str(folder / "narration.wav")) as wav:
        assert wav.getframerate() == 24_000  # Kokoro's own rate
        narration = wav.getnframes() / wav.getframerate()
    assert abs(manifest["narration"]["duration"] - narration) < 1e-3
    with av.open(str(folder / "video.mp4")) as container:
        assert container.streams.video[0].average_rate == FPS
        frames = sum(1 for _ in container.decode(video=0))
    assert abs(frames / FPS - narration) <= 1 / FPS, (frames, narration)
    # Subtitles: the story's own words (front matter left out), timed by the voice.
    cues = list(srt.parse((folder / "subtitles.srt").read_text(encoding="utf-8")))
    assert cues and " ".join(c.content for c in cues).split() == BODY.split()
    assert (folder / "subtitles.vtt").stat().st_size > 0
    assert cues[-1].end.total_seconds() <= narration + 1e-3


def test_modern_without_weights_refuses_in_seconds_naming_every_model(tmp_path):
    story, out = write_story(tmp_path), tmp_path / "out"
    env = {**make_env_without_server(tmp_path), "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    started = time.monotonic()
    result = subprocess.run([str(BIN / "faceless"), "render", str(story), "--profile", "modern", "--out", str(out)],
                            env=env, capture_output=True, text=True, timeout=120)
    seconds = time.monotonic() - started
    print(f"modern refusal: {seconds:.1f} s")
    assert result.returncode == 2, result.stderr
    assert seconds < 30
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("faceless: error: "), result.stderr
    # The story has a cast: klein, which draws the shots showing them, is named too.
    for repo in ("hexgrad/Kokoro-82M", "black-forest-labs/FLUX.1-schnell", "black-forest-labs/FLUX.2-klein-4B",
                 "FastVideo/FastWan2.2-TI2V-5B-FullAttn-Diffusers", "Qwen/Qwen3-4B-Instruct-2507"):
        assert repo in lines[0], repo
    assert not out.exists(), "nothing is written before the check"


def test_oom_in_every_wan_animate_task_steps_down_wans_own_ladder(modern, prefect_server):
    # The clean render's store, with the clips gone: only animate (and compose) run again.
    shutil.rmtree(modern["home"] / "artifacts" / "animate")
    out = modern["root"] / "out-oom"
    started = time.monotonic()
    render({**modern["env"], "FACELESS_FAULT": "animate:oom:1"}, modern["story"], out, "--profile", "modern-tiny")
    print(f"modern-tiny render with an OOM in every animate: {time.monotonic() - started:.1f} s")
    manifest = json.loads((folder_of(out) / "manifest.json").read_text())
    shots = len(manifest["scenes"])
    animate = [s for s in manifest["stages"] if s["stage"] == "animate"]
    assert len(animate) == shots
    # The first shot to run steps down; later shots start on the rung it needed (wan's first
    # rung in modern-tiny.yaml, not svd's decode_chunk_size).
    assert sorted(entry["attempts"] for entry in animate) == [1] * (shots - 1) + [2]
    for entry in animate:
        assert not entry["cached"] and entry["degraded"] == {"vae_tiling": True}, entry
    for entry in manifest["stages"]:
        if entry["stage"] != "animate":
            assert entry["attempts"] == 1 and entry["degraded"] is None, entry
    assert computed(manifest) - {("compose", None)} == {("animate", i) for i in range(shots)}
    # The degraded clips are still whole: one pass at the output rate, every frame generated.
    for entry, shot in zip(sorted(animate, key=lambda e: e["scene"]), manifest["scenes"]):
        _, record = artifact(modern["home"], "animate", entry["key"])
        assert record["attempts"] in (1, 2) and record["degraded"] == {"vae_tiling": True}
        assert record["meta"]["generated_frames"] == record["meta"]["frame_count"] == shot["clip_frames"]
    counts = task_run_counts(prefect_server["url"], manifest["flow_run_id"])
    assert sorted(counts["animate"]) == [1] * (shots - 1) + [2]


def test_render_killed_while_animating_resumes_with_finished_shots_cached(modern, prefect_server, models_home,
                                                                          tmp_path):
    shots = len(modern["manifest"]["scenes"])
    env = make_env(prefect_server, tmp_path / "home", models_home)
    story, out = write_story(tmp_path), tmp_path / "out"
    artifacts = Path(env["FACELESS_HOME"]) / "artifacts"
    # The last shot pauses where its model runs (holding the model), so a kill right after the
    # first clip is done lands while animating whichever order the shots take the model in.
    started = time.monotonic()
    process = subprocess.Popen(
        [str(BIN / "faceless"), "render", str(story), "--profile", "modern-tiny", "--out", str(out)],
        env={**env, "FACELESS_FAULT": f"animate[{shots - 1}]:hang:20"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while not list((artifacts / "animate").glob(FINISHED)):
            assert process.poll() is None, "render ended before it could be killed"
            assert time.monotonic() < deadline, "no clip finished"
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    killed_after = time.monotonic() - started
    finished = {stage: {p.parent.name for p in (artifacts / stage).glob(FINISHED)}
                for stage in ("keyframe", "animate")}
    # Every keyframe (the animate stage starts once they are all drawn), some clips, not all.
    assert len(finished["keyframe"]) == shots and 1 <= len(finished["animate"]) < shots, finished
    assert not out.exists(), "a killed render must not leave deliverables"

    started = time.monotonic()
    render(env, story, out, "--profile", "modern-tiny")
    print(f"killed after {killed_after:.1f} s; the resumed render took {time.monotonic() - started:.1f} s")
    manifest = json.loads((folder_of(out) / "manifest.json").read_text())
    for entry in manifest["stages"]:
        if entry["stage"] in ("plan", "narrate", "align", "storyboard", "writer"):
            assert entry["cached"], entry
        if entry["stage"] in ("keyframe", "animate"):
            assert entry["cached"] == (entry["key"] in finished[entry["stage"]]), entry
    unfinished = {(e["stage"], e["scene"]) for e in manifest["stages"]
                  if e["stage"] == "animate" and e["key"] not in finished["animate"]}
    assert len(unfinished) == shots - len(finished["animate"])
    assert computed(manifest) == unfinished | {("compose", None)}
    assert manifest["backends"] == BACKENDS
    with av.open(str(folder_of(out) / "video.mp4")) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert abs(frames / FPS - manifest["narration"]["duration"]) <= 1 / FPS
