"""Bad input: one clear line on stderr, exit status 2, nothing written anywhere.
And odd but valid text (emoji, numbers, accents, right-to-left, CJK) renders."""

from __future__ import annotations

import contextlib
import io
import subprocess
from pathlib import Path

import pytest
import srt
import yaml

from conftest import BIN, ROOT, render, write_music

OFFLINE = ROOT / "tasks" / "profiles" / "offline.yaml"


def run_cli(tmp_path: Path, *args: str, env: dict | None = None, cwd: Path | None = None):
    """`faceless ARGS` in this process: a new process per case cost 4-14 s of imports (over
    three minutes for this file); the checks are the same code. One case still runs the
    installed command in its own process (test_the_command_itself_refuses...)."""
    from faceless.flows import cli

    def render(parameters):
        raise AssertionError(f"bad input reached the render: {parameters}")

    stderr = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stderr(stderr):
        for name in ("FACELESS_ROOTS", "FACELESS_FAULT", "PREFECT_API_URL"):
            patch.delenv(name, raising=False)
        for name, value in {"FACELESS_HOME": str(tmp_path / "home"), **(env or {})}.items():
            patch.setenv(name, value)
        patch.chdir(cwd or tmp_path)
        patch.setattr(cli, "_render", render)
        try:
            code = cli.main(list(args))
        except SystemExit as exit:  # argparse's own refusals
            code = exit.code
    return subprocess.CompletedProcess(["faceless", *args], code, "", stderr.getvalue())


def test_the_command_itself_refuses_with_status_2_and_one_line(tmp_path):
    story = tmp_path / "story.txt"
    story.write_bytes(b"")
    result = subprocess.run([str(BIN / "faceless"), "render", str(story), "--out", "out"], capture_output=True,
                            text=True, timeout=120, cwd=tmp_path,
                            env={"FACELESS_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"})
    assert_refused(result, "the story is empty", tmp_path)


def assert_refused(result, message: str, tmp_path: Path) -> None:
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists(), "bad input left an output folder"
    assert not (tmp_path / "home" / "artifacts").exists(), "bad input wrote to the artifact store"


def good_story(tmp_path: Path) -> Path:
    story = tmp_path / "story.txt"
    story.write_text("One sentence.", encoding="utf-8")
    return story


@pytest.mark.parametrize("content, message", [
    (b"", "the story is empty"),
    (b"   \n\t  \n", "the story is empty"),
    (b"caf\xe9 au lait", "is not UTF-8 text"),
    (b"\xff\xfeS\x00t\x00o\x00r\x00y\x00", "is not UTF-8 text"),
    (b"word " * 5000, "the limit is 20000"),
    (b"---\ntitle: [unclosed\n---\nOnce upon a time.", "the story's front matter is not valid YAML"),
    (b"---\ncolour: red\n---\nOnce upon a time.", "unknown front matter field(s) colour"),
    (b"---\ncast: [Mara]\n---\nOnce upon a time.", "front matter cast must map each name"),
    (b"---\ncast: {Mara: {description: a girl, photo: m.png}}\n---\nOnce.", "front matter cast Mara: unknown field(s) photo"),
    (b"---\ncast: {Mara: {image: [m.png]}}\n---\nOnce.", "front matter cast Mara: image must be the path"),
    (b"---\ncast: {Mara: {image: m.png}}\n---\nOnce.", "front matter cast Mara needs a description"),
    (b"---\ntitle: Only front matter\n---\n", "the story is empty"),
])
def test_bad_story(tmp_path, content, message):
    story = tmp_path / "story.txt"
    story.write_bytes(content)
    assert_refused(run_cli(tmp_path, "render", str(story), "--out", "out"), message, tmp_path)


@pytest.mark.parametrize("picture, message", [
    (None, "cast image for Mara not found: "),
    (b"not a picture at all", "cast image for Mara is not a picture: "),
])
def test_a_cast_image_that_is_missing_or_not_a_picture(tmp_path, picture, message):
    """The picture is relative to the story file, and named in the one line."""
    folder = tmp_path / "stories"
    folder.mkdir()
    if picture is not None:
        (folder / "mara.png").write_bytes(picture)
    story = folder / "story.txt"
    story.write_text("---\ncast:\n  Mara: {description: a girl in a red coat, image: mara.png}\n---\n"
                     "Mara ran.", encoding="utf-8")
    result = run_cli(tmp_path, "render", str(story), "--out", "out")
    assert_refused(result, message + str(folder / "mara.png"), tmp_path)


def test_story_in_a_script_no_caption_font_draws(tmp_path):
    story = tmp_path / "story.txt"
    story.write_text("สวัสดี ชาวโลก", encoding="utf-8")  # Thai: not in the offline profile's fonts
    result = run_cli(tmp_path, "render", str(story), "--out", "out")
    assert_refused(result, "add a font that covers them to compose.captions.fonts", tmp_path)


def test_missing_story_file(tmp_path):
    assert_refused(run_cli(tmp_path, "render", "missing.txt", "--out", "out"), "story file not found", tmp_path)


def test_unknown_profile(tmp_path):
    result = run_cli(tmp_path, "render", str(good_story(tmp_path)), "--profile", "nope", "--out", "out")
    assert_refused(result, "unknown profile 'nope'", tmp_path)


def test_malformed_profile_yaml(tmp_path):
    profile = tmp_path / "mine.yaml"
    profile.write_text("plan: {sentences_per_scene: 2\nnarrate: [", encoding="utf-8")
    result = run_cli(tmp_path, "render", str(good_story(tmp_path)), "--profile", str(profile), "--out", "out")
    assert_refused(result, "is not valid YAML (line", tmp_path)


@pytest.mark.parametrize("stage, field, value, message", [
    ("keyframe", "width", 100, "keyframe.width=100 must be an integer from 16 to 4096 and a multiple of 8"),
    ("animate", "height", -448, "animate.height=-448"),
    ("compose", "width", 721, "compose.width=721"),
    ("compose", "height", 100000, "compose.height=100000"),
])
def test_sizes_the_models_cannot_take(tmp_path, stage, field, value, message):
    settings = yaml.safe_load(OFFLINE.read_text())
    settings[stage][field] = value
    profile = tmp_path / "sizes.yaml"
    profile.write_text(yaml.safe_dump(settings), encoding="utf-8")
    result = run_cli(tmp_path, "render", str(good_story(tmp_path)), "--profile", str(profile), "--out", "out")
    assert_refused(result, message, tmp_path)


@pytest.mark.parametrize("size, message", [
    ("721x1280", "compose.width=721"),
    ("720x1280x3", "is not WIDTHxHEIGHT"),
    ("big", "is not WIDTHxHEIGHT"),
    ("0x0", "compose.width=0"),
])
def test_impossible_output_size(tmp_path, size, message):
    result = run_cli(tmp_path, "render", str(good_story(tmp_path)), "--size", size, "--out", "out")
    assert_refused(result, message, tmp_path)


def test_out_that_escapes_the_working_folder(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    result = run_cli(tmp_path, "render", str(good_story(tmp_path)), "--out", "../../elsewhere", cwd=work)
    assert_refused(result, "escapes the working folder", tmp_path)


def test_malformed_fault_spec(tmp_path):
    result = run_cli(tmp_path, "render", str(good_story(tmp_path)), "--out", "out",
                     env={"FACELESS_FAULT": "animate:explode"})
    assert_refused(result, "is not <stage>[<scene>]:oom:<n>", tmp_path)


@pytest.mark.slow  # renders
def test_odd_but_valid_text_renders(store_env, tmp_path):
    text = ('Zoë said “hello” to 3 friends 😀 at 7:30.\n'
            'مرحبا بالعالم.\n'
            '你好，世界。\n'
            'Ça va? Très bien — merci!')
    story = tmp_path / "odd.txt"
    story.write_text(text, encoding="utf-8")
    render(store_env, story, tmp_path / "out", "--size", "360x640")  # the words are the point here
    cues = list(srt.parse((tmp_path / "out" / "odd" / "subtitles.srt").read_text(encoding="utf-8")))
    assert " ".join(c.content for c in cues).split() == text.split()
    assert (tmp_path / "out" / "odd" / "video.mp4").stat().st_size > 0


@pytest.mark.parametrize("parameter", ["story_file", "music", "out"])
def test_paths_outside_the_configured_roots_are_refused(tmp_path, parameter):
    """A worker of a shared server serves only FACELESS_ROOTS: a story, music or output folder
    elsewhere (here: reached through a symbolic link from inside) is refused before any work."""
    allowed, elsewhere = tmp_path / "allowed", tmp_path / "elsewhere"
    allowed.mkdir()
    elsewhere.mkdir()
    paths = {"story_file": allowed / "story.txt", "music": allowed / "song.m4a", "out": allowed / "out"}
    paths["story_file"].write_text("One sentence.", encoding="utf-8")
    write_music(paths["music"])
    (allowed / "link").symlink_to(elsewhere, target_is_directory=True)
    if parameter == "story_file":
        (elsewhere / "story.txt").write_text("One sentence.", encoding="utf-8")
    elif parameter == "music":
        write_music(elsewhere / "song.m4a")
    paths[parameter] = allowed / "link" / paths[parameter].name
    result = run_cli(tmp_path, "render", str(paths["story_file"]), "--out", str(paths["out"]),
                     "--music", str(paths["music"]), env={"FACELESS_ROOTS": str(allowed)})
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert f"{parameter} " in result.stderr and "is outside the folders this worker serves" in result.stderr
    assert not (elsewhere / "out").exists() and not (tmp_path / "home" / "artifacts").exists()


def test_paths_inside_the_roots_pass(tmp_path, monkeypatch):
    from faceless.flows import roots

    monkeypatch.setenv("FACELESS_ROOTS", f"{tmp_path / 'a'}:s3://bucket/stories")
    roots.check("out", tmp_path / "a" / "b" / "out")
    roots.check("out", "s3://bucket/stories/out")
    with pytest.raises(roots.OutsideRootsError):
        roots.check("out", "s3://bucket/other")
    with pytest.raises(roots.OutsideRootsError):
        roots.check("story_file", tmp_path / "a" / ".." / "story.txt")
    monkeypatch.delenv("FACELESS_ROOTS")
    roots.check("story_file", "/anywhere/story.txt")  # unset: a single user's machine
