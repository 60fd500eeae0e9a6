"""Scene clips laid end to end, cross-faded at each boundary, tiling the narration exactly."""

from __future__ import annotations

import pytest
from PIL import Image

from faceless.tasks.stages.animate import write_clip
from faceless.tasks.stages.compose import timeline_frames
from faceless.tasks.stages.timeline import clip_lengths, frame_boundaries, shot_timeline, transition_handles


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
    frames = list(timeline_frames(clips, bounds, handles, (64, 64)))
    assert len(frames) == 40
    red = [int(f[32, 32, 0]) for f in frames]
    blue = [int(f[32, 32, 2]) for f in frames]
    assert red[0] > 240 and blue[0] < 15 and red[-1] < 15 and blue[-1] > 240
    fade = range(bounds[1] - handles[1], bounds[1] + handles[1])
    assert all(red[i] > red[i + 1] and blue[i] < blue[i + 1] for i in fade)   # strictly moving
    assert all(red[i] > 240 for i in range(fade.start)) and all(blue[i] > 240 for i in range(fade.stop, 40))


def test_a_clip_smaller_than_the_output_is_scaled_up_as_it_is_decoded(tmp_path):
    from faceless.tasks.stages.animate import clip_size

    settings = {"out_width": 720, "out_height": 1280, "clip_scale": 0.5}
    assert clip_size(settings) == (360, 640) and clip_size({**settings, "clip_scale": 1.0}) == (720, 1280)
    assert clip_size({**settings, "clip_scale": 0.33}) == (238, 422)  # even sides for yuv420p
    half = Image.new("RGB", (32, 64), (255, 0, 0))
    half.paste((0, 0, 255), (0, 32, 32, 64))  # the lower half blue
    path = tmp_path / "clip.mp4"
    write_clip(path, [half] * 10, (32, 64), 24)
    frames = list(timeline_frames([path], [0, 10], [0, 0], (64, 128)))
    assert len(frames) == 10 and frames[0].shape == (128, 64, 3)
    assert frames[0][20, 32, 0] > 200 and frames[0][108, 32, 2] > 200


def test_a_clip_is_as_long_as_its_shot_wherever_the_shot_lands():
    """An edit earlier in the story moves a shot by a fraction of a frame: its clip (and the
    SVD work in it) must stay the same length, so it stays cached."""
    compose = {"fps": 24, "transition_s": 0.5}
    before = shot_timeline([0.0, 3.0, 10.08], 12.80, compose)
    after = shot_timeline([0.0, 3.0, 11.28], 14.00, compose)  # the second shot spoken 1.2 s longer
    assert before.clip_frames[2] == after.clip_frames[2]
    assert before.clip_frames[0] == after.clip_frames[0]
    assert before.bounds[-1] == round(12.80 * 24) and after.bounds[-1] == round(14.00 * 24)


def test_a_clip_a_frame_short_of_its_place_holds_its_last_frame(tmp_path):
    bounds, handles = [0, 10, 20], [0, 0, 0]
    clips = []
    for k, (colour, length) in enumerate(zip([(255, 0, 0), (0, 0, 255)], [9, 11])):
        path = tmp_path / f"clip{k}.mp4"
        write_clip(path, [Image.new("RGB", (64, 64), colour)] * length, (64, 64), 24)
        clips.append(path)
    frames = list(timeline_frames(clips, bounds, handles, (64, 64)))
    assert len(frames) == 20
    assert int(frames[9][32, 32, 0]) > 240 and int(frames[10][32, 32, 2]) > 240
    short = tmp_path / "short.mp4"
    write_clip(short, [Image.new("RGB", (64, 64), (0, 255, 0))] * 5, (64, 64), 24)
    with pytest.raises(ValueError, match="too few frames"):
        list(timeline_frames([short, clips[1]], bounds, handles, (64, 64)))
