"""The `ltx` animate backend on a tiny random LTX-Video twin: built offline through the real
classes, loaded with from_pretrained, one native 8k+1 pass per shot at the asked count and size."""

from __future__ import annotations

import pytest
from PIL import Image

from faceless.tasks.backends import ltx
from faceless.tasks.runtime import gpu

TINY = {"width": 32, "height": 64, "out_width": 36, "out_height": 64, "num_inference_steps": 2,
        "max_sequence_length": 32, "degrade": list(ltx.DEFAULT_DEGRADE)}


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return ltx.load(ltx.build_tiny(tmp_path_factory.mktemp("tiny-ltx")))


@pytest.mark.slow  # builds and runs the tiny twin
def test_one_pass_makes_the_shot_at_its_frame_count_and_size(pipe):
    assert type(pipe).__name__ == "LTXImageToVideoPipeline"
    assert (pipe.vae_spatial_compression_ratio, pipe.vae_temporal_compression_ratio) == (32, 8)
    steps = []
    # A 2.5 s shot at 8 fps: 20 frames, made in one pass of 25 (8k + 1).
    clip = ltx.generate(pipe, Image.new("RGB", (90, 160), (40, 90, 200)), "a boat on a lake", frames=20, fps=8,
                        settings=TINY, seed=5, progress=lambda p, i, t, kwargs: steps.append(i) or kwargs)
    assert len(clip.frames) == 20 and clip.native_frames == 25
    assert {frame.size for frame in clip.frames} == {(36, 64)} and clip.generation_size == (32, 64)
    assert steps == [0, 1]


@pytest.mark.slow  # builds and runs the tiny twin
def test_the_ladder_keeps_the_frame_count(pipe):
    ltx.check_ladder(ltx.DEFAULT_DEGRADE)
    applied, _ = gpu.degrade({**TINY, "width": 64, "height": 128}, len(ltx.DEFAULT_DEGRADE) + 1)
    clip = ltx.generate(pipe, Image.new("RGB", (90, 160)), "a boat", frames=9, fps=8, settings=applied, seed=1)
    assert len(clip.frames) == 9 and clip.generation_size == (32, 64)
    assert not pipe.vae.use_tiling


def test_full_size_transformer_is_the_published_2b():
    counts = ltx.full_size_parameters()
    assert abs(counts["transformer"] / ltx.PUBLISHED_TRANSFORMER_PARAMS - 1) < 0.05  # 1923.4 M
    assert 4.7e9 < counts["text_encoder"] < 4.8e9  # T5-XXL's encoder
