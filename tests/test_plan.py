"""Plan: front matter, sentences, words and slugs from story text."""

from __future__ import annotations

import re

import pytest

from faceless.tasks.stages.plan import FrontMatter, StoryError, plan_story, slugify, split_front_matter, split_sentences

SETTINGS = {"seed": 100, "style": "oil painting", "negative_prompt": "text"}


def test_sentences_keep_quotes_and_join_wrapped_lines():
    text = 'He said "Hello, World." Then he left!\nIt was\nlate. Was it?\n\nA new paragraph'
    assert split_sentences(text) == ['He said "Hello, World."', "Then he left!", "It was late.",
                                     "Was it?", "A new paragraph"]


def test_plan_carries_sentences_words_style_and_seed():
    plan = plan_story("One. Two. Three.", SETTINGS, title="My Story")
    assert plan.slug == "my-story" and plan.title == "My Story"
    assert [s.text for s in plan.sentences] == ["One.", "Two.", "Three."]
    assert plan.sentences[0].words == ["One."]
    assert (plan.style, plan.setting, plan.cast, plan.seed, plan.negative_prompt) == ("oil painting", "", {}, 100, "text")


FRONT = """---
title: The Night Train
style: watercolour, muted blues
setting: a sleeper train crossing snowy mountains at night
cast:
  Mara: a girl of ten in a red wool coat
  Mr. Okafor: a tall conductor with a grey beard
seed: 7
---
Mara could not sleep. She walked to the front.
"""


def test_front_matter_sets_title_style_setting_cast_and_seed():
    plan = plan_story(FRONT, SETTINGS, title="file name")
    assert plan.title == "The Night Train" and plan.slug == "the-night-train"
    assert plan.style == "watercolour, muted blues"
    assert plan.setting == "a sleeper train crossing snowy mountains at night"
    assert plan.cast == {"Mara": "a girl of ten in a red wool coat", "Mr. Okafor": "a tall conductor with a grey beard"}
    assert plan.seed == 7
    # The front matter is not part of the story: nothing of it is narrated.
    assert [s.text for s in plan.sentences] == ["Mara could not sleep.", "She walked to the front."]


def test_story_without_front_matter_is_all_story():
    front, body = split_front_matter("--- not front matter\nOne. Two.")
    assert front == FrontMatter() and body == "--- not front matter\nOne. Two."
    assert split_front_matter("One.\n---\ntitle: x\n---\n")[1].startswith("One.")


@pytest.mark.parametrize("front, message", [
    ("title: [unclosed", "not valid YAML"),
    ("- a list", "must be a mapping"),
    ("colour: red", "unknown front matter field(s) colour"),
    ("seed: -1", "seed must be a whole number"),
    ("seed: seven", "seed must be a whole number"),
    ("cast: [Mara, Tom]", "cast must map each name"),
    ("cast:\n  Mara: [a, b]", "cast must map each name"),
    ("setting: {a: b}", "setting must be text"),
])
def test_malformed_front_matter_is_one_clear_error(front, message):
    with pytest.raises(StoryError, match=re.escape(message)):
        split_front_matter(f"---\n{front}\n---\nOnce upon a time.")


@pytest.mark.parametrize("text", ["", "   \n\t", "\x00\x01"])
def test_empty_story_is_refused(text):
    with pytest.raises(StoryError, match="empty"):
        plan_story(text, SETTINGS)


def test_huge_story_is_refused():
    with pytest.raises(StoryError, match="limit"):
        plan_story("word " * 10_000, SETTINGS)


def test_slug_is_a_safe_folder_name():
    assert slugify("../../etc/passwd") == "etc-passwd"
    assert slugify("Café au lait") == "cafe-au-lait"
    assert slugify("日本語", "seed").startswith("story-")
