"""Storyboard review without a render: edit files, applying edits, the Resume form's model and what
it sends back, the storyboard a person reads, and the CLI refusing a bad edit file before any
work. The review through a render is in tests/test_render_studio.py (the terminal) and
tests/test_deployments.py (the Prefect UI)."""

from __future__ import annotations

import subprocess

import pytest

from conftest import BIN
from faceless.flows.review import (NEW_SEED_STEP, ReviewError, ShotEdit, apply_edits, edits_from_form, parse_edits,
                                   review_form, storyboard_markdown, storyboard_text)
from faceless.tasks.stages.results import Storyboard
from faceless.tasks.text.prompts import count_tokens


def board(count: int = 3) -> Storyboard:
    shots = [{"index": i, "sentences": [i], "words": (i * 4, i * 4 + 4), "text": f"Sentence number {i} here.",
              "start": 2.0 * i, "end": 2.0 * i + 2, "cast": [], "prompt": f"prompt {i}", "prompt_2": "",
              "prompt_tokens": 4, "description": f"prompt {i}", "negative_prompt": "blurry", "seed": 100 + i}
             for i in range(count)]
    ref = {"stage": "storyboard", "key": "k", "files": {"shots.json": "h"}}
    return Storyboard.of(ref, shots=shots)


def test_edit_files_by_shot_index():
    edits = parse_edits("2:\n  prompt: a lighthouse at dusk\n0: {new_seed: true}\n1: {seed: 7}\n3: {}\n")
    assert edits == {2: ShotEdit(prompt="a lighthouse at dusk"), 0: ShotEdit(new_seed=True), 1: ShotEdit(seed=7)}
    assert parse_edits("") == {} and parse_edits("# nothing to change\n") == {}  # an empty file approves
    assert parse_edits('{"1": {"prompt": "json works too"}}') == {1: ShotEdit(prompt="json works too")}


@pytest.mark.parametrize("text, message", [
    ("[1, 2]", "expected a mapping of shot index"),
    ("first: {prompt: x}", "'first' is not a shot index"),
    ("1: {prompt: ''}", "shot 1 prompt: String should have at least 1 character"),
    ("1: {colour: red}", "shot 1 colour: Extra inputs are not permitted"),
    ("1: {seed: -1}", "shot 1 seed: Input should be greater than or equal to 0"),
    ("1: {prompt: [unclosed", "not YAML or JSON"),
])
def test_a_bad_edit_file_is_one_line(text, message):
    with pytest.raises(ReviewError) as raised:
        parse_edits(text, "edits.yaml")
    assert str(raised.value).startswith("edits.yaml: ") and message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_edits_change_only_their_shots_and_mark_them():
    long = " ".join(["a lighthouse keeper climbing the spiral stairs with a lantern"] * 10)
    edited = apply_edits(board(), {1: ShotEdit(prompt=long), 2: ShotEdit(new_seed=True), 0: ShotEdit(seed=5)})
    first, second, third = edited.shots
    assert first.seed == 5 and first.prompt == "prompt 0" and first.edited
    assert second.edited and count_tokens(second.prompt) <= 77 and long.startswith(second.prompt)
    assert second.description == long and second.prompt_2 == "" and second.prompt_tokens <= 77
    assert second.seed == 101
    assert third.seed == (102 + NEW_SEED_STEP) % 2**32 and third.prompt == "prompt 2"
    # Keyframe inputs change for edited shots only; unchanged shots stay as they were, not edited.
    untouched = apply_edits(board(), {1: ShotEdit(prompt="a lighthouse")})
    assert [s.edited for s in untouched.shots] == [False, True, False]
    assert untouched.keyframe_inputs()[0] == board().keyframe_inputs()[0]
    assert untouched.keyframe_inputs()[1] != board().keyframe_inputs()[1]
    with pytest.raises(ReviewError, match="no shot 7 in this storyboard"):
        apply_edits(board(), {7: ShotEdit(prompt="x")})


def test_the_resume_form_holds_every_prompt_and_gives_back_the_changes():
    form = review_form(board())
    schema = form.model_json_schema()["properties"]
    assert schema["shot_1_prompt"]["default"] == "prompt 1" and schema["shot_1_prompt"]["title"] == "Shot 1 prompt"
    assert "Sentence number 1 here." in schema["shot_1_prompt"]["description"]
    assert schema["shot_2_new_seed"]["type"] == "boolean" and schema["shot_2_new_seed"]["default"] is False
    assert edits_from_form(board(), form()) == {}  # submitted untouched: approved
    answer = form(shot_1_prompt="  a new   prompt ", shot_2_new_seed=True)
    assert edits_from_form(board(), answer) == {1: ShotEdit(prompt="a new prompt"), 2: ShotEdit(new_seed=True)}
    # Made again from the same storyboard (a run starting over after its resume), it is the same form.
    assert review_form(board()).model_json_schema() == form.model_json_schema()


def test_what_a_person_reads(tmp_path):
    from PIL import Image

    pictures = []
    for i in range(3):
        pictures.append(tmp_path / f"k{i}.png")
        Image.new("RGB", (16, 32), (40 * i, 90, 120)).save(pictures[-1])
    edited = apply_edits(board(), {1: ShotEdit(prompt="a lighthouse")})
    text = storyboard_text(edited, pictures)
    assert "shot 1  2.00-4.00 s  seed 101  writer rules  (edited)" in text
    assert f"keyframe: {pictures[2]}" in text and "words:    Sentence number 0 here." in text
    markdown = storyboard_markdown(edited, pictures, "A Title", 0)
    assert markdown.count("data:image/jpeg;base64,") == 3 and "| 1 | ![shot 1 keyframe]" in markdown
    assert "| a lighthouse | 101 | Sentence number 1 here. | 2.00-4.00 s | rules (edited) |" in markdown


def test_cli_refuses_a_bad_edit_file_before_any_work(tmp_path):
    story = tmp_path / "story.txt"
    story.write_text("A fox ran.", encoding="utf-8")
    edits = tmp_path / "edits.yaml"
    edits.write_text("1: {colour: red}\n", encoding="utf-8")
    result = subprocess.run([str(BIN / "faceless"), "render", str(story), "--review-edits", str(edits),
                             "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120,
                            env={**__import__("os").environ, "FACELESS_HOME": str(tmp_path / "home")})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"faceless: error: review edits file {edits}: shot 1 colour: Extra inputs are not permitted"]
    assert not (tmp_path / "out").exists() and not (tmp_path / "home").exists()
