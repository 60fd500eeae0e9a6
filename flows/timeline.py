"""Where each shot sits in the video: frame boundaries on the narration, fades and clip lengths."""

from __future__ import annotations

from tasks.compose import clip_lengths, frame_boundaries, transition_handles


def shot_timeline(starts: list[float], duration: float, compose: dict) -> dict:
    """`bounds` (the frame where each shot begins, plus the total: shots tile the narration),
    `handles` (frames each boundary cross-fades on either side) and `clip_frames` (frames
    each shot's clip must hold: its own span plus its fades)."""
    fps = compose["fps"]
    bounds = frame_boundaries(starts, duration, fps)
    handles = transition_handles(bounds, round(compose.get("transition_s", 0.0) * fps / 2))
    return {"bounds": bounds, "handles": handles,
            "clip_frames": [max(1, n) for n in clip_lengths(bounds, handles)]}
