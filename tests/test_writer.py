"""The shot writer without a render: the schema, reading an answer, the 77-token prompts that keep
cast and style, the tiny Qwen2 twin writing under the schema, the fall-back to the rules prompt,
and where profiles, the model check and the memory plan put it. The render through it is in
tests/test_render_studio.py."""

from __future__ import annotations

import json

import pytest

from faceless.tasks.text.prompts import count_tokens
from faceless.tasks.text.shot_writing import (FIELDS, ShotDescription, description_schema, messages,
                                              read_description, shot_prompts)

GOOD = {"subject": "a girl in a yellow raincoat", "action": "sets a paper boat on the river",
        "setting": "a flooded street at dawn", "camera": "low angle, medium shot", "motion": "slow push-in",
        "prompt": "girl launching a paper boat on a flooded street", "description": "A girl kneels at the water."}


def test_schema_asks_for_every_field_bounded_and_nothing_else():
    schema = description_schema(40)
    assert schema["required"] == list(FIELDS) and schema["additionalProperties"] is False
    assert all(schema["properties"][f] == {"type": "string", "minLength": 1, "maxLength": 40} for f in FIELDS)
    assert set(ShotDescription.model_fields) == set(FIELDS)


@pytest.mark.parametrize("answer, reason", [
    ('{"subject": "a', "not JSON"),
    (json.dumps({**GOOD, "camera": "   "}), "camera: Value error, empty"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "motion"}), "motion: Field required"),
    (json.dumps({**GOOD, "sound": "rain"}), "sound: Extra inputs"),
])
def test_an_unusable_answer_says_why(answer, reason):
    written, why = read_description(answer)
    assert written is None and why.startswith(reason), why


def test_a_good_answer_is_read_with_its_whitespace_tidied():
    written, why = read_description(json.dumps({**GOOD, "camera": " low angle,\n  medium shot "}))
    assert why is None and written.camera == "low angle, medium shot"


def test_prompts_keep_cast_and_style_within_77_tokens_however_long_the_answer():
    long = {name: " ".join(["a very long and detailed phrase about the moonlit harbour"] * 6) for name in FIELDS}
    cast = ["Mira: a girl of twelve in a yellow raincoat with a red scarf and muddy boots",
            "Tomas: her older brother, a tall sailor with a grey beard and a wool cap"]
    style = "ink and watercolour, muted teal, soft paper texture"
    prompts = shot_prompts(ShotDescription(**long), cast, style)
    assert count_tokens(prompts.prompt) <= 77 and count_tokens(prompts.prompt_2) <= 77 and prompts.tokens <= 77
    both = prompts.prompt + " | " + prompts.prompt_2
    assert style in both and all(member in both for member in cast)
    assert all(part in prompts.description for part in (*cast, style, long["description"], long["camera"]))


def test_short_answers_go_whole_to_both_encoders():
    prompts = shot_prompts(ShotDescription(**GOOD), ["Mira: a girl in a yellow raincoat"], "watercolour")
    assert prompts.prompt_2 == "" and prompts.prompt.startswith(GOOD["prompt"])
    assert "Mira: a girl in a yellow raincoat" in prompts.prompt and prompts.prompt.endswith("watercolour")


def test_the_chat_carries_the_story_the_shot_cast_setting_and_style():
    chat = messages(story="Mira ran. The sea rose.", shot_text="Mira ran.", cast={"Mira": "a girl"},
                    setting="a harbour", style="watercolour", max_chars=50)
    assert [m["role"] for m in chat] == ["system", "user"]
    for part in ("Mira ran. The sea rose.", "The shot's narration: Mira ran.", "- Mira: a girl", "a harbour",
                 "watercolour", "at most 50 characters"):
        assert part in chat[1]["content"]


# -- the tiny twin, for real ------------------------------------------------------------------------

SHOT = {"index": 0, "text": "Mira ran to the river.", "cast": ["Mira"], "seed": 11, "prompt": "rules prompt",
        "prompt_2": "", "prompt_tokens": 3, "description": "rules description", "writer": "rules"}
PLAN = {"cast": {"Mira": "a girl of twelve in a yellow raincoat"}, "setting": "a flooded town", "style": "watercolour"}


@pytest.fixture(scope="module")
def tiny_writer(tiny_home):
    """The tiny random Qwen2 twin, built once into the session's models (conftest's tiny_home)."""
    from faceless.tasks.backends import shot_llm
    from faceless.tasks.models import ensure_tiny

    return shot_llm.load(ensure_tiny("shot-writer"))


def test_the_tiny_twin_writes_a_valid_description_under_the_schema(tiny_writer):
    from faceless.tasks.stages.writer import write_shot

    settings = {"max_field_chars": 4, "max_new_tokens": 200, "temperature": 0.0}
    shot = write_shot(tiny_writer, PLAN, "Mira ran to the river.", SHOT, settings)
    assert shot["writer"] == "llm" and shot["writer_note"] is None, shot
    assert set(shot["visual"]) == set(FIELDS) and all(1 <= len(v) <= 4 for v in shot["visual"].values())
    assert shot["prompt_tokens"] <= 77 and "watercolour" in shot["prompt"]
    assert "Mira: a girl of twelve in a yellow raincoat" in shot["prompt"] + shot["prompt_2"]
    assert shot["seed"] == SHOT["seed"] and shot["text"] == SHOT["text"]  # times, words, seed stay


def test_an_answer_cut_short_falls_back_to_the_rules_prompt_and_says_so(tiny_writer, caplog):
    from faceless.tasks.stages.writer import write_shot

    settings = {"max_field_chars": 4, "max_new_tokens": 20, "temperature": 0.0}  # too few to close the object
    with caplog.at_level("WARNING"):
        shot = write_shot(tiny_writer, PLAN, "Mira ran to the river.", SHOT, settings)
    assert shot["writer"] == "rules" and shot["writer_note"].startswith("unusable answer: not JSON")
    assert (shot["prompt"], shot["description"]) == ("rules prompt", "rules description")
    assert "visual" not in shot
    assert "shot 0: the writer's answer is unusable" in caplog.text


# -- profiles, the model check, the memory plan ------------------------------------------------------

def test_profiles_choose_the_writer():
    from faceless.tasks.settings import load_profile

    writers = {name: load_profile(name)["storyboard"] for name in ("offline", "tiny", "modern-tiny", "studio", "modern")}
    assert writers["offline"]["writer"] == "rules"
    assert all(writers[name]["writer"] == "llm" for name in ("tiny", "modern-tiny", "studio", "modern"))
    assert writers["tiny"]["model"] == writers["modern-tiny"]["model"] == "tiny:shot-writer"
    assert writers["studio"]["model"] == "hf:Qwen/Qwen2.5-3B-Instruct"
    assert writers["modern"]["model"] == "hf:Qwen/Qwen3-4B-Instruct-2507"


def test_a_missing_writer_model_is_refused_by_name(tmp_path, monkeypatch):
    from faceless.tasks.models import ModelMissingError, require
    from faceless.tasks.settings import load_profile

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    profile = load_profile("offline")
    profile["storyboard"] = {**profile["storyboard"], "writer": "llm", "model": "hf:Qwen/Qwen2.5-3B-Instruct"}
    with pytest.raises(ModelMissingError, match=r"Qwen/Qwen2\.5-3B-Instruct.*hf download Qwen/Qwen2\.5-3B-Instruct"):
        require(profile)
    profile["storyboard"]["model"] = str(tmp_path / "no-such-folder")
    with pytest.raises(ModelMissingError, match="storyboard.model: .*no-such-folder has no config.json"):
        require(profile)


def test_the_memory_plan_places_the_writer_as_a_family():
    from faceless.tasks.runtime import memory_plan
    from faceless.tasks.settings import load_profile

    plan = memory_plan.make_plan(load_profile("studio"), 24)
    writer = plan.stage("storyboard")
    assert writer.backend == "shot-writer" and writer.placement == "gpu" and writer.fits
    assert 5.5 < writer.predicted_peak_gib < 7.5  # 3.1 B parameters in bf16, and its KV cache
    assert memory_plan.make_plan(load_profile("offline"), 24).stage("storyboard") is None
