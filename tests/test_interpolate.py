"""Motion-compensated interpolation puts a moving thing in between, where a cross-fade would
show two faded copies of it."""

from __future__ import annotations

import numpy as np
from PIL import Image

from faceless.tasks.media.interpolate import METHOD, interpolate

WIDTH, HEIGHT, PATCH = 160, 64, 24
rng = np.random.default_rng(0)
TEXTURE = rng.integers(0, 256, (PATCH, PATCH, 3), dtype=np.uint8)
BACKGROUND = rng.integers(60, 90, (HEIGHT, WIDTH, 3), dtype=np.uint8)


def frame_with_patch_at(x: int) -> Image.Image:
    pixels = BACKGROUND.copy()
    pixels[20:20 + PATCH, x:x + PATCH] = TEXTURE
    return Image.fromarray(pixels)


def best_match(image: Image.Image) -> tuple[int, float]:
    """Where the patch is in a frame (its left edge) and how well it matches there (mean
    absolute difference per channel, 0 = the patch itself)."""
    pixels = np.asarray(image).astype(int)
    errors = [np.abs(pixels[20:20 + PATCH, x:x + PATCH] - TEXTURE).mean() for x in range(WIDTH - PATCH)]
    return int(np.argmin(errors)), float(min(errors))


def test_a_pattern_moved_between_two_frames_is_drawn_in_between():
    start, end = 20, 36  # two generated frames, the patch 16 pixels further right in the second
    frames, method = interpolate([frame_with_patch_at(start), frame_with_patch_at(end)], 5, 24)
    frames = list(frames)
    assert method == METHOD and len(frames) == 5
    found = [best_match(f) for f in frames]
    positions = [x for x, _ in found]
    assert positions[0] == start and positions[-1] == end
    # In between, the patch is found whole at the in-between places (4 pixels a frame).
    for i, (x, error) in enumerate(found[1:-1], start=1):
        assert abs(x - (start + i * (end - start) / 4)) <= 2, positions
        assert error < 5, found
    # A cross-fade of the two frames has no such patch anywhere: the best match is a blend,
    # far from the texture.
    blend = Image.blend(frame_with_patch_at(start), frame_with_patch_at(end), 0.5)
    assert best_match(blend)[1] > 25


def test_frames_are_spread_over_the_whole_shot_exactly():
    generated = [frame_with_patch_at(10 + 4 * i) for i in range(8)]
    frames, _ = interpolate(generated, 61, 24)
    frames = list(frames)
    assert len(frames) == 61
    # Generated frame i lands on output frame i * 60 / 7; the first and last exactly.
    # (through YUV and back: colours within rounding).
    assert np.abs(np.asarray(frames[0]).astype(int) - np.asarray(generated[0])).max() <= 2
    assert best_match(frames[-1])[0] == 10 + 4 * 7


def test_enough_generated_frames_are_picked_not_made():
    generated = [frame_with_patch_at(10 + i) for i in range(25)]
    frames, method = interpolate(generated, 13, 24)
    assert method == "none"
    assert [best_match(f)[0] for f in frames] == [10 + 2 * i for i in range(13)]


def test_blend_cross_fades_neighbours_and_keeps_the_generated_frames_in_place():
    """The offline profile's cheap way: each in-between frame mixes the two generated frames
    either side of it, and every output frame differs from the one before (the clip moves)."""
    from faceless.tasks.media.interpolate import BLEND

    generated = [Image.new("RGB", (16, 16), (v, 255 - v, 0)) for v in (0, 80, 240)]
    frames, method = interpolate(generated, 9, 24, "blend")
    frames = [np.asarray(f).astype(int) for f in frames]
    assert method == BLEND and len(frames) == 9
    # Generated frame i lands on output frame 4 * i exactly.
    for i, g in enumerate(generated):
        assert (frames[4 * i] == np.asarray(g)).all()
    # Halfway between the first two: their mean (within rounding).
    assert abs(frames[2][0, 0, 0] - 40) <= 1
    reds = [f[0, 0, 0] for f in frames]
    assert all(b > a for a, b in zip(reds, reds[1:])), reds


def test_an_unknown_interpolation_is_refused():
    import pytest

    with pytest.raises(ValueError, match="motion or blend"):
        interpolate([frame_with_patch_at(0), frame_with_patch_at(4)], 5, 24, "optical-flow")
