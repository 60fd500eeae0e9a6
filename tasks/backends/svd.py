"""The `svd` animate backend: Stable Video Diffusion, one window per shot, then interpolation.

One SVD window (25 frames for SVD-XT, as trained) covers the whole shot: the window's frames
are spread over the shot's length, and SVD is told so through its fps micro-conditioning,
chosen per shot inside the profile's `fps_range`. Motion-compensated interpolation
(tasks/media/interpolate.py) then brings the frames to the output rate. Only a shot too long
for one window at the lowest allowed fps gets a second window (`max_windows`), conditioned on
the last frame of the first; chained windows drift in colour and identity, so they stay rare.
"""

from __future__ import annotations

from typing import Annotated, Literal

from PIL import Image
from pydantic import Field

from faceless.tasks.media.interpolate import interpolate
from faceless.tasks.profile_sections import CLIP_CRF, RungSection, Section


# The backend interface (tasks/backends/base.py).
NAME = "svd"
STAGE = "animate"
FAMILY = "svd"
LABEL = "SVD"
SIZE_MULTIPLE = 8
MODELS = {"model": "diffusers"}  # its model setting: the kind of folder it is


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


def load_cached(spec: str):
    """The SVD img2vid pipeline, loaded once per process, on the CPU in the GPU's dtype: the
    stage places it."""
    from faceless.tasks.models.registry import load_once

    return load_once(FAMILY, (spec,), lambda: _load(spec))


def _load(spec: str):
    from diffusers import StableVideoDiffusionPipeline

    from faceless.tasks.models.registry import device_and_dtype
    from faceless.tasks.models.specs import resolve

    _, dtype = device_and_dtype()
    pipe = StableVideoDiffusionPipeline.from_pretrained(str(resolve(spec)), dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def motion_note(shot: dict) -> str:
    """How a shot was animated, for the run summary (flows/report.py): its windows and their fps
    conditioning, from what the manifest records."""
    windows = shot["windows"]
    return f"{windows} SVD window{'' if windows == 1 else 's'} at fps {shot['fps_conditioning']}"


def denoising_steps(frame_count: int, settings: dict) -> int:
    return settings["num_inference_steps"] * window_plan(frame_count / settings["out_fps"], settings)[0]


def motion(keyframe: Image.Image, prompt: str, shot: int, seed: int, frame_count: int, settings: dict,
           progress) -> tuple[list[Image.Image], list[Image.Image], dict]:
    """The shot's generated frames, the same brought to `frame_count` at the output rate, and
    what the manifest records. (SVD takes no prompt: its only input is the picture.)"""
    from faceless.tasks import models
    from faceless.tasks.runtime import gpu, placement

    windows, fps = window_plan(frame_count / settings["out_fps"], settings)

    def on_gpu():
        pipe = load_cached(settings["model"])
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

# -- the profile's section (tasks/profile_schema.py builds the stage's union from the registry) --

class AnimateRung(RungSection):
    """A rung of SVD's ladder. SVD's temporal VAE cannot tile (diffusers raises
    NotImplementedError) and attention slicing does nothing in its UNet: neither is offered;
    `decode_chunk_size` is its decode knob."""
    model_cpu_offload: bool | None = None
    forward_chunking: bool | None = None
    decode_chunk_size: int | None = None
    num_frames: int | None = None


class SvdAnimate(Section):
    backend: Literal["svd"] = "svd"
    model: str
    width: int
    height: int
    num_frames: int
    num_inference_steps: int
    motion_bucket_id: int
    noise_aug_strength: float
    decode_chunk_size: int  # SVD's temporal VAE decodes all frames at once unless told
    fps_range: Annotated[list[int], Field(min_length=2, max_length=2)]  # SVD's fps conditioning, low and high
    max_windows: int = 2  # a second, chained window only for a shot too long for one at the lowest fps
    # How the window's frames come to the output rate: motion-compensated (minterpolate), or a
    # cross-fade of neighbouring frames, much cheaper, for pictures with no motion to follow.
    interpolation: Literal["motion", "blend"] = "motion"
    zoom: float = 0.0  # push-in over the shot, as a fraction of the frame
    clip_crf: int = CLIP_CRF  # x264 quality of the shot's clip, an intermediate compose re-encodes
    # The clip's size as a fraction of the output's: compose scales a smaller clip up as it
    # decodes it. Below 1 only where the pictures have no detail to keep (offline's noise).
    clip_scale: Annotated[float, Field(gt=0, le=1)] = 1.0
    cpu_threads: int | None = None  # torch threads on a CPU while generating (see SdxlKeyframe)
    model_cpu_offload: bool = False
    forward_chunking: bool = False  # (no vae_tiling, no attention_slicing: SVD has neither)
    degrade: list[AnimateRung] = []


SETTINGS = SvdAnimate


# -- memory facts (tasks/runtime/memory_plan.py) -------------------------------------------------

VAE_TILING = False  # its temporal VAE cannot tile: `decode_chunk_size` is its decode knob


def activations(settings: dict) -> dict[str, float]:
    """Activation peak (bytes) of each phase of one window at the profile's size."""
    from faceless.tasks.runtime.memory_plan import MIB, vae2d

    pixels = int(settings["width"]) * int(settings["height"])
    frames, chunk = int(settings["num_frames"]), int(settings["decode_chunk_size"])
    latent = pixels // 64
    # CFG batch 2 x frames: the top level's resnets and its spatial transformer (320 wide,
    # GEGLU 2560); temporal attention runs over `frames` positions, fused.
    unet = 2 * frames * 2 * (latent * 320 * 12 + latent * (320 * 8 + 2560))
    decode = chunk * vae2d(pixels, 2) + frames * pixels * 3 * 2  # + the decoded frames kept
    return {"encode": 256 * MIB, "unet": unet, "decode": decode, "decode_tiled": decode}


def components() -> dict[str, tuple]:
    """For benchmarks/memory_table.py: {component: (module at its published size on the meta
    device, bytes per parameter as the loader puts it on a GPU, role)}. fp16."""
    import torch
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from faceless.tasks.models.tiny import published

    with torch.device("meta"):
        return {
            "image_encoder": (CLIPVisionModelWithProjection(CLIPVisionConfig(**published("svd-xt-image-encoder"))),
                              2, "encoder"),
            "unet": (UNetSpatioTemporalConditionModel(**published("svd-xt-unet")), 2, "denoiser"),
            "vae": (AutoencoderKLTemporalDecoder(**published("svd-xt-vae")), 2, "vae"),
        }
