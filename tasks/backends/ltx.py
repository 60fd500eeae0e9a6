"""The `ltx` animate backend: LTX-Video brings a shot's keyframe to motion in one pass.

As the `wan` backend (tasks/backends/wan.py, whose helpers it shares): one native generation
per shot at the output frame rate, never chained or interpolated, cropped to cover the target
size. LTX-Video's VAE compresses 32x in space and 8x in time (first frame alone), so sides are
multiples of 32 and counts 8k+1 (121 = 5 s at 24 fps, 161 the pipeline's default). Unlike Wan
it is told the frame rate (`frame_rate`, which scales its positional encoding in time), so a
shot at 24 fps and one at 12 move at the same speed. Published size: 704x480 (here 480x704
portrait), guidance 3, 50 steps, prompts of up to 128 T5 tokens.

    pipe = load(directory)                       # LTXImageToVideoPipeline, once per process
    clip = generate(pipe, keyframe, prompt, frames=60, fps=24, settings=..., seed=7)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from PIL import Image

from faceless.tasks.backends.wan import (Clip, check_ladder, cover, cpu_threads, memory_knobs, native_frame_count,

                                        run_device, snap, step_callback)


# The backend interface (tasks/backends/base.py).
NAME = "ltx"
STAGE = "animate"
FAMILY = "ltx"
LABEL = "LTX-Video"
SIZE_MULTIPLE = 32  # VAE spatial factor 32, patch 1
TOLD_FPS = True  # the pipeline takes the frame rate: the manifest records it as fps conditioning

TEMPORAL_FACTOR = 8
DEFAULT_DEGRADE: tuple[dict, ...] = (
    {"vae_tiling": True},
    {"model_cpu_offload": True},
    {"resolution_scale": 0.75},
    {"resolution_scale": 0.5},
)
__all__ = ["LtxOptions", "Clip", "generate", "load", "check_ladder", "DEFAULT_DEGRADE"]


@dataclass(frozen=True)
class LtxOptions:
    """What one LTX-Video generation needs from a profile's animate settings (the published
    model's defaults)."""

    width: int = 480
    height: int = 704
    out_width: int | None = None
    out_height: int | None = None
    num_inference_steps: int = 50
    guidance_scale: float = 3.0
    negative_prompt: str = "worst quality, inconsistent motion, blurry, jittery, distorted"
    max_sequence_length: int = 128
    decode_timestep: float = 0.0
    """0.9.1 and later VAEs denoise while decoding: 0.05 there, with decode_noise_scale 0.025."""
    decode_noise_scale: float | None = None
    max_frames: int = 161
    vae_tiling: bool = False
    vae_tile: int | None = None
    model_cpu_offload: bool = False
    resolution_scale: float = 1.0
    cpu_threads: int | None = 1

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> "LtxOptions":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in settings.items() if k in names})

    def generation_size(self) -> tuple[int, int]:
        return (snap(self.width * self.resolution_scale), snap(self.height * self.resolution_scale))

    def target_size(self) -> tuple[int, int]:
        width, height = self.generation_size()
        return (self.out_width or width, self.out_height or height)


def generate(pipe, image: Image.Image, prompt: str, frames: int, fps: int, settings: Mapping[str, Any],
             seed: int, progress=None) -> Clip:
    """One shot: `frames` frames at `fps` from `image`, in one native pass of 8k+1 frames."""
    import torch

    options = LtxOptions.from_settings(settings)
    native = native_frame_count(frames, TEMPORAL_FACTOR)
    if native > options.max_frames:
        raise ValueError(f"a shot of {frames} frames ({frames / fps:.2f} s at {fps} fps) needs {native} in one "
                         f"pass, over max_frames {options.max_frames}: cut the shot shorter")
    width, height = options.generation_size()
    generator = torch.Generator("cpu").manual_seed(seed)
    device = run_device(pipe)  # before any knob: an offloaded pipeline's modules sit on the CPU
    with memory_knobs(pipe, options), cpu_threads(pipe, options.cpu_threads, device):
        result = pipe(
            image=cover(image.convert("RGB"), width, height),
            prompt=prompt,
            negative_prompt=options.negative_prompt,
            height=height,
            width=width,
            num_frames=native,
            frame_rate=fps,
            num_inference_steps=options.num_inference_steps,
            guidance_scale=options.guidance_scale,
            decode_timestep=options.decode_timestep,
            decode_noise_scale=options.decode_noise_scale,
            generator=generator,
            output_type="pil",
            max_sequence_length=options.max_sequence_length,
            callback_on_step_end=step_callback(progress),
        )
    made = list(result.frames[0])
    if len(made) != native:
        raise RuntimeError(f"ltx made {len(made)} frames, asked for {native}")
    size = options.target_size()
    return Clip(frames=[cover(frame, *size) for frame in made[:frames]], native_frames=native,
                generation_size=(width, height), size=size, fps=fps, steps=options.num_inference_steps)


def load(directory, device: str | None = None, place: bool = True):
    """An LTX-Video Diffusers folder (published, or a tiny twin) as an LTXImageToVideoPipeline:
    bf16 on a GPU, fp32 on a CPU. Nothing is downloaded."""
    import torch
    from diffusers import LTXImageToVideoPipeline

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    pipe = LTXImageToVideoPipeline.from_pretrained(str(directory), dtype=dtype, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    # place=False: left on the CPU in `device`'s dtype; a render places it by the memory plan.
    return pipe.to(device) if place else pipe
