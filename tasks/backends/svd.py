"""The `svd` animate backend: Stable Video Diffusion, one window per shot, then interpolation.

One SVD window (25 frames for SVD-XT, as trained) covers the whole shot: the window's frames
are spread over the shot's length, and SVD is told so through its fps micro-conditioning,
chosen per shot inside the profile's `fps_range`. Motion-compensated interpolation
(tasks/media/interpolate.py) then brings the frames to the output rate. Only a shot too long
for one window at the lowest allowed fps gets a second window (`max_windows`), conditioned on
the last frame of the first; chained windows drift in colour and identity, so they stay rare.
"""

from __future__ import annotations

from PIL import Image

from faceless.tasks import models
from faceless.tasks.media.interpolate import interpolate
from faceless.tasks.runtime import gpu, placement


# The backend interface (tasks/backends/base.py).
NAME = "svd"
STAGE = "animate"
FAMILY = "svd"
LABEL = "SVD"
SIZE_MULTIPLE = 8


def fit(image: Image.Image, width: int, height: int) -> Image.Image:
    """Scale to cover width x height and centre-crop: no distortion."""
    scale = max(width / image.width, height / image.height)
    resized = image.resize((max(width, round(image.width * scale)), max(height, round(image.height * scale))), Image.LANCZOS)
    left, top = (resized.width - width) // 2, (resized.height - height) // 2
    return resized.crop((left, top, left + width, top + height))


def svd_window(pipe, image: Image.Image, settings: dict, fps: int, seed: int, on_step=None) -> list[Image.Image]:
    import torch

    generator = torch.Generator("cpu").manual_seed(seed)
    result = pipe(
        image,
        width=settings["width"],
        height=settings["height"],
        num_frames=settings["num_frames"],
        num_inference_steps=settings["num_inference_steps"],
        motion_bucket_id=settings["motion_bucket_id"],
        noise_aug_strength=settings["noise_aug_strength"],
        fps=fps,
        decode_chunk_size=settings["decode_chunk_size"],
        generator=generator,
        output_type="pil",
        callback_on_step_end=on_step,
    )
    return list(result.frames[0])


def window_plan(seconds: float, settings: dict) -> tuple[int, int]:
    """SVD windows and fps conditioning for a clip of `seconds`: the fewest windows (up to
    `max_windows`) whose frames, spread over the clip, come at least `fps_range[0]` a second;
    the conditioning is that rate, clamped to `fps_range`."""
    low, high = settings["fps_range"]
    intervals = settings["num_frames"] - 1
    windows = 1
    while windows < settings["max_windows"] and windows * intervals / seconds < low:
        windows += 1
    return windows, int(min(high, max(low, round(windows * intervals / seconds))))


def generate(pipe, keyframe: Image.Image, settings: dict, windows: int, fps: int, seed: int,
             on_step=None) -> list[Image.Image]:
    frames = svd_window(pipe, fit(keyframe, settings["width"], settings["height"]), settings, fps, seed, on_step)
    for window in range(1, windows):
        # The next window starts from our last frame, which it repeats as its first: drop it.
        frames.extend(svd_window(pipe, frames[-1], settings, fps, seed + window, on_step)[1:])
    return frames


def denoising_steps(frame_count: int, settings: dict) -> int:
    return settings["num_inference_steps"] * window_plan(frame_count / settings["out_fps"], settings)[0]


def motion(keyframe: Image.Image, prompt: str, shot: int, seed: int, frame_count: int, settings: dict,
           progress) -> tuple[list[Image.Image], list[Image.Image], dict]:
    """The shot's generated frames, the same brought to `frame_count` at the output rate, and
    what the manifest records. (SVD takes no prompt: its only input is the picture.)"""
    windows, fps = window_plan(frame_count / settings["out_fps"], settings)

    def on_gpu():
        pipe = models.svd(settings["model"])
        device = getattr(pipe, "_execution_device", pipe.device)
        with models.model_turn("svd", device, settings["cpu_threads"]):
            where = placement.ensure_placed("animate", "svd", "svd", pipe, settings)
            with gpu.memory_knobs(pipe, settings):
                gpu.inject_fault("animate", shot)
                return where, generate(pipe, keyframe, settings, windows, fps, seed, progress.step_callback())

    # Only the model work holds the GPU; interpolating the frames is CPU work.
    where, frames = gpu.on_gpu(f"animate[{shot}]", on_gpu)
    moving, method = interpolate(frames, frame_count, settings["out_fps"], settings["interpolation"])
    return frames, moving, {"windows": windows, "fps_conditioning": fps, "interpolation": method, "placement": where}
