"""Bad input to the CLI: one clear line on stderr, exit status 2, nothing written."""

from __future__ import annotations

import subprocess

import pytest

from conftest import BIN


def run_cli(tmp_path, *args):
    env_home = tmp_path / "home"
    result = subprocess.run([str(BIN / "faceless"), *args], capture_output=True, text=True, timeout=120,
                            env={"FACELESS_HOME": str(env_home), "PATH": "/usr/bin:/bin"})
    return result


@pytest.mark.parametrize("content, message", [
    (b"", "the story is empty"),
    (b"   \n\t  \n", "the story is empty"),
    (b"caf\xe9 au lait", "is not UTF-8 text"),
])
def test_bad_story_is_one_line(tmp_path, content, message):
    story = tmp_path / "story.txt"
    story.write_bytes(content)
    result = run_cli(tmp_path, "render", str(story), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_unknown_profile_is_one_line(tmp_path):
    story = tmp_path / "story.txt"
    story.write_text("One sentence.", encoding="utf-8")
    result = run_cli(tmp_path, "render", str(story), "--profile", "nope", "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "unknown profile 'nope'" in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_missing_story_file(tmp_path):
    result = run_cli(tmp_path, "render", str(tmp_path / "missing.txt"))
    assert result.returncode == 2 and "story file not found" in result.stderr
