"""Animate: a shot's keyframe brought to motion by Stable Video Diffusion, as long as its narration.

One SVD window (25 frames for SVD-XT, as trained) covers the whole shot: the window's frames
are spread over the shot's length, and SVD is told so through its fps micro-conditioning,
chosen per shot inside the profile's `fps_range`. Motion-compensated interpolation
(tasks/interpolate.py) then brings the frames to the output rate. Only a shot too long for
one window at the lowest allowed fps gets a second window (`max_windows`), conditioned on the
last frame of the first; chained windows drift in colour and identity, so they stay rare.
A slow push-in (`zoom`) runs over the shot. The result is `clip.mp4` at the output size,
frame rate and exact frame count, plus the generated frames themselves in `frames/`.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from PIL import Image

from prefect import task

from faceless.tasks.runtime import gpu, store

from faceless.tasks import models
from faceless.tasks.runtime.caching import ArtifactPolicy
from faceless.tasks.media.interpolate import interpolate
from faceless.tasks.runtime.progress import Progress

STAGE_VERSION = 2  # 2: one window per shot, fps conditioning per shot, motion interpolation
CLIP_CRF = 14  # an intermediate: compose re-encodes it, so keep it near-lossless


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


def output_frame(frame: Image.Image, progress: float, zoom: float, size: tuple[int, int]) -> Image.Image:
    # Crop to the output aspect, tighter as the scene goes on, and scale in one resample.
    width, height = size
    scale = 1.0 + zoom * progress
    crop_w = min(frame.width, frame.height * width / height) / scale
    crop_h = crop_w * height / width
    left, top = (frame.width - crop_w) / 2, (frame.height - crop_h) / 2
    return frame.resize(size, Image.BILINEAR, box=(left, top, left + crop_w, top + crop_h))


def write_clip(path: Path, frames, size: tuple[int, int], fps: int) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(CLIP_CRF), "preset": "ultrafast"}
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_image(image)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def animate(keyframe_png: Path, shot: int, seed: int, frame_count: int, settings: dict, directory: Path) -> dict:
    if frame_count < 1:
        raise ValueError(f"a shot needs at least one frame, got {frame_count}")
    out_size = (settings["out_width"], settings["out_height"])
    out_fps = settings["out_fps"]
    windows, fps = window_plan(frame_count / out_fps, settings)
    with Image.open(keyframe_png) as image:
        keyframe = image.convert("RGB")
    progress = Progress(f"denoise-animate-{shot:02d}", f"Shot {shot}: SVD denoising",
                        settings["num_inference_steps"] * windows)

    def on_gpu():
        pipe = models.svd(settings["model"])
        with models.MODEL_LOCK, gpu.memory_knobs(pipe, settings):
            gpu.inject_fault("animate", shot)
            return generate(pipe, keyframe, settings, windows, fps, seed, progress.step_callback())

    # Only the model work holds the GPU; interpolating and encoding the clip below is CPU work.
    frames = gpu.on_gpu(f"animate[{shot}]", on_gpu)
    progress.update(progress.total)

    frames_dir = directory / "frames"
    frames_dir.mkdir()
    for i, frame in enumerate(frames):
        frame.save(frames_dir / f"{i:04d}.png")

    zoom = settings["zoom"]
    moving, method = interpolate(frames, frame_count, out_fps)
    clip = (output_frame(frame, i / max(1, frame_count - 1), zoom, out_size) for i, frame in enumerate(moving))
    write_clip(directory / "clip.mp4", clip, out_size, out_fps)
    return {"generated_frames": len(frames), "frame_count": frame_count, "windows": windows,
            "fps_conditioning": fps, "interpolation": method, "seed": seed}


# The shot's index only names it (progress, faults, logs): the artifact depends on content.
@task(name="animate", cache_policy=ArtifactPolicy(stage="animate", version=STAGE_VERSION, labels=("shot",)),
      retry_condition_fn=gpu.retry_on_oom)
def animate_task(keyframe: dict, shot: int, seed: int, frame_count: int, settings: dict, models_used: dict) -> dict:
    return gpu.run_gpu_stage("animate", shot, settings, lambda directory, applied: animate(
        store.path_of(keyframe, "keyframe.png"), shot, seed, frame_count, applied, directory))
