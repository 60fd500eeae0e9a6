"""The `wan` animate backend on a tiny random Wan 2.2 TI2V twin: built offline through the real
classes, loaded with from_pretrained, one native pass per shot at the asked frame count and size."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from faceless.tasks.backends import wan
from faceless.tasks.models import modern_tiny
from faceless.tasks.runtime import gpu

# A 2.5 s shot at 4 fps: 10 frames, made in one pass of 13 (4k + 1).
SHOT = dict(frames=10, fps=4)
TINY = {"width": 32, "height": 64, "out_width": 36, "out_height": 64, "num_inference_steps": 2,
        "guidance_scale": 5.0, "max_sequence_length": 32, "model": "tiny:wan", "backend": "wan",
        "degrade": list(wan.DEFAULT_DEGRADE)}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return modern_tiny.build_tiny_wan(tmp_path_factory.mktemp("tiny-wan"))


@pytest.fixture(scope="module")
def pipe(tiny_dir):
    return wan.load(tiny_dir)


@pytest.fixture(scope="module")
def keyframe():
    return Image.new("RGB", (90, 160), (200, 60, 40))


@pytest.mark.slow  # builds and runs the tiny twin
def test_the_twin_is_saved_as_the_published_folder(tiny_dir, pipe):
    index = json.loads((tiny_dir / "model_index.json").read_text())
    assert index["_class_name"] == "WanPipeline" and index["expand_timesteps"] is True
    assert index["boundary_ratio"] is None and index["transformer_2"] == [None, None]
    # Loaded as image-to-video from the text-to-video folder, like the real weights.
    assert type(pipe).__name__ == "WanImageToVideoPipeline" and pipe.config.expand_timesteps
    assert pipe.transformer.config.in_channels == pipe.vae.config.z_dim == 48
    assert (pipe.vae_scale_factor_spatial, pipe.vae_scale_factor_temporal) == (16, 4)


@pytest.mark.slow  # builds and runs the tiny twin
def test_one_pass_makes_the_shot_at_its_frame_count_and_size(pipe, keyframe):
    steps = []
    clip = wan.generate(pipe, keyframe, "a red fox runs", settings=TINY, seed=3,
                        progress=lambda p, i, t, kwargs: steps.append(i) or kwargs, **SHOT)
    assert len(clip.frames) == 10 and clip.native_frames == 13
    assert {frame.size for frame in clip.frames} == {(36, 64)}
    assert clip.generation_size == (32, 64) and clip.size == (36, 64)
    assert steps == [0, 1]


@pytest.mark.slow  # builds and runs the tiny twin
def test_same_seed_same_clip(pipe, keyframe):
    first = wan.generate(pipe, keyframe, "a fox", frames=5, fps=4, settings=TINY, seed=1)
    again = wan.generate(pipe, keyframe, "a fox", frames=5, fps=4, settings=TINY, seed=1)
    other = wan.generate(pipe, keyframe, "a fox", frames=5, fps=4, settings=TINY, seed=2)
    assert [f.tobytes() for f in first.frames] == [f.tobytes() for f in again.frames]
    assert [f.tobytes() for f in first.frames] != [f.tobytes() for f in other.frames]


@pytest.mark.slow  # builds and runs the tiny twin
def test_every_rung_of_the_ladder_keeps_the_frame_count(pipe, keyframe):
    # Attempt k of a Prefect task applies the first k-1 rungs (runtime/gpu.degrade).
    for attempt in range(1, len(wan.DEFAULT_DEGRADE) + 2):
        applied, _ = gpu.degrade({**TINY, "width": 64, "height": 128}, attempt)
        clip = wan.generate(pipe, keyframe, "a fox", frames=6, fps=4, settings=applied, seed=1)
        assert len(clip.frames) == 6 and clip.native_frames == 9
        assert {frame.size for frame in clip.frames} == {(36, 64)}
    # The last rungs halved the generation, and the knobs are off again for the next shot.
    assert clip.generation_size == (32, 64)
    assert not pipe.vae.use_tiling


@pytest.mark.slow  # builds and runs the tiny twin
def test_tiled_decoding_makes_the_same_shot(pipe, keyframe):
    # Tiles smaller than the picture, so the 2.2 VAE really decodes in overlapping tiles.
    settings = {**TINY, "width": 64, "height": 128}
    whole = wan.generate(pipe, keyframe, "a fox", frames=5, fps=4, settings=settings, seed=4)
    tiled = wan.generate(pipe, keyframe, "a fox", frames=5, fps=4, seed=4,
                         settings={**settings, "vae_tiling": True, "vae_tile": 64})
    assert [f.size for f in tiled.frames] == [f.size for f in whole.frames]
    assert [f.tobytes() for f in tiled.frames] != [f.tobytes() for f in whole.frames]  # tiles blend at seams
    assert not pipe.vae.use_tiling


def test_frame_counts_are_4k_plus_1():
    assert [wan.native_frame_count(n) for n in (1, 2, 5, 6, 48, 120, 121, 144)] == [1, 5, 5, 9, 49, 121, 121, 145]
    with pytest.raises(ValueError):
        wan.native_frame_count(0)


def test_sizes_snap_to_multiples_of_32():
    assert wan.WanOptions().generation_size() == (704, 1280)
    assert wan.WanOptions(width=720, height=1280).generation_size() == (704, 1280)
    assert wan.WanOptions(resolution_scale=0.75).generation_size() == (512, 960)
    assert wan.WanOptions(resolution_scale=0.5).generation_size() == (352, 640)
    assert wan.WanOptions(width=720, height=1280, out_width=720, out_height=1280).target_size() == (720, 1280)


@pytest.mark.slow  # builds and runs the tiny twin
def test_a_shot_too_long_for_one_pass_is_refused_not_split(pipe, keyframe):
    with pytest.raises(ValueError, match="max_frames"):
        wan.generate(pipe, keyframe, "a fox", frames=146, fps=24, settings=TINY, seed=1)


def test_a_rung_may_not_touch_frames():
    wan.check_ladder(wan.DEFAULT_DEGRADE)
    with pytest.raises(ValueError, match="never fewer frames"):
        wan.check_ladder([{"vae_tiling": True}, {"num_frames": 49}])
    with pytest.raises(ValueError, match="resolution_scale"):
        wan.check_ladder([{"resolution_scale": 1.5}])


def test_full_size_transformer_is_the_published_5b():
    from faceless.tasks.models.modern_tiny import WAN_PUBLISHED_TRANSFORMER_PARAMS, count_parameters, full_size_models

    counts = {name: count_parameters(model) for name, model in full_size_models().items()}
    assert abs(counts["transformer"] / WAN_PUBLISHED_TRANSFORMER_PARAMS - 1) < 0.01  # 4999.8 M
    assert 5.5e9 < counts["text_encoder"] < 5.8e9  # UMT5-XXL's encoder
    assert 0.6e9 < counts["vae"] < 0.8e9


def _counting(pipe):
    """(timesteps the transformer saw, passes through the last block's feed-forward): a step
    cache skips a block's work, not the block's call, so the inner module is what counts."""
    seen, computed = [], []
    hooks = [pipe.transformer.register_forward_pre_hook(
                 lambda m, args, kwargs: seen.append(round(float(kwargs["timestep"].max()))), with_kwargs=True),
             pipe.transformer.blocks[-1].ffn.register_forward_hook(lambda m, i, o: computed.append(1))]
    return seen, computed, hooks


@pytest.mark.slow  # builds and runs the tiny twin
def test_the_distilled_sampler_runs_one_pass_at_each_published_timestep(pipe, keyframe):
    seen, computed, hooks = _counting(pipe)
    scheduler = pipe.scheduler
    try:
        distilled = {**TINY, "sampler": "distilled", "num_inference_steps": 3, "guidance_scale": 1.0}
        clip = wan.generate(pipe, keyframe, "a red fox runs", settings=distilled, seed=3, **SHOT)
        again = wan.generate(pipe, keyframe, "a red fox runs", settings=distilled, seed=3, **SHOT)
    finally:
        for hook in hooks:
            hook.remove()
    # FastWan2.2's DMD timesteps, guidance off: one transformer pass a step, twice over.
    assert seen == [1000, 757, 522] * 2 and len(computed) == 6
    assert clip.sampler == "distilled" and clip.steps == 3 and len(clip.frames) == 10
    assert [f.tobytes() for f in clip.frames] == [f.tobytes() for f in again.frames]  # the re-noising is seeded
    assert pipe.scheduler is scheduler  # the shared pipeline gets its own scheduler back


@pytest.mark.slow  # builds and runs the tiny twin
def test_a_step_cache_skips_transformer_work_on_the_full_sampler(pipe, keyframe):
    full = {**TINY, "num_inference_steps": 4}
    seen, computed, hooks = _counting(pipe)
    try:
        plain = wan.generate(pipe, keyframe, "a fox", settings=full, seed=5, **SHOT)
        uncached = len(computed)
        computed.clear()
        # A threshold no change reaches: after the first step, every later block is reused.
        cached = wan.generate(pipe, keyframe, "a fox", seed=5, **SHOT, settings={
            **full, "step_cache": "firstblock", "step_cache_options": {"threshold": 1e6}})
    finally:
        for hook in hooks:
            hook.remove()
    assert uncached == 8  # 4 steps x (prompt + negative prompt)
    assert len(computed) == 2 and len(seen) == 16  # the transformer is called, its last block skipped
    assert (plain.sampler, cached.sampler) == ("full", "full+firstblockcache")
    assert [f.size for f in cached.frames] == [f.size for f in plain.frames]
    computed.clear()
    assert not getattr(pipe.transformer, "_diffusers_hook", None) or not pipe.transformer._diffusers_hook.hooks


def test_a_step_cache_is_refused_with_the_distilled_sampler():
    with pytest.raises(ValueError, match="step_cache 'firstblock' with the distilled sampler"):
        wan.WanOptions(sampler="distilled", num_inference_steps=3, guidance_scale=1.0, step_cache="firstblock")
    with pytest.raises(ValueError, match="without guidance"):
        wan.WanOptions(sampler="distilled", num_inference_steps=3, guidance_scale=5.0)
    with pytest.raises(ValueError, match="makes 3 steps"):
        wan.WanOptions(sampler="distilled", num_inference_steps=50, guidance_scale=1.0)
    with pytest.raises(ValueError, match="mag_ratios"):
        wan.WanOptions(step_cache="magcache")
    assert wan.WanOptions(step_cache="taylorseer").sampler_label == "full+taylorseercache"


def test_profiles_pick_their_samplers_and_refuse_a_cache_on_a_distilled_one():
    import yaml
    from pydantic import ValidationError

    from faceless.tasks.profile_schema import Profile
    from faceless.tasks.settings import load_profile, profile_path

    animate = {name: load_profile(name)["animate"] for name in ("modern", "modern-tiny", "modern-quality",
                                                                 "modern-quality-tiny")}
    assert animate["modern"]["model"] == "hf:FastVideo/FastWan2.2-TI2V-5B-FullAttn-Diffusers"
    for name in ("modern", "modern-tiny"):
        assert (animate[name]["sampler"], animate[name]["num_inference_steps"], animate[name]["step_cache"]) == \
            ("distilled", 3, "none") and animate[name]["distilled_timesteps"] == [1000, 757, 522]
    assert animate["modern-quality"]["model"] == "hf:Wan-AI/Wan2.2-TI2V-5B-Diffusers"
    assert (animate["modern-quality"]["sampler"], animate["modern-quality"]["num_inference_steps"]) == ("full", 50)
    assert animate["modern-quality"]["step_cache"] == animate["modern-quality-tiny"]["step_cache"] == "firstblock"
    raw = yaml.safe_load(profile_path("modern").read_text())
    raw["animate"]["step_cache"] = "firstblock"
    with pytest.raises(ValidationError, match="distilled sampler"):
        Profile.model_validate(raw)


@pytest.mark.slow  # builds and runs the tiny twin
def test_the_runs_prompts_are_encoded_in_one_batch_with_the_same_embeddings(pipe, keyframe):
    from faceless.tasks.backends import wan_prompts

    prompts = ["a red fox runs through snow", "the fox sleeps under a pine", "morning light"]
    options = wan.WanOptions(**{k: v for k, v in TINY.items() if k in ("num_inference_steps", "guidance_scale",
                                                                       "max_sequence_length")})
    single = [pipe.encode_prompt(p, do_classifier_free_guidance=False, max_sequence_length=32, device="cpu")[0]
              for p in prompts + [""]]
    calls = []
    hook = pipe.text_encoder.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    try:
        wan.expect_prompts(prompts)
        texts = [wan_prompts.inputs(pipe, p, options, "cpu") for p in prompts]
        clip = wan.generate(pipe, keyframe, prompts[1], settings=TINY, seed=3, **SHOT)
        alone = wan_prompts.inputs(pipe, "a prompt the run did not name", options, "cpu")
    finally:
        hook.remove()
        wan_prompts.forget()
    # One pass of the encoder for the three shots and the (guided) negative prompt, then none.
    assert calls[:1] == [4] and len(clip.frames) == 10
    for text, expected in zip(texts, single):
        assert torch.allclose(text["prompt_embeds"], expected, atol=1e-5)
        assert torch.allclose(text["negative_prompt_embeds"], single[-1], atol=1e-5)
    # A prompt the run did not name: encoded on its own, the negative prompt reused.
    assert calls == [4, 1] and torch.allclose(alone["negative_prompt_embeds"], single[-1], atol=1e-5)
