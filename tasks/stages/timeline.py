"""Where each shot sits in the video, all of the timeline maths in one place: frame boundaries
on the narration, the cross-fades at each boundary and the length of every shot's clip.

The flow lays the timeline out once the storyboard and the narration are known; animate makes
each clip `clip_frames` long and compose lays the clips on `bounds`, fading over `handles`.
"""

from __future__ import annotations

from pydantic import BaseModel


class Timeline(BaseModel):
    """`bounds`: the frame where each shot begins, plus the total (shots tile the narration).
    `handles`: frames each boundary cross-fades on either side (index k is the boundary where
    shot k begins; 0 first and last). `clip_frames`: frames each shot's clip holds, its own
    length plus its fades."""

    bounds: list[int]
    handles: list[int]
    clip_frames: list[int]

    def for_compose(self) -> dict:
        """What compose lays the clips on (and what its cache key holds): bounds and handles."""
        return {"bounds": self.bounds, "handles": self.handles}


def frame_boundaries(scene_starts: list[float], duration: float, fps: int) -> list[int]:
    """Frame index where each scene begins, plus the total: scenes tile the narration exactly."""
    total = max(1, round(duration * fps))
    bounds = [0] + [min(total, max(0, round(start * fps))) for start in scene_starts[1:]] + [total]
    for i in range(1, len(bounds)):  # a scene of no frames still keeps order
        bounds[i] = max(bounds[i], bounds[i - 1])
    return bounds


def transition_handles(bounds: list[int], half_frames: int) -> list[int]:
    """Frames each scene boundary cross-fades on either side: index k is the boundary where
    scene k begins (0 for the first scene, and one more 0 for the end). A short scene gets a
    shorter fade, so two fades never overlap."""
    handles = [0] * len(bounds)
    for k in range(1, len(bounds) - 1):
        handles[k] = max(0, min(half_frames, (bounds[k] - bounds[k - 1]) // 2, (bounds[k + 1] - bounds[k]) // 2))
    return handles


def clip_lengths(bounds: list[int], handles: list[int]) -> list[int]:
    """Frames each scene's clip must hold: its own span plus the fades into and out of it."""
    return [bounds[k + 1] - bounds[k] + handles[k] + handles[k + 1] for k in range(len(bounds) - 1)]


def shot_timeline(starts: list[float], duration: float, compose: dict) -> Timeline:
    """The timeline of shots starting at `starts` (seconds) over a narration of `duration`.

    A clip's length comes from the shot's own length in seconds, not from the difference of two
    rounded positions in the video: an edit earlier in the story shifts where a shot lands by a
    fraction of a frame, and that must not change the clip (and make it again). The two can
    differ by a frame; compose holds a clip's last frame or leaves its spare one."""
    fps = compose["fps"]
    own = [max(1, round((end - start) * fps)) for start, end in zip(starts, [*starts[1:], duration])]
    handles = transition_handles([0, *_cumulative(own)], round(compose["transition_s"] * fps / 2))
    return Timeline(bounds=frame_boundaries(starts, duration, fps), handles=handles,
                    clip_frames=[n + handles[k] + handles[k + 1] for k, n in enumerate(own)])


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
