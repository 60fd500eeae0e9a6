"""The `wan` animate backend on a tiny random Wan 2.2 TI2V twin: built offline through the real
classes, loaded with from_pretrained, one native pass per shot at the asked frame count and size."""

from __future__ import annotations

import json

import pytest
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
