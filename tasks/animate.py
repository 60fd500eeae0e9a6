"""Animate: a scene's keyframe brought to motion by Stable Video Diffusion, as long as its narration.

SVD makes a short window of frames (25 at most, as trained). The profile's `stretch` says how
that window covers the scene: `chain` generates further windows, each conditioned on the
last frame of the one before (the repeated frame is dropped); `interpolate` cross-fades
between the generated frames; `pingpong` plays them forward and back. A slow push-in
(`zoom`) hides the seams. The result is `clip.mp4` at the output size, frame rate and exact
frame count, plus the generated frames themselves in `frames/`.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

from PIL import Image

from prefect import task

from tasks import gpu, models, store
from tasks.caching import ArtifactPolicy
from tasks.progress import Progress

STAGE_VERSION = 1
CLIP_CRF = 14  # an intermediate: compose re-encodes it, so keep it near-lossless


def fit(image: Image.Image, width: int, height: int) -> Image.Image:
    """Scale to cover width x height and centre-crop: no distortion."""
    scale = max(width / image.width, height / image.height)
    resized = image.resize((max(width, round(image.width * scale)), max(height, round(image.height * scale))), Image.LANCZOS)
    left, top = (resized.width - width) // 2, (resized.height - height) // 2
    return resized.crop((left, top, left + width, top + height))


def svd_window(pipe, image: Image.Image, settings: dict, seed: int, on_step=None) -> list[Image.Image]:
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
        fps=settings["fps"],
        decode_chunk_size=settings["decode_chunk_size"],
        generator=generator,
        output_type="pil",
        callback_on_step_end=on_step,
    )
    return list(result.frames[0])


def generated_frames_needed(settings: dict, frame_count: int, out_fps: int) -> int:
    """Generated frames that cover `frame_count` output frames at SVD's own fps."""
    return max(2, math.ceil(frame_count / out_fps * settings["fps"]) + 1)


def windows_needed(settings: dict, frame_count: int, out_fps: int) -> int:
    if settings["stretch"] != "chain":
        return 1
    extra = generated_frames_needed(settings, frame_count, out_fps) - settings["num_frames"]
    return 1 + max(0, math.ceil(extra / max(1, settings["num_frames"] - 1)))


def generate(pipe, keyframe: Image.Image, settings: dict, frame_count: int, out_fps: int, seed: int,
             on_step=None) -> list[Image.Image]:
    start = fit(keyframe, settings["width"], settings["height"])
    frames = svd_window(pipe, start, settings, seed, on_step)
    if settings["stretch"] != "chain":
        return frames
    needed = generated_frames_needed(settings, frame_count, out_fps)
    window = 1
    while len(frames) < needed:
        # The next window starts from our last frame, which it repeats as its first: drop it.
        frames.extend(svd_window(pipe, frames[-1], settings, seed + window, on_step)[1:])
        window += 1
    return frames


def source_position(index: int, frame_count: int, generated: int, settings: dict, out_fps: int) -> float:
    """Where output frame `index` falls in the generated frames (fractional = blend)."""
    if generated == 1 or frame_count == 1:
        return 0.0
    stretch = settings["stretch"]
    if stretch == "interpolate":
        return index * (generated - 1) / (frame_count - 1)
    position = index * settings["fps"] / out_fps
    if stretch == "pingpong":
        period = 2 * (generated - 1)
        phase = position % period
        return phase if phase <= generated - 1 else period - phase
    if stretch == "chain":
        return min(position, generated - 1)
    raise ValueError(f"unknown stretch {stretch!r} (interpolate, pingpong or chain)")


def output_frame(frames: list[Image.Image], position: float, progress: float, zoom: float, size: tuple[int, int]) -> Image.Image:
    low = int(math.floor(position))
    high = min(low + 1, len(frames) - 1)
    frame = frames[low] if high == low or position == low else Image.blend(frames[low], frames[high], position - low)
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


def animate(keyframe_png: Path, scene: int, seed: int, frame_count: int, settings: dict, directory: Path) -> dict:
    if frame_count < 1:
        raise ValueError(f"a scene needs at least one frame, got {frame_count}")
    out_size = (settings["out_width"], settings["out_height"])
    out_fps = settings["out_fps"]
    with Image.open(keyframe_png) as image:
        keyframe = image.convert("RGB")
    progress = Progress(f"denoise-animate-{scene:02d}", f"Scene {scene}: SVD denoising",
                        settings["num_inference_steps"] * windows_needed(settings, frame_count, out_fps))

    def on_gpu():
        pipe = models.svd(settings["model"])
        with models.MODEL_LOCK, gpu.memory_knobs(pipe, settings):
            gpu.inject_fault("animate", scene)
            return generate(pipe, keyframe, settings, frame_count, out_fps, seed, progress.step_callback())

    # Only the model work holds the GPU; stretching and encoding the clip below is CPU work.
    frames = gpu.on_gpu(f"animate[{scene}]", on_gpu)
    progress.update(progress.total)

    frames_dir = directory / "frames"
    frames_dir.mkdir()
    for i, frame in enumerate(frames):
        frame.save(frames_dir / f"{i:04d}.png")

    zoom = float(settings.get("zoom", 0.0))
    clip = (
        output_frame(frames, source_position(i, frame_count, len(frames), settings, out_fps),
                     i / max(1, frame_count - 1), zoom, out_size)
        for i in range(frame_count)
    )
    write_clip(directory / "clip.mp4", clip, out_size, out_fps)
    return {"generated_frames": len(frames), "frame_count": frame_count, "stretch": settings["stretch"], "seed": seed}


@task(name="animate", cache_policy=ArtifactPolicy(stage="animate", version=STAGE_VERSION),
      retry_condition_fn=gpu.retry_on_oom)
def animate_task(keyframe: dict, scene: int, seed: int, frame_count: int, settings: dict, models_used: dict) -> dict:
    return gpu.run_gpu_stage("animate", scene, settings, lambda directory, applied: animate(
        store.path_of(keyframe, "keyframe.png"), scene, seed, frame_count, applied, directory))
