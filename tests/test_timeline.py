"""Scene clips laid end to end, cross-faded at each boundary, tiling the narration exactly."""

from __future__ import annotations

from PIL import Image

from tasks.animate import write_clip
from tasks.compose import clip_lengths, frame_boundaries, timeline_frames, transition_handles


def test_boundaries_tile_the_narration():
    bounds = frame_boundaries([0.0, 2.0, 5.01], duration=7.5, fps=24)
    assert bounds == [0, 48, 120, 180]


def test_fades_are_shortened_for_short_scenes():
    bounds = [0, 48, 54, 120]
    handles = transition_handles(bounds, half_frames=6)
    assert handles == [0, 3, 3, 0]  # the 6-frame middle scene allows 3 frames each side
    assert clip_lengths(bounds, handles) == [51, 12, 69]


def test_cross_fade_ramps_from_one_clip_to_the_next(tmp_path):
    bounds = [0, 20, 40]
    handles = transition_handles(bounds, half_frames=4)
    lengths = clip_lengths(bounds, handles)
    clips = []
    for k, (colour, length) in enumerate(zip([(255, 0, 0), (0, 0, 255)], lengths)):
        path = tmp_path / f"clip{k}.mp4"
        write_clip(path, [Image.new("RGB", (64, 64), colour)] * length, (64, 64), 24)
        clips.append(path)
    frames = list(timeline_frames(clips, bounds, handles))
    assert len(frames) == 40
    red = [int(f[32, 32, 0]) for f in frames]
    blue = [int(f[32, 32, 2]) for f in frames]
    assert red[0] > 240 and blue[0] < 15 and red[-1] < 15 and blue[-1] > 240
    fade = range(bounds[1] - handles[1], bounds[1] + handles[1])
    assert all(red[i] > red[i + 1] and blue[i] < blue[i + 1] for i in fade)   # strictly moving
    assert all(red[i] > 240 for i in range(fade.start)) and all(blue[i] > 240 for i in range(fade.stop, 40))
