"""Faults injected for real: out-of-memory errors, on one rung or every one, and a failed render
resumed with its parameters (tests/test_resilience_store.py: a SIGKILLed render, a changed byte,
two renders at once). Every run is the CLI against the session's real Prefect server."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

import pytest

from conftest import BIN, ROOT, render as render_cli

pytestmark = pytest.mark.slow  # renders with injected faults and killed processes on a real Prefect server

# Three sentences of 4-5 s each: three shots.
STORY = (
    "A small fox found a golden key under the old oak tree at the edge of the wood. "
    "She opened a round door in the hill and stepped into a room full of stars. "
    "An owl showed her the dawn, and the fox went home with the key and the light."
)


# A quarter of the pixels: faults, caching and resuming do not depend on the frame size.
SMALL = ("--size", "360x640")


def render(env: dict, story: Path, out: Path, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
    return render_cli(env, story, out, *SMALL, *extra, check=check)


def write_story(tmp_path: Path, text: str = STORY, name: str = "fox.txt") -> Path:
    story = tmp_path / name
    story.write_text(text, encoding="utf-8")
    return story


def manifest_of(out: Path, slug: str = "fox") -> dict:
    return json.loads((out / slug / "manifest.json").read_text())


def computed(manifest: dict) -> set:
    return {(s["stage"], s["scene"]) for s in manifest["stages"] if not s["cached"]}


def task_run_counts(api_url: str, flow_run_id: str) -> dict[str, list[int]]:
    """How many times each task of a flow run ran, asked of the Prefect server's REST API."""
    request = urllib.request.Request(
        f"{api_url}/task_runs/filter", method="POST", headers={"Content-Type": "application/json"},
        data=json.dumps({"flow_runs": {"id": {"any_": [flow_run_id]}}}).encode())
    with urllib.request.urlopen(request, timeout=30) as response:
        runs = json.load(response)
    counts: dict[str, list[int]] = {}
    for run in runs:
        counts.setdefault(run["name"].rsplit("-", 1)[0], []).append(run["run_count"])
    return counts


def test_oom_on_the_first_rung_degrades_once_and_later_shots_start_there(store_env, tmp_path):
    story, out = write_story(tmp_path), tmp_path / "out"
    render({**store_env, "FACELESS_FAULT": "animate:oom:1"}, story, out)
    manifest = manifest_of(out)
    animate = [s for s in manifest["stages"] if s["stage"] == "animate"]
    assert len(animate) == 3
    # The first shot to run meets the OOM and steps down; the others start on the rung it needed.
    assert sorted(entry["attempts"] for entry in animate) == [1, 1, 2]
    for entry in animate:
        assert entry["degraded"] == {"decode_chunk_size": 2}
        assert entry["placement"] == {"placement": "cpu", "predicted_peak_gib": None}
    for entry in manifest["stages"]:
        if entry["stage"] != "animate":
            assert entry["attempts"] == 1 and entry["degraded"] is None, entry
    # The server agrees: every upstream task ran once, one animate task twice.
    counts = task_run_counts(store_env["PREFECT_API_URL"], manifest["flow_run_id"])
    assert sorted(counts["animate"]) == [1, 1, 2]
    assert counts["keyframe"] == [1, 1, 1]
    for name in ("plan", "narrate", "align", "storyboard", "compose"):
        assert counts[name] == [1], name

    # The degraded clips are reused by a plain render again (listed as degraded), and made anew
    # at full settings by --redo-degraded: exactly those shots, and what is made from them.
    degraded = {(s["stage"], s["scene"]) for s in animate if s["degraded"]}
    render(store_env, story, out, "--redo-degraded")
    redone = manifest_of(out)
    assert {k for k in computed(redone) if k[0] != "compose"} == degraded
    assert all(s["degraded"] is None and s["attempts"] == 1 for s in redone["stages"]), redone["stages"]


def test_oom_on_every_attempt_fails_clearly_and_prefect_retry_resumes(store_env, tmp_path):
    story, out = write_story(tmp_path), tmp_path / "out"
    failed = render({**store_env, "FACELESS_FAULT": "animate[1]:oom:99"}, story, out, check=False)
    assert failed.returncode == 1
    message = failed.stderr.strip().splitlines()[-1]
    assert "animate[1] ran out of memory on attempt 5 of 5" in message
    assert "faceless resume " in message
    assert not (out / "fox").exists(), "a failed render must not leave deliverables"
    run_id = message.split("faceless resume ")[1].strip("`. ")

    # Prefect's own retry of that run, without the fault, picks up where it stopped.
    retried = subprocess.run(
        [str(BIN / "prefect"), "flow-run", "retry", run_id, "--entrypoint", "flows/story_to_video.py:story_to_video"],
        cwd=ROOT, env=store_env, capture_output=True, text=True, timeout=600)
    assert retried.returncode == 0, retried.stdout[-3000:] + retried.stderr[-3000:]
    manifest = manifest_of(out)
    assert computed(manifest) == {("animate", 1), ("compose", None)}
    assert manifest["flow_run_id"] == run_id


def test_faceless_resume_reruns_a_failed_render_with_its_parameters(store_env, tmp_path):
    story, out = write_story(tmp_path), tmp_path / "out"
    failed = render({**store_env, "FACELESS_FAULT": "keyframe[2]:oom:99"}, story, out, check=False)
    assert failed.returncode == 1 and "keyframe[2] ran out of memory" in failed.stderr
    run_id = failed.stderr.strip().splitlines()[-1].split("faceless resume ")[1].strip("`. ")

    # From another folder, with no story path or options given: they come from the run.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    resumed = subprocess.run([str(BIN / "faceless"), "resume", run_id], cwd=elsewhere, env=store_env,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.strip().splitlines()[-1] == str(out / "fox" / "video.mp4")
    manifest = manifest_of(out)
    assert ("keyframe", 2) in computed(manifest)
    assert all(s["cached"] for s in manifest["stages"] if s["stage"] in ("plan", "narrate", "align", "storyboard"))
    # The other shots finished before the failed run ended, so neither is redone.
    assert all(s["cached"] for s in manifest["stages"] if s["stage"] in ("keyframe", "animate") and s["scene"] != 2)
