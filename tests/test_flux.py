"""FLUX.1-schnell keyframes: the published sizes, the tiny twin, and the backend (CPU, seconds)."""

from __future__ import annotations

import json

import pytest

from faceless.tasks.backends import flux
from faceless.tasks.models import flux_tiny


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny-flux")
    flux_tiny.build_tiny_flux(directory)
    return directory


@pytest.fixture(scope="module")
def pipe(tiny_dir):
    return flux.load_pipeline(tiny_dir)


def test_full_size_transformer_is_flux_schnell():
    # 11.9 B parameters: the published FLUX.1 transformer (19 double + 38 single blocks).
    assert flux_tiny.full_size_parameters("transformer") == 11_891_178_560
    assert flux_tiny.full_config("transformer")["guidance_embeds"] is False  # schnell, not dev


def test_full_size_text_encoders_and_vae():
    assert round(flux_tiny.full_size_parameters("text-encoder-2") / 1e9, 2) == 4.76  # T5-XXL encoder
    assert round(flux_tiny.full_size_parameters("text-encoder") / 1e6) == 123  # CLIP ViT-L/14 text
    assert round(flux_tiny.full_size_parameters("vae") / 1e6, 1) == 83.8


def test_tiny_twin_is_a_pipeline_folder(tiny_dir):
    index = json.loads((tiny_dir / "model_index.json").read_text())
    assert index["_class_name"] == "FluxPipeline"
    assert index["transformer"] == ["diffusers", "FluxTransformer2DModel"]
    assert index["text_encoder_2"] == ["transformers", "T5EncoderModel"]
    for sub in ("scheduler", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "transformer", "vae"):
        assert (tiny_dir / sub).is_dir(), sub
    assert not (tiny_dir / "_tokenizers").exists()
    vae = json.loads((tiny_dir / "vae" / "config.json").read_text())
    assert vae["latent_channels"] == 16 and vae["shift_factor"] == 0.1159


def test_t5_tokenizer_has_t5_layout(pipe):
    tok = pipe.tokenizer_2
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    ids = tok("Mara could not sleep, a girl in a red wool coat").input_ids
    assert ids[-1] == 1 and 2 not in ids
    assert 10 <= len(ids) <= 16  # word-sized pieces, as T5's own vocabulary gives
    assert pipe.text_encoder_2.config.vocab_size == flux_tiny.T5_VOCAB_ROWS
    long = " ".join(["red"] * 400)
    assert flux.count_tokens(tok, long, 256) == (401, True)


def test_keyframe_four_steps_no_guidance(pipe):
    calls = []
    result = flux.keyframe(pipe, "a fox in the snow", 144, 256, seed=7, settings={"width": 144},
                           progress=lambda done, total: calls.append((done, total)))
    assert result.image.size == (144, 256)
    assert result.steps == 4 and calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert result.clip_tokens == 7 and not result.t5_truncated
    again = flux.keyframe(pipe, "a fox in the snow", 144, 256, seed=7)
    other = flux.keyframe(pipe, "a fox in the snow", 144, 256, seed=8)
    assert again.image.tobytes() == result.image.tobytes()
    assert other.image.tobytes() != result.image.tobytes()


def test_keyframe_passes_schnell_settings(pipe, monkeypatch):
    seen = {}
    real_call = type(pipe).__call__

    def spy(self, **kwargs):
        seen.update(kwargs)
        return real_call(self, **kwargs)

    monkeypatch.setattr(type(pipe), "__call__", spy)
    flux.keyframe(pipe, "clip prompt", 64, 64, seed=1, prompt_2="the whole prompt for T5")
    assert seen["num_inference_steps"] == 4 and seen["guidance_scale"] == 0.0
    assert seen["max_sequence_length"] == 256
    assert seen["prompt"] == "clip prompt" and seen["prompt_2"] == "the whole prompt for T5"
    assert callable(seen["callback_on_step_end"])


def test_progress_object_with_step_callback(pipe):
    class Progress:
        steps = 0

        def step_callback(self):
            def callback(pipe, step, timestep, kwargs):
                Progress.steps += 1
                return kwargs
            return callback

    flux.keyframe(pipe, "a lighthouse", 64, 64, seed=1, progress=Progress())
    assert Progress.steps == 4


def test_memory_knobs_are_undone_and_offload_is_skipped_without_cuda(pipe):
    result = flux.keyframe(pipe, "a train at night", 64, 64, seed=3,
                           settings={"vae_tiling": True, "vae_slicing": True, "model_cpu_offload": True})
    assert result.knobs == ["vae_tiling", "vae_slicing"]
    assert result.skipped_knobs == ["model_cpu_offload"]
    assert not pipe.vae.use_tiling and not pipe.vae.use_slicing


def test_bad_inputs_are_refused(pipe):
    with pytest.raises(ValueError, match="multiple of 16"):
        flux.keyframe(pipe, "x", 100, 64, seed=1)
    with pytest.raises(ValueError, match="max_sequence_length"):
        flux.keyframe(pipe, "x", 64, 64, seed=1, settings={"max_sequence_length": 512})
    with pytest.raises(ValueError, match="prompt"):
        flux.keyframe(pipe, "  ", 64, 64, seed=1)


def test_loads_and_draws_with_no_network(tiny_dir, monkeypatch):
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    pipe = flux.load_pipeline(tiny_dir)
    assert flux.keyframe(pipe, "a quiet harbour", 32, 48, seed=5).image.size == (32, 48)
