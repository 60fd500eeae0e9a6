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

import contextlib
import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from PIL import Image

from faceless.tasks.backends import wan_prompts, wan_sampler

# The backend interface (tasks/backends/base.py).
NAME = "wan"
STAGE = "animate"
FAMILY = "wan"
LABEL = "Wan 2.2"

logger = logging.getLogger("faceless")

SIZE_MULTIPLE = 32  # VAE spatial factor 16 x transformer patch 2
TEMPORAL_FACTOR = 4  # VAE temporal factor: frame counts are 4k + 1
PUBLISHED_FRAMES = 121  # 5 s at 24 fps, what TI2V-5B was published for

# Knobs a rung may set. Frame count and rate are not among them: a shot is one pass, whole.
LADDER_KEYS = frozenset({"vae_tiling", "model_cpu_offload", "resolution_scale"})
DEFAULT_DEGRADE: tuple[dict, ...] = (
    {"vae_tiling": True},  # decoding 121 frames at 720p is the peak: decode in tiles
    {"model_cpu_offload": True},  # keep only the running component on the GPU (~24 GB cards)
    {"resolution_scale": 0.75},  # 704x1280 -> 512x960 (multiples of 32), same frame count
    {"resolution_scale": 0.5},  # -> 352x640
)


@dataclass(frozen=True)
class WanOptions:
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

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> "WanOptions":
        """Read the fields this class knows from a settings mapping; other keys (model,
        backend, degrade, ...) belong to the stage and are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in settings.items() if k in names})

    def generation_size(self) -> tuple[int, int]:
        return (snap(self.width * self.resolution_scale), snap(self.height * self.resolution_scale))

    def target_size(self) -> tuple[int, int]:
        width, height = self.generation_size()
        return (self.out_width or width, self.out_height or height)


@dataclass
class Clip:
    """One shot's generation: the frames at the target size, and what was asked of the model
    (shared with the ltx backend)."""

    frames: list[Image.Image]
    native_frames: int
    generation_size: tuple[int, int]
    size: tuple[int, int]
    fps: int
    steps: int
    sampler: str = "full"
    """How the steps ran (wan_sampler.label): "full", "distilled", "full+firstblockcache", ..."""


def snap(value: float, multiple: int = SIZE_MULTIPLE) -> int:
    """The largest multiple of `multiple` at or below `value`, and at least `multiple`."""
    return max(multiple, int(value) // multiple * multiple)


def native_frame_count(frames: int, temporal: int = TEMPORAL_FACTOR) -> int:
    """The fewest frames the model makes that cover `frames`: the next count of the form
    temporal * k + 1 (1, 5, 9, ..., 121)."""
    if frames < 1:
        raise ValueError(f"a shot needs at least one frame, got {frames}")
    return (frames - 1 + temporal - 1) // temporal * temporal + 1


def check_ladder(rungs) -> None:
    """Refuse a degrade ladder that would change what a pass makes rather than how."""
    for rung in rungs or ():
        unknown = set(rung) - LADDER_KEYS
        if unknown:
            raise ValueError(f"wan degrade rung {rung} sets {sorted(unknown)}: a rung may only set "
                             f"{sorted(LADDER_KEYS)} (a shot is one pass: never fewer frames)")
        scale = rung.get("resolution_scale", 1.0)
        if not 0 < float(scale) <= 1:
            raise ValueError(f"wan degrade rung {rung}: resolution_scale must be in (0, 1]")


def cover(image: Image.Image, width: int, height: int) -> Image.Image:
    """Scale to cover width x height and centre-crop: no distortion."""
    if image.size == (width, height):
        return image
    scale = max(width / image.width, height / image.height)
    resized = image.resize((max(width, round(image.width * scale)), max(height, round(image.height * scale))),
                           Image.LANCZOS)
    left, top = (resized.width - width) // 2, (resized.height - height) // 2
    return resized.crop((left, top, left + width, top + height))


def run_device(pipe):
    """Where the pipeline computes: its hooks' execution device when offloaded (its modules
    then sit on the CPU between calls), else its own device."""
    return getattr(pipe, "_execution_device", None) or pipe.device


def cpu_threads(pipe, threads: int | None, device=None):
    """Run with `threads` torch threads when the pipeline computes on a CPU; a GPU run is
    untouched (the models registry's own switch, shared with Bark). `device`: read before any
    offload hook moved the modules to the CPU."""
    from faceless.tasks.models.registry import cpu_threads as threads_on

    return threads_on(device if device is not None else run_device(pipe), threads)


@contextlib.contextmanager
def memory_knobs(pipe, options: WanOptions):
    """Switch on the memory savers `options` asks for, and undo them after: the pipeline is
    shared with the next shots, which start from full settings again."""
    undo: list[Callable[[], None]] = []
    try:
        if options.vae_tiling:
            tile = getattr(options, "vae_tile", None)
            if tile:
                stride = tile * 3 // 4
                pipe.vae.enable_tiling(tile_sample_min_height=tile, tile_sample_min_width=tile,
                                       tile_sample_stride_height=stride, tile_sample_stride_width=stride)
            else:
                pipe.vae.enable_tiling()
            undo.append(pipe.vae.disable_tiling)
        # model_cpu_offload is the pipeline's placement (tasks/runtime/placement.py), set by the
        # stage before the call and kept for later shots.
        yield
    finally:
        for step in reversed(undo):
            step()


def step_callback(progress) -> Callable | None:
    """A diffusers callback_on_step_end from a Progress (its step_callback), a callback
    itself, or None."""
    if progress is None:
        return None
    if hasattr(progress, "step_callback"):
        return progress.step_callback()
    return progress


def generate(pipe, image: Image.Image, prompt: str, frames: int, fps: int, settings: Mapping[str, Any],
             seed: int, progress=None) -> Clip:
    """One shot: `frames` frames at `fps` from `image`, in one native pass.

    `pipe` is a WanImageToVideoPipeline with `expand_timesteps` (TI2V-5B); `settings` are the
    profile's animate settings with any degrade rungs applied (see WanOptions); `progress` is
    a Progress (one step per denoising step) or a diffusers step callback."""
    import torch

    options = WanOptions.from_settings(settings)
    native = native_frame_count(frames)
    if native > options.max_frames:
        raise ValueError(f"a shot of {frames} frames ({frames / fps:.2f} s at {fps} fps) needs {native} in one "
                         f"pass, over max_frames {options.max_frames}: cut the shot shorter")
    if not getattr(pipe.config, "expand_timesteps", False):
        raise ValueError("the wan backend needs a Wan 2.2 TI2V pipeline (expand_timesteps: true)")
    width, height = options.generation_size()
    condition = cover(image.convert("RGB"), width, height)
    generator = torch.Generator("cpu").manual_seed(seed)
    device = run_device(pipe)  # before any knob: an offloaded pipeline's modules sit on the CPU
    with memory_knobs(pipe, options), cpu_threads(pipe, options.cpu_threads, device), \
            wan_sampler.sampling(pipe, options, seed):
        result = pipe(
            image=condition,
            **wan_prompts.inputs(pipe, prompt, options, device),  # the run's batch, or the strings
            height=height,
            width=width,
            num_frames=native,
            num_inference_steps=options.num_inference_steps,
            guidance_scale=options.guidance_scale,
            generator=generator,
            output_type="pil",
            max_sequence_length=options.max_sequence_length,
            callback_on_step_end=step_callback(progress),
        )
    made = list(result.frames[0])
    if len(made) != native:
        raise RuntimeError(f"wan made {len(made)} frames, asked for {native}")
    size = options.target_size()
    return Clip(frames=[cover(frame, *size) for frame in made[:frames]], native_frames=native,
                   generation_size=(width, height), size=size, fps=fps, steps=options.num_inference_steps,
                sampler=options.sampler_label)


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
