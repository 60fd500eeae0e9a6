"""Where each shot sits in the video: frame boundaries on the narration, fades and clip lengths."""

from __future__ import annotations

from faceless.tasks.stages.compose import frame_boundaries, transition_handles


def shot_timeline(starts: list[float], duration: float, compose: dict) -> dict:
    """`bounds`: the frame where each shot begins, plus the total (shots tile the narration).
    `handles`: frames each boundary cross-fades on either side. `clip_frames`: frames each
    shot's clip holds, its own length plus its fades.

    A clip's length comes from the shot's own length in seconds, not from the difference of two
    rounded positions in the video: an edit earlier in the story shifts where a shot lands by a
    fraction of a frame, and that must not change the clip (and make it again). The two can
    differ by a frame; compose holds a clip's last frame or leaves its spare one."""
    fps = compose["fps"]
    own = [max(1, round((end - start) * fps)) for start, end in zip(starts, [*starts[1:], duration])]
    handles = transition_handles([0, *_cumulative(own)], round(compose["transition_s"] * fps / 2))
    return {"bounds": frame_boundaries(starts, duration, fps), "handles": handles,
            "clip_frames": [n + handles[k] + handles[k + 1] for k, n in enumerate(own)]}


def clip_settings(settings: dict) -> dict:
    """The animate settings with the output's size and frame rate, which every clip is made for."""
    compose = settings["compose"]
    return {**settings["animate"], "out_width": compose["width"], "out_height": compose["height"],
            "out_fps": compose["fps"]}


def _cumulative(lengths: list[int]) -> list[int]:
    total, out = 0, []
    for n in lengths:
        total += n
        out.append(total)
    return out
