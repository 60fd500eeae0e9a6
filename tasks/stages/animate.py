"""Animate: a shot's keyframe brought to motion, as long as its narration.

Backends (the profile's `animate.backend`, found through tasks/backends/base.py) come in two
kinds:

- those with their own `motion` (and `denoising_steps`): Stable Video Diffusion makes a window
  spread over the shot, then interpolates to the output rate (tasks/backends/svd.py);
- the others make a shot in one native pass (`native_motion` below): one generation per shot
  at the output frame rate, guided by the shot's full description: no chaining, no
  interpolation (tasks/backends/native_pass.py).

A slow push-in (`zoom`) runs over the shot. The result is `clip.mp4` at the output size,
frame rate and exact frame count, plus the generated frames themselves in `frames/`.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from PIL import Image

from prefect import task

from faceless.tasks import models
from faceless.tasks.backends import base as backends
from faceless.tasks.profile_sections import CLIP_CRF
from faceless.tasks.runtime import gpu, placement
from faceless.tasks.runtime.caching import ArtifactPolicy
from faceless.tasks.runtime.progress import Progress
from faceless.tasks.stages.results import ClipResult, KeyframeResult

STAGE_VERSION = 3  # 3: backends (svd and the native-pass ones); the shot's description goes with the keyframe


def native_motion(keyframe: Image.Image, prompt: str, shot: int, seed: int, frame_count: int, settings: dict,
                  progress) -> tuple[list[Image.Image], list[Image.Image], dict]:
    """Backends with a native pass: the shot's frames made at the output rate in one pass."""
    backend = backends.get(settings["backend"])

    # Frames come back at the generation size: the push-in below crops and scales them to the
    # output once (and frames/ keeps what the model made, not an upscale of it).
    at_generation_size = {k: v for k, v in settings.items() if k not in ("out_width", "out_height")}

    def on_gpu():
        pipe = backend.load_cached(settings["model"])  # once per process
        with models.MODEL_LOCK:
            where = placement.ensure_placed("animate", backend.FAMILY, backend.NAME, pipe, settings)
            gpu.inject_fault("animate", shot)
            return where, backend.generate(pipe, keyframe, prompt, frame_count, settings["out_fps"],
                                           at_generation_size, seed, progress)

    where, clip = gpu.on_gpu(f"animate[{shot}]", on_gpu)
    return clip.frames, clip.frames, {"placement": where,
        "windows": 1, "fps_conditioning": clip.fps if getattr(backend, "TOLD_FPS", False) else None,
        "interpolation": None, "native_frames": clip.native_frames, "generation_size": list(clip.generation_size),
        "num_inference_steps": clip.steps, "sampler": clip.sampler}


def expect_prompts(settings: dict, prompts: list[str]) -> None:
    """Tell the backend the run's shot prompts before its tasks start, where it encodes them
    all at once (wan: one UMT5 batch a run, tasks/backends/wan_prompts.py)."""
    backend = backends.get(settings["backend"])
    if hasattr(backend, "expect_prompts"):
        backend.expect_prompts(list(prompts))


def denoising_steps(frame_count: int, settings: dict) -> int:
    """The shot's denoising steps: the backend's own count (several windows), else one pass's."""
    count = getattr(backends.get(settings["backend"]), "denoising_steps", None)
    return count(frame_count, settings) if count else settings["num_inference_steps"]


def output_frame(frame: Image.Image, progress: float, zoom: float, size: tuple[int, int]) -> Image.Image:
    # Crop to the output aspect, tighter as the scene goes on, and scale in one resample.
    width, height = size
    scale = 1.0 + zoom * progress
    crop_w = min(frame.width, frame.height * width / height) / scale
    crop_h = crop_w * height / width
    left, top = (frame.width - crop_w) / 2, (frame.height - crop_h) / 2
    return frame.resize(size, Image.BILINEAR, box=(left, top, left + crop_w, top + crop_h))


def clip_size(settings: dict) -> tuple[int, int]:
    """The shot clip's size: the output's, times `clip_scale` (even sides, as yuv420p needs)."""
    scale = settings["clip_scale"]
    return 2 * round(settings["out_width"] * scale / 2), 2 * round(settings["out_height"] * scale / 2)


def write_clip(path: Path, frames, size: tuple[int, int], fps: int, crf: int = CLIP_CRF) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "ultrafast"}
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_image(image)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def animate(keyframe_png: Path, prompt: str, shot: int, seed: int, frame_count: int, settings: dict,
            directory: Path) -> dict:
    if frame_count < 1:
        raise ValueError(f"a shot needs at least one frame, got {frame_count}")
    out_size = clip_size(settings)
    with Image.open(keyframe_png) as image:
        keyframe = image.convert("RGB")
    progress = Progress(f"denoise-animate-{shot:02d}", f"Shot {shot}: {backends.get(settings['backend']).LABEL} denoising",
                        denoising_steps(frame_count, settings))
    motion = getattr(backends.get(settings["backend"]), "motion", native_motion)
    frames, moving, meta = motion(keyframe, prompt, shot, seed, frame_count, settings, progress)
    # How the denoiser stepped, for the manifest: SVD runs its schedule as set (per window).
    meta.setdefault("num_inference_steps", settings["num_inference_steps"])
    meta.setdefault("sampler", "full")
    progress.update(progress.total)

    frames_dir = directory / "frames"
    frames_dir.mkdir()
    for i, frame in enumerate(frames):
        frame.save(frames_dir / f"{i:04d}.png")
    zoom = float(settings["zoom"])
    clip = (output_frame(frame, i / max(1, frame_count - 1), zoom, out_size) for i, frame in enumerate(moving))
    write_clip(directory / "clip.mp4", clip, out_size, settings["out_fps"], settings["clip_crf"])
    return {"generated_frames": len(frames), "frame_count": frame_count, "seed": seed, **meta}


# The shot's index only names it (progress, faults, logs): the artifact depends on content.
@task(name="animate", cache_policy=ArtifactPolicy(stage="animate", version=STAGE_VERSION, labels=("shot",)),
      retry_condition_fn=gpu.retry_on_oom)
def animate_task(keyframe: KeyframeResult, prompt: str, shot: int, seed: int, frame_count: int, settings: dict,
                 models_used: dict) -> ClipResult:
    """`prompt`: the shot's full description, for backends that read one (SVD does not)."""
    return ClipResult.of(gpu.run_gpu_stage("animate", shot, settings, lambda directory, applied: animate(
        keyframe.path("keyframe.png"), prompt, shot, seed, frame_count, applied, directory)))
