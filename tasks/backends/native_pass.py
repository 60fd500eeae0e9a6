"""What the animate backends that make a shot in one native pass share (tasks/backends/wan.py
and its kind): the pass itself, its size and frame-count rules, its memory knobs, its degrade
rungs and its cached loader. Each backend module keeps only what is its own: its pipeline, its
published defaults and factors, its memory facts and its tiny twin.

One native generation per shot, at the output frame rate: a shot of N frames asks the model for
the smallest count it can make that is at least N (a VAE compressing time T-fold with the first
frame alone makes counts of T*k + 1) and keeps the first N. No windows are chained and no
frames are interpolated. The keyframe is cropped (never stretched) to the generation size, and
frames come back at the target size, cropped to cover.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Mapping

from PIL import Image
from pydantic import Field

from faceless.tasks.profile_sections import RungSection

MULTIPLE = 32  # the sides every native-pass backend so far takes (its VAE's factor times its patch)

# Knobs a rung may set. Frame count and rate are not among them: a shot is one pass, whole.
LADDER_KEYS = frozenset({"vae_tiling", "model_cpu_offload", "resolution_scale"})


class NativeRung(RungSection):
    """A rung of a native-pass ladder: how a pass runs, never how many frames it makes (a shot
    is one pass, whole). Only the keys it sets are kept."""
    vae_tiling: bool | None = None
    model_cpu_offload: bool | None = None
    resolution_scale: Annotated[float, Field(gt=0, le=1)] | None = None  # both sides, snapped to 32


@dataclass
class Clip:
    """One shot's generation: the frames at the target size, and what was asked of the model."""

    frames: list[Image.Image]
    native_frames: int
    generation_size: tuple[int, int]
    size: tuple[int, int]
    fps: int
    steps: int
    sampler: str = "full"
    """How the steps ran: "full", "distilled", "full+firstblockcache", ... (tasks/backends/wan_sampler.py)"""


class PassOptions:
    """What a backend's options dataclass (its fields: width, height, out_width, out_height,
    resolution_scale, ...) shares: reading a settings mapping, and the sizes a pass makes."""

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]):
        """Read the fields the class knows from a settings mapping; other keys (model,
        backend, degrade, ...) belong to the stage and are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in settings.items() if k in names})

    def generation_size(self) -> tuple[int, int]:
        return (snap(self.width * self.resolution_scale), snap(self.height * self.resolution_scale))

    def target_size(self) -> tuple[int, int]:
        width, height = self.generation_size()
        return (self.out_width or width, self.out_height or height)


def snap(value: float, multiple: int = MULTIPLE) -> int:
    """The largest multiple of `multiple` at or below `value`, and at least `multiple`."""
    return max(multiple, int(value) // multiple * multiple)


def native_frame_count(frames: int, temporal: int) -> int:
    """The fewest frames the model makes that cover `frames`: the next count of the form
    temporal * k + 1 (for 4: 1, 5, 9, ..., 121)."""
    if frames < 1:
        raise ValueError(f"a shot needs at least one frame, got {frames}")
    return (frames - 1 + temporal - 1) // temporal * temporal + 1


def check_ladder(rungs, name: str = "native-pass") -> None:
    """Refuse a degrade ladder that would change what a pass makes rather than how."""
    for rung in rungs or ():
        unknown = set(rung) - LADDER_KEYS
        if unknown:
            raise ValueError(f"{name} degrade rung {rung} sets {sorted(unknown)}: a rung may only set "
                             f"{sorted(LADDER_KEYS)} (a shot is one pass: never fewer frames)")
        scale = rung.get("resolution_scale", 1.0)
        if not 0 < float(scale) <= 1:
            raise ValueError(f"{name} degrade rung {rung}: resolution_scale must be in (0, 1]")


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
def memory_knobs(pipe, options):
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


def frames_of_pass(frames: int, fps: int, options, temporal: int) -> int:
    """The frames of the one pass a shot of `frames` needs; a shot too long for one pass is
    refused, never split."""
    native = native_frame_count(frames, temporal)
    if native > options.max_frames:
        raise ValueError(f"a shot of {frames} frames ({frames / fps:.2f} s at {fps} fps) needs {native} in one "
                         f"pass, over max_frames {options.max_frames}: cut the shot shorter")
    return native


def one_pass(pipe, name: str, options, temporal: int, image: Image.Image, prompt: str, frames: int, fps: int,
             seed: int, progress=None, text: Callable | None = None, sampling=None, sampler: str = "full",
             **call) -> Clip:
    """One shot: `frames` frames at `fps` from `image`, in one native pass of temporal*k + 1
    frames. `options`: the backend's options (a PassOptions dataclass with the degrade rungs
    applied); `text(device)`: the pass's text inputs when the backend encodes them itself (else
    the prompt and negative prompt); `sampling`: a context manager the pass runs in (the
    backend's sampler); `sampler`: its name for the clip; `call`: the backend's own pipeline
    arguments."""
    import torch

    native = frames_of_pass(frames, fps, options, temporal)
    width, height = options.generation_size()
    generator = torch.Generator("cpu").manual_seed(seed)
    device = run_device(pipe)  # before any knob: an offloaded pipeline's modules sit on the CPU
    with memory_knobs(pipe, options), cpu_threads(pipe, options.cpu_threads, device), \
            (sampling or contextlib.nullcontext()):
        prompts = text(device) if text else {"prompt": prompt, "negative_prompt": options.negative_prompt}
        result = pipe(
            image=cover(image.convert("RGB"), width, height),
            **prompts,
            height=height,
            width=width,
            num_frames=native,
            num_inference_steps=options.num_inference_steps,
            guidance_scale=options.guidance_scale,
            generator=generator,
            output_type="pil",
            max_sequence_length=options.max_sequence_length,
            callback_on_step_end=step_callback(progress),
            **call,
        )
    made = list(result.frames[0])
    if len(made) != native:
        raise RuntimeError(f"{name} made {len(made)} frames, asked for {native}")
    size = options.target_size()
    return Clip(frames=[cover(frame, *size) for frame in made[:frames]], native_frames=native,
                generation_size=(width, height), size=size, fps=fps, steps=options.num_inference_steps,
                sampler=sampler)


def cached_loader(backend, spec: str):
    """The cached loader of a native-pass backend: `backend.load` of the spec's folder, once per
    process, in the GPU's dtype but left on the CPU (the stage places it by the memory plan)."""
    from faceless.tasks.models.registry import device_and_dtype, load_once
    from faceless.tasks.models.specs import resolve

    def load():
        device, _ = device_and_dtype()  # also quiets the libraries and flushes denormals on a CPU
        return backend.load(resolve(spec), device, place=False)

    return load_once(backend.FAMILY, (spec,), load)


def pass_geometry(settings: dict, default_frames: int, temporal: int, spatial: int = MULTIPLE) -> tuple:
    """(width, height, frames, latent frames, tokens) of one pass as the memory plan sees it: the
    generation size after any resolution_scale, snapped; tokens of 1x1 latent patches of a
    `spatial`-fold VAE (with its patching folded in) over `temporal`-fold latent frames."""
    width, height = int(settings["width"]), int(settings["height"])
    scale = float(settings.get("resolution_scale") or 1.0)
    width, height = snap(width * scale), snap(height * scale)
    frames = int(settings.get("max_frames") or default_frames)
    latent_frames = (frames - 1) // temporal + 1
    return width, height, frames, latent_frames, latent_frames * (width // spatial) * (height // spatial)
