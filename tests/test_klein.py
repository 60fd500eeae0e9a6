"""FLUX.2 [klein] 4B, modern's reference model: the published sizes, the tiny twin through
Flux2KleinPipeline, which shots it draws and their cache keys, and preflight (CPU, seconds)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from faceless.flows.preflight import for_cast, keyframe_identity
from faceless.tasks import models
from faceless.tasks.backends import base as backends
from faceless.tasks.backends import flux2_klein as klein
from faceless.tasks.models import klein_tiny
from faceless.tasks.models.tiny import published
from faceless.tasks.runtime import store
from faceless.tasks.settings import load_profile, section
from faceless.tasks.stages.cast import CastPolicy, takes_references
from faceless.tasks.stages.keyframe import KeyframePolicy, drawing_groups, drawing_section
from faceless.tasks.stages.results import CastResult


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny-klein")
    klein_tiny.build_tiny_klein(directory)
    return directory


@pytest.fixture(scope="module")
def pipe(tiny_dir):
    import torch

    from faceless.tasks.backends import flux

    torch.set_num_threads(1)  # tiny matrix products (the tiny profile's cpu_threads: 1)
    return flux.load_pipeline(tiny_dir, pipeline=klein.PIPELINE)


SECTION = {**load_profile("modern-tiny")["keyframe"]["references"], "width": 64, "height": 96}


def test_full_size_is_klein_4b():
    import torch
    from diffusers import Flux2Transformer2DModel
    from transformers import Qwen3Config, Qwen3ForCausalLM

    with torch.device("meta"):
        transformer = Flux2Transformer2DModel(**published("flux2-klein-4b-transformer"))
        encoder = Qwen3ForCausalLM(Qwen3Config(**published("flux2-klein-4b-text-encoder")))
    assert round(sum(p.numel() for p in transformer.parameters()) / 1e9, 2) == 3.88  # the "4B"
    assert round(sum(p.numel() for p in encoder.parameters()) / 1e9, 2) == 4.02  # Qwen3-4B, tied embeddings
    config = transformer.config
    assert (config.num_layers, config.num_single_layers, config.num_attention_heads, config.attention_head_dim) == (
        5, 20, 24, 128)
    # The pipeline stacks three of Qwen3-4B's hidden states: 3 x 2560.
    assert config.joint_attention_dim == len(klein_tiny.OUT_LAYERS) * encoder.config.hidden_size
    assert not config.guidance_embeds and config.in_channels == 4 * published("flux2-klein-4b-vae")["latent_channels"]


def test_tiny_twin_is_a_klein_pipeline_folder(tiny_dir):
    index = json.loads((tiny_dir / "model_index.json").read_text())
    assert index["_class_name"] == "Flux2KleinPipeline" and index["is_distilled"] is True
    assert index["transformer"] == ["diffusers", "Flux2Transformer2DModel"]
    assert index["text_encoder"] == ["transformers", "Qwen3ForCausalLM"]
    assert index["vae"] == ["diffusers", "AutoencoderKLFlux2"]


def test_references_change_the_picture_and_the_same_ones_repeat_it(pipe):
    red, green = Image.new("RGB", (64, 96), (200, 30, 30)), Image.new("RGB", (64, 96), (30, 200, 30))
    draw = lambda refs: klein.keyframe(pipe, "a man on a pier", 64, 96, 7, SECTION, None, refs)  # noqa: E731
    plain, with_red, with_red_again, with_green = draw([]), draw([("Tomas", red)]), draw([("Tomas", red)]), draw(
        [("Tomas", green)])
    pixels = lambda made: np.asarray(made.image, dtype=np.int16)  # noqa: E731
    assert with_red.image.size == (64, 96) and with_red.steps == 4 and with_red.references == ["Tomas"]
    assert np.array_equal(pixels(with_red), pixels(with_red_again))
    assert not np.array_equal(pixels(plain), pixels(with_red))
    assert not np.array_equal(pixels(with_red), pixels(with_green))
    # Two references, the prompt naming each by its place.
    both = klein.keyframe(pipe, "a man on a pier", 64, 96, 7, SECTION, None, [("Tomas", red), ("Ines", green)])
    assert both.references == ["Tomas", "Ines"] and not np.array_equal(pixels(both), pixels(with_red))
    assert klein.prompt_with_references("a pier.", ["Tomas", "Ines"]) == (
        "a pier. Tomas is the person in reference image 1; Ines is the person in reference image 2.")


def test_more_references_than_it_takes_uses_the_first(pipe):
    # A thumbnail under the pipeline's 64 pixels a side is scaled up rather than refused.
    refs = [(name, Image.new("RGB", (32, 48), (i * 60, 0, 0))) for i, name in enumerate("ABC")]
    made = klein.keyframe(pipe, "three people", 32, 32, 1, {**SECTION, "max_references": 2}, None, refs)
    assert made.references == ["A", "B"]
    with pytest.raises(ValueError, match="multiple of 16"):
        klein.keyframe(pipe, "x", 40, 32, 1, SECTION)


def test_registered_as_a_keyframe_backend_of_its_own_family():
    module = backends.get("flux2-klein")
    assert (module.STAGE, module.FAMILY, module.SIZE_MULTIPLE) == ("keyframe", "flux2", 16)
    assert "flux2" in backends.families("keyframe") and "flux2-klein" in models.tiny.tiny_models()
    assert set(module.components()) == {"text_encoder", "transformer", "vae"}


def test_modern_profiles_draw_cast_shots_with_klein_and_the_others_with_schnell():
    for name, spec in (("modern", "hf:black-forest-labs/FLUX.2-klein-4B"), ("modern-tiny", "tiny:flux2-klein")):
        section = load_profile(name)["keyframe"]
        assert section["backend"] == "flux-schnell" and section["references"]["model"] == spec
        assert takes_references(section)
        groups = drawing_groups(section, [[], ["ref"], [], ["ref"]])
        assert [(s["backend"], family, shots) for s, family, shots in groups] == [
            ("flux-schnell", "flux", [0, 2]), ("flux2-klein", "flux2", [1, 3])]
        klein_section = groups[1][0]
        assert (klein_section["width"], klein_section["height"]) == (section["width"], section["height"])
    # Studio's references are its own backend's (the IP-Adapter): one group, the section as it is.
    studio = load_profile("studio")["keyframe"]
    assert drawing_groups(studio, [[], ["ref"]]) == [(studio, "sdxl", [0, 1])]
    assert drawing_section(studio, ["ref"]) is studio


def _content(settings: dict, identity: dict, references: list) -> dict:
    inputs = {"shot": {"prompt": "p", "seed": 1}, "index": 0, "settings": settings, "models_used": identity,
              "references": references}
    return KeyframePolicy(stage="keyframe", version=3, labels=("index",)).content(inputs)


def test_a_shot_showing_nobody_keeps_its_key_when_the_profile_adds_references():
    with_refs = load_profile("modern-tiny")["keyframe"]
    without = {k: v for k, v in with_refs.items() if k != "references"}
    identity = {"flux-schnell": "tiny:flux-schnell@v1"}
    both = {**identity, "flux2-klein": "tiny:flux2-klein@v1"}
    key = lambda content: store.artifact_key("keyframe", 3, content)  # noqa: E731
    assert key(_content(with_refs, both, [])) == key(_content(without, identity, []))
    # A shot showing someone is klein's: its settings and model in the key, not schnell's.
    reference = CastResult.model_construct(name="Tomas")
    content = _content(with_refs, both, [reference])
    assert content["settings"]["backend"] == "flux2-klein" and content["models_used"] == {
        "flux2-klein": "tiny:flux2-klein@v1"}
    assert key(content) != key(_content(with_refs, both, []))
    # A profile without references resolves to the settings it had before they existed.
    assert "references" not in section("keyframe", backend="flux-schnell")


def test_cast_references_are_keyed_without_klein():
    settings = load_profile("modern-tiny")["keyframe"]
    inputs = {"member": {"name": "Tomas", "description": "old", "image": None}, "index": 0, "style": "s", "seed": 1,
              "negative_prompt": "", "settings": settings,
              "models_used": {"flux-schnell": "a", "flux2-klein": "b"}}
    content = CastPolicy(stage="cast").content(inputs)
    assert content["models_used"] == {"flux-schnell": "a"} and "references" not in content["settings"]


def test_klein_weights_are_needed_only_for_a_story_with_a_cast():
    modern = load_profile("modern")
    specs = lambda profile: [spec for _, spec, _ in models.profile_models(profile)]  # noqa: E731
    assert "hf:black-forest-labs/FLUX.2-klein-4B" in specs(for_cast(modern, {"Tomas": "an old man"}))
    assert "hf:black-forest-labs/FLUX.2-klein-4B" not in specs(for_cast(modern, {}))
    tiny = for_cast(load_profile("modern-tiny"), {"Tomas": "an old man"})
    assert list(keyframe_identity(tiny["keyframe"])) == ["flux-schnell", "flux2-klein"]
    assert list(keyframe_identity(for_cast(tiny, {})["keyframe"])) == ["flux-schnell"]
    # Studio's IP-Adapter is untouched either way.
    assert for_cast(load_profile("studio"), {})["keyframe"]["references"]


def test_modern_without_klein_weights_refuses_naming_them(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    profile = load_profile("modern-tiny")
    profile["keyframe"]["references"]["model"] = "hf:black-forest-labs/FLUX.2-klein-4B"
    with pytest.raises(models.ModelMissingError) as error:
        models.require(for_cast(profile, {"Tomas": "an old man"}))
    assert "black-forest-labs/FLUX.2-klein-4B" in str(error.value) and "\n" not in str(error.value)
    models.require(for_cast(profile, {}))  # no cast: klein is not needed
