"""Plan: sentences, scenes and slugs from story text."""

from __future__ import annotations

import pytest

from tasks.plan import StoryError, plan_story, slugify, split_sentences

SETTINGS = {"sentences_per_scene": 2, "seed": 100, "style": "oil painting", "negative_prompt": "text"}


def test_sentences_keep_quotes_and_join_wrapped_lines():
    text = 'He said "Hello, World." Then he left!\nIt was\nlate. Was it?\n\nA new paragraph'
    assert split_sentences(text) == ['He said "Hello, World."', "Then he left!", "It was late.",
                                     "Was it?", "A new paragraph"]


def test_scenes_group_sentences_and_carry_prompt_and_seed():
    plan = plan_story("One. Two. Three.", SETTINGS, title="My Story")
    assert plan.slug == "my-story"
    assert [s.sentences for s in plan.scenes] == [[0, 1], [2]]
    assert plan.scenes[1].prompt == "Three., oil painting"
    assert [s.seed for s in plan.scenes] == [100, 101]
    assert plan.sentences[0].words == ["One."]


def test_editing_a_sentence_changes_only_its_scene():
    first = plan_story("One. Two. Three. Four.", SETTINGS)
    second = plan_story("One. Two. Three changed. Four.", SETTINGS)
    assert first.scenes[0] == second.scenes[0]
    assert first.scenes[1] != second.scenes[1]


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
