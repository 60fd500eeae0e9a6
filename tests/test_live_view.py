"""`faceless render`'s view of its progress: a live display on a terminal (a pseudo-terminal
here), plain lines through a pipe; either way the last line on stdout is the video's path."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import termios
from pathlib import Path

import pytest

from conftest import BIN, make_env

STORY = "The fox ran across the frozen river. Snow fell softly on the pines."
EDITED = "The fox ran across the frozen river. Rain fell softly on the pines."
_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture(scope="module")
def env(prefect_server, models_home, tmp_path_factory):
    return make_env(prefect_server, tmp_path_factory.mktemp("live") / "faceless-home", models_home)


def render_in_terminal(env: dict, story: Path, out: Path) -> tuple[int, str]:
    """The render with stdin, stdout and stderr on a 110x30 pseudo-terminal; all it wrote."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 110, 0, 0))
    process = subprocess.Popen([str(BIN / "faceless"), "render", str(story), "--out", str(out)],
                               stdin=slave, stdout=slave, stderr=slave, env={**env, "TERM": "xterm-256color"})
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the terminal's last writer has gone
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return process.wait(timeout=900), b"".join(chunks).decode("utf-8", "replace")


def test_terminal_shows_stage_counts_and_progress_and_ends_with_the_path(env, tmp_path):
    story = tmp_path / "fox.txt"
    story.write_text(STORY, encoding="utf-8")
    status, screen = render_in_terminal(env, story, tmp_path / "out")
    text = _ESCAPE.sub("", screen)
    assert status == 0, text[-3000:]
    video = tmp_path / "out" / "fox" / "video.mp4"
    lines = [line.rsplit("\r", 1)[-1].strip() for line in text.replace("\r\n", "\n").split("\n")]
    assert [line for line in lines if line][-1] == str(video)

    total = len(json.loads((video.parent / "manifest.json").read_text())["stages"])
    assert re.search(r"stages +\S* 3/\? ", text), "the stage count before the storyboard knows the shots"
    assert re.search(rf"stages +\S* {total - 1}/{total} ", text), "the stage count once it is known"
    assert re.search(r"keyframe shot 0 +\S* denoising \d+/10 steps", text)
    assert re.search(r"animate shot 1 +\S* denoising \d+/\d+ steps", text)
    assert re.search(r"compose +\S* encoding \d+/\d+ frames", text)
    assert f"✓ [{total}/{total}] compose: done in" in text
    assert not re.search(r"Task run '[^']+' - (Finished in state|Running hook|Hook)", text)  # the view replaces those
    assert "Flow run" in text  # the flow's own log lines still show, above the display


def test_pipe_gets_plain_lines_and_stdout_only_the_path(env, tmp_path):
    """After the terminal render, with its second sentence edited: what the edit touches computes."""
    story = tmp_path / "fox.txt"
    story.write_text(EDITED, encoding="utf-8")
    result = subprocess.run([str(BIN / "faceless"), "render", str(story), "--out", str(tmp_path / "out")],
                            env={**env, "FACELESS_PROGRESS_EVERY_S": "0.5"}, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == f"{tmp_path / 'out' / 'fox' / 'video.mp4'}\n"
    assert "\x1b[" not in result.stderr

    stages = json.loads((tmp_path / "out" / "fox" / "manifest.json").read_text())["stages"]
    ours = [line for line in result.stderr.splitlines() if line.startswith("faceless: ")]
    finished = [line for line in ours if re.match(r"faceless: \[\d+/(\d+|\?)", line)]
    assert len(finished) == len(stages)
    assert finished[-1].startswith(f"faceless: [{len(stages)}/{len(stages)}") and "] compose: done in" in finished[-1]
    for stage in stages:
        label = stage["stage"] + ("" if stage["scene"] is None else f" shot {stage['scene']}")
        outcome = "cached" if stage["cached"] else r"done in \d+\.\d s"
        assert len([line for line in finished if re.search(rf"\] {label}: {outcome}$", line)]) == 1, (label, finished)
    progress = [line for line in ours if line not in finished]
    assert progress and all(re.fullmatch(r"faceless: \S+( shot \d+)?: (denoising|encoding) \d+/\d+ (steps|frames)",
                                         line) for line in progress), progress
    assert not re.search(r"Task run '[^']+' - (Finished in state|Running hook|Hook)", result.stderr)


def test_without_a_view_stage_tasks_get_no_hooks():
    """Deployments and workers run the flow without `watch()`: no hooks, no lines in their logs."""
    from faceless.tasks.runtime import live

    assert live.hooks() == {}
    live.progress("some-run", 1, 10, "steps")  # reporting to nobody is harmless
    live.expect(9)


def test_plain_view_throttles_progress_lines(monkeypatch):
    import io

    from faceless.tasks.runtime import live

    monkeypatch.setenv("FACELESS_PROGRESS_EVERY_S", "3600")
    stream = io.StringIO()
    with live.watch(stream) as view:
        assert set(live.hooks()) == {"on_running", "on_completion", "on_failure"}
        view.started("a", "keyframe shot 0")
        for step in range(1, 11):
            view.progress("a", step, 10, "steps")
        view.finished("a", "done")
        view.expect(7)
        view.started("b", "animate shot 0")
        view.finished("b", "failed")
    assert live.hooks() == {}
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2, lines  # no progress line within the hour: only the finished stages
    assert re.fullmatch(r"faceless: \[1/\?\] keyframe shot 0: done in \d+\.\d s", lines[0])
    assert re.fullmatch(r"faceless: \[1/7 \(1 failed\)\] animate shot 0: FAILED after \d+\.\d s", lines[1])
