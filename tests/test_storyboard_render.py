"""A story of about a minute, with front matter, rendered through the CLI with the offline
profile (Piper, real word times): short shots, one motion window each, prompts within 77 tokens
that carry the style, the setting and the cast of each shot, and a video as long as its
narration. (The studio code path's shots, SVD windows and motion-compensated interpolation are
checked on the tiny render of tests/test_render_studio.py: a minute of tiny SVD shots here
took three minutes and checked nothing more.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import av
import pytest

from conftest import ROOT, make_env, render
from faceless.tasks.stages.plan import split_front_matter
from faceless.tasks.text.prompts import count_tokens

pytestmark = pytest.mark.slow  # renders a minute-long story

STORY = ROOT / "tests" / "stories" / "lantern-festival.txt"
FRONT, BODY = split_front_matter(STORY.read_text(encoding="utf-8"))
# Who a shot's words name, or point back to, in this story (Ana is its only "she"; every
# "he", "his" and "him" is Leo; "they" and "their" are the two of them).
REFERS_TO = {"Ana": r"\b(Ana|[Ss]he|her)\b", "Leo": r"\b(Leo|[Hh]e|his|him)\b"}


@pytest.fixture(scope="module")
def rendered(prefect_server, models_home, tmp_path_factory):
    root = tmp_path_factory.mktemp("minute-offline")
    env = make_env(prefect_server, root / "home", models_home)
    # A quarter of the pixels: the storyboard, its windows and the timeline do not depend on
    # the frame size, and compose's and the push-in's per-pixel work is most of a render.
    render(env, STORY, root / "out", "--size", "360x640")
    folder = root / "out" / "the-lantern-festival"
    return {"folder": folder, "manifest": json.loads((folder / "manifest.json").read_text(encoding="utf-8"))}


def test_shots_are_short_with_at_most_two_windows(rendered):
    shots = rendered["manifest"]["scenes"]
    # Piper speaks the story in about a minute.
    assert 55 <= rendered["manifest"]["narration"]["duration"] <= 70
    assert len(shots) >= 12, "a new picture every few seconds"
    for shot in shots:
        assert shot["frames"] / 24 <= 7.0, shot
        assert 1 <= shot["windows"] <= 2, shot
        # Offline cross-fades its noise frames (the studio path's minterpolate: test_render_studio.py).
        assert shot["interpolation"].startswith("blend"), shot
    # Together the shots say the whole story, in order.
    assert " ".join(s["text"] for s in shots).split() == BODY.split()


def test_prompts_fit_and_carry_style_setting_and_cast(rendered):
    for shot in rendered["manifest"]["scenes"]:
        prompt, prompt_2 = shot["prompt"], shot["prompt_2"]
        assert shot["prompt_tokens"] == max(count_tokens(prompt), count_tokens(prompt_2 or prompt)) <= 77
        sent = f"{prompt} {prompt_2}"
        assert FRONT.style in sent and FRONT.setting in sent, shot
        for name, pattern in REFERS_TO.items():
            if re.search(pattern, shot["text"]) or re.search(r"\b([Tt]hey|[Tt]heir|them)\b", shot["text"]):
                assert FRONT.cast[name] in sent, (name, shot)


def test_video_is_as_long_as_the_narration(rendered):
    manifest = rendered["manifest"]
    with av.open(str(rendered["folder"] / "video.mp4")) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == sum(s["frames"] for s in manifest["scenes"]) == manifest["video"]["frames"]
    assert abs(frames / 24 - manifest["narration"]["duration"]) <= 1 / 24
    assert Path(rendered["folder"] / "keyframes" / f"scene-{len(manifest['scenes']) - 1:02d}.png").is_file()
