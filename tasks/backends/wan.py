"""The `wan` animate backend: Wan 2.2 TI2V-5B brings a shot's keyframe to motion in one pass.

One native generation per shot, at the output frame rate: a shot of N frames asks the model
for the smallest count it can make that is at least N (Wan's VAE compresses time 4x with the
first frame alone, so counts are 4k+1: 121 is 5 s at 24 fps) and keeps the first N. No windows
are chained and no frames are interpolated. The keyframe is cropped (never stretched) to the
generation size, which must be a multiple of 32 on each side (16x VAE, 2x2 patches); 704x1280
is the published 720p size in portrait. Frames come back at the target size, cropped to cover.

Out of memory, a pass never gets fewer frames: its own degrade ladder (DEFAULT_DEGRADE, the
profile's `degrade` list, applied by faceless.tasks.runtime.gpu) tiles the VAE decode, moves
idle components to the CPU (only where there is a GPU), then lowers the resolution.

    pipe = load(directory)                       # WanImageToVideoPipeline, once per process
    clip = generate(pipe, keyframe, prompt, frames=60, fps=24, settings=..., seed=7)
    clip.frames                                  # 60 PIL images at out_width x out_height
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Mapping

from PIL import Image
from pydantic import Field, model_validator

from faceless.tasks.backends import native_pass, wan_prompts, wan_sampler
from faceless.tasks.backends.native_pass import Clip, NativeRung
from faceless.tasks.profile_sections import CLIP_CRF, Section


# The backend interface (tasks/backends/base.py).
NAME = "wan"
STAGE = "animate"
FAMILY = "wan"
LABEL = "Wan 2.2"
SIZE_MULTIPLE = 32  # VAE spatial factor 16 x transformer patch 2
VAE_TILING = True  # its VAE decodes in tiles (vae.enable_tiling)
MODELS = {"model": "diffusers"}  # its model setting: the kind of folder it is

logger = logging.getLogger("faceless")

TEMPORAL_FACTOR = 4  # VAE temporal factor: frame counts are 4k + 1
PUBLISHED_FRAMES = 121  # 5 s at 24 fps, what TI2V-5B was published for
TINY_VERSION = 1  # bump when modern_tiny's recipe changes, so old builds are not reused

LADDER_KEYS = native_pass.LADDER_KEYS
DEFAULT_DEGRADE: tuple[dict, ...] = (
    {"vae_tiling": True},  # decoding 121 frames at 720p is the peak: decode in tiles
    {"model_cpu_offload": True},  # keep only the running component on the GPU (~24 GB cards)
    {"resolution_scale": 0.75},  # 704x1280 -> 512x960 (multiples of 32), same frame count
    {"resolution_scale": 0.5},  # -> 352x640
)


@dataclass(frozen=True)
class WanOptions(native_pass.PassOptions):
    """What one Wan generation needs from a profile's animate settings. Defaults are the
    published model's (TI2V-5B: 704x1280 portrait, 50 steps, guidance 5)."""

    width: int = 704
    """Generation width; snapped down to a multiple of 32."""
    height: int = 1280
    """Generation height; snapped down to a multiple of 32."""
    out_width: int | None = None
    """Width of the frames returned (None: the generation width)."""
    out_height: int | None = None
    """Height of the frames returned (None: the generation height)."""
    num_inference_steps: int = 50
    guidance_scale: float = 5.0
    """Classifier-free guidance; above 1 the transformer runs twice a step."""
    negative_prompt: str = ""
    max_sequence_length: int = 512
    """UMT5 tokens read from the prompt (the pipeline pads or cuts to this)."""
    max_frames: int = 145
    """Most frames one pass may make (6 s at 24 fps); a longer shot is refused, never split."""
    vae_tiling: bool = False
    vae_tile: int | None = None
    """Tile side in pixels when vae_tiling is on (None: the VAE's own, 256); tiles overlap by a quarter."""
    model_cpu_offload: bool = False
    resolution_scale: float = 1.0
    """Degrade rung: both sides scaled by this (then snapped to 32); the frame count stays."""
    sampler: str = "full"
    """`full` (the schedule above, with guidance) or `distilled` (a step-distilled checkpoint at its
    published timesteps, one pass a step): tasks/backends/wan_sampler.py."""
    distilled_timesteps: tuple[int, ...] = wan_sampler.DISTILLED_TIMESTEPS
    step_cache: str = "none"
    """`none`, `firstblock`, `magcache` or `taylorseer`: diffusers' step caches, `full` sampler only."""
    step_cache_options: Mapping[str, Any] | None = None
    """Keyword arguments of the cache's diffusers config (threshold, mag_ratios, ...)."""
    cpu_threads: int | None = 1
    """Torch threads while the pipeline runs on a CPU (None: leave as is). One is fastest for
    the tiny twin: its operations are so small that handing them between threads costs more
    than it saves (a 32x64 shot: 0.46 s on one thread, 7.3 s on two of a busy 2-core machine)."""

    def __post_init__(self):
        wan_sampler.check(self.sampler, self.step_cache, self.num_inference_steps, self.guidance_scale,
                          self.distilled_timesteps, self.step_cache_options)

    @property
    def sampler_label(self) -> str:
        return wan_sampler.label(self.sampler, self.step_cache)


_WAN = WanOptions()


class WanAnimate(Section):
    """Wan 2.2 TI2V-5B: one native pass per shot at the output frame rate (tasks/backends/wan.py)."""
    backend: Literal["wan"]
    model: str = "hf:Wan-AI/Wan2.2-TI2V-5B-Diffusers"
    width: int = _WAN.width  # generation size, multiples of 32; frames are cropped to the output's
    height: int = _WAN.height
    num_inference_steps: int = _WAN.num_inference_steps
    guidance_scale: float = _WAN.guidance_scale
    negative_prompt: str = _WAN.negative_prompt
    max_sequence_length: int = _WAN.max_sequence_length  # UMT5 tokens of the shot's description
    max_frames: int = _WAN.max_frames  # a longer shot is refused, never split
    vae_tiling: bool = _WAN.vae_tiling
    vae_tile: int | None = _WAN.vae_tile
    model_cpu_offload: bool = _WAN.model_cpu_offload
    resolution_scale: float = _WAN.resolution_scale
    cpu_threads: int | None = _WAN.cpu_threads
    # `full`: the model's schedule with guidance; `distilled`: a step-distilled checkpoint at its
    # published timesteps, guidance off (tasks/backends/wan_sampler.py).
    sampler: Literal["full", "distilled"] = _WAN.sampler
    distilled_timesteps: list[int] = list(_WAN.distilled_timesteps)
    # diffusers' step caches, for the `full` sampler only (refused with `distilled`).
    step_cache: Literal["none", "firstblock", "magcache", "taylorseer"] = _WAN.step_cache
    step_cache_options: dict[str, Any] = {}  # the cache config's keyword arguments (threshold, ...)
    zoom: float = 0.0
    clip_crf: int = CLIP_CRF
    clip_scale: Annotated[float, Field(gt=0, le=1)] = 1.0
    degrade: list[NativeRung] = [NativeRung(**rung) for rung in DEFAULT_DEGRADE]

    @model_validator(mode="after")
    def _sampler_runs(self):
        wan_sampler.check(self.sampler, self.step_cache, self.num_inference_steps, self.guidance_scale,
                          self.distilled_timesteps, self.step_cache_options)
        return self


SETTINGS = WanAnimate  # the profile's animate section when `backend: wan`


def native_frame_count(frames: int) -> int:
    """The fewest frames Wan makes that cover `frames`: 4k + 1 (1, 5, 9, ..., 121)."""
    return native_pass.native_frame_count(frames, TEMPORAL_FACTOR)


def check_ladder(rungs) -> None:
    """Refuse a degrade ladder that would change what a pass makes rather than how."""
    native_pass.check_ladder(rungs, NAME)


def generate(pipe, image: Image.Image, prompt: str, frames: int, fps: int, settings: Mapping[str, Any],
             seed: int, progress=None) -> Clip:
    """One shot: `frames` frames at `fps` from `image`, in one native pass.

    `pipe` is a WanImageToVideoPipeline with `expand_timesteps` (TI2V-5B); `settings` are the
    profile's animate settings with any degrade rungs applied (see WanOptions); `progress` is
    a Progress (one step per denoising step) or a diffusers step callback."""
    options = WanOptions.from_settings(settings)
    native_pass.frames_of_pass(frames, fps, options, TEMPORAL_FACTOR)  # a shot too long: refused first
    if not getattr(pipe.config, "expand_timesteps", False):
        raise ValueError("the wan backend needs a Wan 2.2 TI2V pipeline (expand_timesteps: true)")
    return native_pass.one_pass(
        pipe, NAME, options, TEMPORAL_FACTOR, image, prompt, frames, fps, seed, progress,
        text=lambda device: wan_prompts.inputs(pipe, prompt, options, device),  # the run's batch, or the strings
        sampling=wan_sampler.sampling(pipe, options, seed), sampler=options.sampler_label)


def expect_prompts(prompts) -> None:
    """The run's shot prompts, encoded in one batch when the first shot runs (wan_prompts)."""
    wan_prompts.expect(prompts)


def load(directory, device: str | None = None, place: bool = True):
    """A Wan 2.2 TI2V folder (the published Diffusers one, or a tiny twin) as a
    WanImageToVideoPipeline: bf16 on a GPU with the VAE kept in fp32 (as the model card
    loads it), fp32 on a CPU. Nothing is downloaded."""
    import torch
    from diffusers import AutoencoderKLWan, WanImageToVideoPipeline

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    vae = AutoencoderKLWan.from_pretrained(str(directory), subfolder="vae", dtype=torch.float32,
                                           local_files_only=True)
    pipe = WanImageToVideoPipeline.from_pretrained(str(directory), vae=vae, dtype=dtype, local_files_only=True)
    if pipe.vae.config.z_dim == 48 and not pipe.config.expand_timesteps:
        # A TI2V-5B folder whose model_index does not say so (FastWan2.2's names FastVideo's own
        # pipeline): its 48-channel VAE is the 5B's, which conditions on the first frame by timestep.
        pipe.register_to_config(expand_timesteps=True)
    pipe.set_progress_bar_config(disable=True)
    # place=False: left on the CPU in `device`'s dtype; a render places it by the memory plan.
    return pipe.to(device) if place else pipe


def load_cached(spec: str):
    """The profile's model (WanImageToVideoPipeline), loaded once per process, on the CPU."""
    return native_pass.cached_loader(sys.modules[__name__], spec)


# -- memory facts (tasks/runtime/memory_plan.py) -------------------------------------------------

def activations(settings: dict) -> dict[str, float]:
    """Activation peak (bytes) of each phase of one pass at the profile's size."""
    from faceless.tasks.runtime.memory_plan import MIB, dit

    width, height, frames, _, tokens = native_pass.pass_geometry(settings, PUBLISHED_FRAMES, TEMPORAL_FACTOR)
    pixels = width * height  # tokens: 16x VAE, 2x2 patches
    # TI2V-5B (expand_timesteps) modulates every token: a (T, 6 x 3072) projection in bf16
    # and its fp32 sum with the scale-shift table, plus the fp32 norms.
    modulation = tokens * 6 * 3072 * (2 + 4) + 2 * tokens * 3072 * 4
    output = frames * pixels * 3 * 4  # the decoded video, fp32
    # The causal decoder makes 4 frames per latent frame; its top level is 256 wide at half
    # size (patch 2) and caches the previous frames' features.
    decode = 4 * pixels // 4 * 256 * 4 * 4 + output
    tile = min(pixels, 256 * 256)
    decode_tiled = 4 * tile // 4 * 256 * 4 * 4 + output * 2  # tiles decoded, then blended
    return {"encode": 512 * MIB, "transformer": dit(tokens, 3072, 14336) + modulation,
            "decode": decode, "decode_tiled": decode_tiled}


def components() -> dict[str, tuple]:
    """For benchmarks/memory_table.py: {component: (module on the meta device, bytes per
    parameter as load() puts it on a GPU, role)}: bf16, the VAE in fp32."""
    from faceless.tasks.models.modern_tiny import full_size_models

    models = full_size_models()
    return {"text_encoder": (models["text_encoder"], 2, "encoder"),
            "transformer": (models["transformer"], 2, "denoiser"),
            "vae": (models["vae"], 4, "vae")}


# -- the tiny twin (tasks/models/tiny.py: `tiny:wan` in a profile) ------------------------------

def _build_tiny(directory):
    from faceless.tasks.models.modern_tiny import build_tiny_wan

    return build_tiny_wan(directory)


TINY_MODELS = {"wan": (_build_tiny, "model_index.json", TINY_VERSION)}
