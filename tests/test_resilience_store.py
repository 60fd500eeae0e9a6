"""What the artifact store keeps through faults: a render SIGKILLed while animating resumes
from its finished shots, a changed byte in a finished keyframe is recomputed (never used), and
two renders of one story at once compute each stage once. The CLI against the session's real
Prefect server, as in tests/test_resilience.py (whose helpers these share); a module of its
own so pytest-xdist runs it beside that one."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import srt

from conftest import BIN
from test_resilience import SMALL, STORY, computed, manifest_of, render, write_story

# A finished artifact's folder; the store writes each into a hidden `.tmp-<key>-...` folder first
# (manifest.json included) and renames it when complete, so those are not finished.
FINISHED = "[!.]*/manifest.json"

pytestmark = pytest.mark.slow  # renders, a killed process, two renders at once


def test_render_killed_while_animating_resumes_from_finished_shots(store_env, tmp_path):
    story, out = write_story(tmp_path), tmp_path / "out"
    animate_dir = Path(store_env["FACELESS_HOME"]) / "artifacts" / "animate"
    process = subprocess.Popen([str(BIN / "faceless"), "render", str(story), "--out", str(out), *SMALL],
                               env=store_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.monotonic() + 300
    while not list(animate_dir.glob(FINISHED)):
        assert process.poll() is None, "render ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    # What was finished at the kill: every animate done so far, and the keyframes (one of
    # which may still have been running: shots share the model in whatever order they come).
    finished = {stage: {p.parent.name for p in (animate_dir.parent / stage).glob(FINISHED)}
                for stage in ("keyframe", "animate")}
    assert 1 <= len(finished["animate"]) < 3 and not (out / "fox").exists()

    render(store_env, story, out)
    manifest = manifest_of(out)
    for entry in manifest["stages"]:
        if entry["stage"] in ("plan", "narrate", "align", "storyboard"):
            assert entry["cached"], entry
        if entry["stage"] in ("keyframe", "animate"):
            assert entry["cached"] == (entry["key"] in finished[entry["stage"]]), entry
    assert sum(entry["cached"] for entry in manifest["stages"] if entry["stage"] == "animate") >= 1
    assert ("compose", None) in computed(manifest)


def test_changed_byte_in_a_keyframe_is_recomputed_never_used(store_env, tmp_path):
    story, out = write_story(tmp_path), tmp_path / "out"
    render(store_env, story, out)
    entry = next(s for s in manifest_of(out)["stages"] if s["stage"] == "keyframe" and s["scene"] == 1)
    png = Path(store_env["FACELESS_HOME"]) / "artifacts" / "keyframe" / entry["key"] / "keyframe.png"
    original = png.read_bytes()
    damaged = bytearray(original)
    damaged[len(damaged) // 2] ^= 0xFF
    png.write_bytes(bytes(damaged))

    render(store_env, story, out)
    # Rebuilt from its seed, byte for byte; what depends on it was built from those same bytes
    # (its key names their hash), so it stays valid and cached.
    assert computed(manifest_of(out)) == {("keyframe", 1)}
    assert png.read_bytes() == original
    assert (out / "fox" / "keyframes" / "scene-01.png").read_bytes() == original


def test_two_renders_at_once_compute_each_stage_once(store_env, tmp_path):
    story = write_story(tmp_path)
    outs = [tmp_path / "out-a", tmp_path / "out-b"]
    processes = [subprocess.Popen([str(BIN / "faceless"), "render", str(story), "--out", str(out), *SMALL],
                                  env=store_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for out in outs]
    for process in processes:
        stdout, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-3000:]
    manifests = [manifest_of(out) for out in outs]
    for a, b in zip(manifests[0]["stages"], manifests[1]["stages"]):
        assert a["key"] == b["key"]
        assert [a["cached"], b["cached"]].count(False) == 1, (a, b)
    for out in outs:
        cues = list(srt.parse((out / "fox" / "subtitles.srt").read_text(encoding="utf-8")))
        assert " ".join(c.content for c in cues).split() == STORY.split()
        assert (out / "fox" / "video.mp4").stat().st_size > 0
