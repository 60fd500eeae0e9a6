"""FLUX.1-schnell keyframes: one picture from a prompt in 4 steps, no guidance.

schnell is timestep-distilled: it is trained for 1-4 steps with no classifier-free guidance
(its transformer has no guidance embedding; `guidance_scale` is ignored, 0 says so) and a
T5 sequence of at most 256 tokens. The pipeline reads two prompts: `prompt` goes to CLIP
(77 tokens, only its pooled embedding is used) and `prompt_2` to T5 (the sequence the picture
is drawn from); without `prompt_2`, T5 reads `prompt` too. So, unlike SDXL, the whole shot
prompt fits T5: give the full prompt as `prompt_2` and CLIP's 77-token cut as `prompt`.

Sizes must be multiples of 16 (the VAE downsamples 8x and latents are packed in 2x2 patches);
they are refused here rather than silently resized as the pipeline would. On a GPU the model
runs in bfloat16 (FLUX's own dtype; T5-XXL overflows in float16). Memory knobs, all undone
after the call because the pipeline is shared by later shots: `vae_tiling`, `vae_slicing`,
`model_cpu_offload` and `sequential_cpu_offload` (both offloads need CUDA and are skipped,
and reported as skipped, without it).

This module is a backend: apart from `make_keyframe` (the keyframe stage's call, which holds
the GPU slot and places the pipeline) it knows nothing of Prefect, caching or the GPU slot.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Literal, Mapping

from pydantic import model_serializer

from faceless.tasks.backends.klein_sections import KleinReferences
from faceless.tasks.profile_sections import RungSection, Section


# The backend interface (tasks/backends/base.py).
NAME = "flux-schnell"
STAGE = "keyframe"
FAMILY = "flux"
LABEL = "FLUX.1-schnell"

log = logging.getLogger(__name__)

STEPS = 4
MAX_SEQUENCE_LENGTH = 256  # schnell's T5 context (dev's is 512)
SIZE_MULTIPLE = 16
MODELS = {"model": "diffusers"}  # its model setting: the kind of folder it is


def section_models(section: dict) -> list[tuple[str, str, str]]:
    """(setting, spec, kind) of the models a section loads beyond MODELS: FLUX.2 [klein], when
    its `references` name it (preflight leaves them out for a story without a cast)."""
    references = section.get("references")
    return [("references.model", references["model"], "diffusers")] if references else []


@dataclass(frozen=True)
class FluxSettings:
    """What one keyframe call uses. Defaults are schnell's trained ones."""

    num_inference_steps: int = STEPS
    guidance_scale: float = 0.0
    max_sequence_length: int = MAX_SEQUENCE_LENGTH
    vae_tiling: bool = False
    vae_slicing: bool = False
    model_cpu_offload: bool = False
    sequential_cpu_offload: bool = False

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any] | None) -> "FluxSettings":
        """From a profile's keyframe section (other keys, such as width or model, are left
        out), after any degrade rungs have been merged in."""
        if isinstance(settings, cls):
            return settings
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (settings or {}).items() if k in known})

    def __post_init__(self):
        if not 1 <= int(self.num_inference_steps) <= 50:
            raise ValueError(f"num_inference_steps must be 1-50 (schnell is trained for 1-4), got {self.num_inference_steps}")
        if not 1 <= int(self.max_sequence_length) <= MAX_SEQUENCE_LENGTH:
            raise ValueError(f"max_sequence_length must be 1-{MAX_SEQUENCE_LENGTH} for schnell, got {self.max_sequence_length}")


@dataclass
class FluxPicture:
    """One keyframe and what made it."""

    image: Any  # PIL.Image.Image
    seed: int
    width: int
    height: int
    steps: int  # denoising steps run (callbacks seen)
    clip_tokens: int  # CLIP tokens of `prompt`, start and end included (77 read)
    t5_tokens: int  # T5 tokens of the prompt T5 read, end token included
    t5_truncated: bool  # True when T5 dropped tokens past max_sequence_length
    seconds: float
    knobs: list[str] = field(default_factory=list)  # memory knobs applied
    skipped_knobs: list[str] = field(default_factory=list)  # asked for, not possible here


def device_and_dtype():
    """bfloat16 on CUDA, float32 on a CPU (with denormals flushed: random weights make them)."""
    import torch

    if torch.cuda.is_available():
        return "cuda", torch.bfloat16
    torch.set_flush_denormal(True)
    return "cpu", torch.float32


def load_pipeline(directory: str | Path, device: str | None = None, dtype=None, pipeline: str = "FluxPipeline"):
    """A FluxPipeline (or another diffusers `pipeline` class: FLUX.2 [klein]'s) from a local
    folder (a hub snapshot or the tiny twin); never downloads. It stays on the CPU (in the GPU's
    dtype when there is one) unless `device` is given: a render places it by the memory plan
    (tasks/runtime/placement.py)."""
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    default_device, default_dtype = device_and_dtype()
    pipe = getattr(diffusers, pipeline).from_pretrained(str(directory), dtype=dtype or default_dtype,
                                                        local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device) if device else pipe


def check_size(width: int, height: int) -> None:
    for name, value in (("width", width), ("height", height)):
        if int(value) <= 0 or int(value) % SIZE_MULTIPLE:
            raise ValueError(f"FLUX {name} must be a positive multiple of {SIZE_MULTIPLE}, got {value}")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@contextlib.contextmanager
def memory_knobs(pipe, settings: FluxSettings | Mapping[str, Any]):
    """Apply the memory switches `settings` (FluxSettings, or a mapping with the same keys: the
    klein backend's) asks for; undo them on the way out. Yields (applied, skipped) lists of
    knob names."""
    knob = settings.get if isinstance(settings, Mapping) else lambda name: getattr(settings, name)
    undo: list[Callable[[], None]] = []
    applied: list[str] = []
    skipped: list[str] = []
    try:
        if knob("vae_tiling"):
            pipe.vae.enable_tiling()
            undo.append(pipe.vae.disable_tiling)
            applied.append("vae_tiling")
        if knob("vae_slicing"):
            pipe.vae.enable_slicing()
            undo.append(pipe.vae.disable_slicing)
            applied.append("vae_slicing")
        # Offload is the pipeline's placement (tasks/runtime/placement.py), set before the call
        # and kept for later shots, never switched on and back off around one.
        offload = ("sequential_cpu_offload" if knob("sequential_cpu_offload")
                   else "model_cpu_offload" if knob("model_cpu_offload") else None)
        if offload and not _cuda():
            log.info("%s skipped: no CUDA device here", offload)
            skipped.append(offload)
        elif offload:
            applied.append(offload)  # the stage placed the pipeline at that offload or lower
        yield applied, skipped
    finally:
        for step in reversed(undo):
            step()


def _step_callback(progress, total: int):
    """A diffusers `callback_on_step_end` that counts steps and tells `progress`: an object
    with `step_callback()` (faceless's Progress), a callable `(done, total)`, or None."""
    seen = {"steps": 0}
    inner = progress.step_callback() if hasattr(progress, "step_callback") else None

    def callback(pipe, step: int, timestep, callback_kwargs: dict) -> dict:
        seen["steps"] += 1
        if inner is not None:
            inner(pipe, step, timestep, callback_kwargs)
        elif callable(progress):
            progress(seen["steps"], total)
        return callback_kwargs
    return callback, seen


def count_tokens(tokenizer, text: str, limit: int) -> tuple[int, bool]:
    """Tokens `text` makes (special tokens included) and whether `limit` cuts it."""
    count = len(tokenizer(text, truncation=False).input_ids)
    return count, count > limit


def keyframe(pipe, prompt: str, width: int, height: int, seed: int, settings: Mapping[str, Any] | FluxSettings | None = None,
             progress=None, *, prompt_2: str | None = None) -> FluxPicture:
    """One FLUX.1-schnell keyframe.

    pipe: a FluxPipeline (`load_pipeline`). prompt: CLIP's prompt (77 tokens read, pooled).
    width, height: pixels, multiples of 16. seed: the CPU generator's seed (same seed and
    settings, same picture). settings: FluxSettings or a mapping of its fields. progress:
    told after every denoising step (see `_step_callback`). prompt_2: T5's prompt (up to
    `max_sequence_length` tokens); None: `prompt`.
    """
    import torch

    # 1. Check inputs.
    config = FluxSettings.from_mapping(settings)
    check_size(width, height)
    if not prompt or not prompt.strip():
        raise ValueError("FLUX keyframe needs a prompt")
    t5_prompt = prompt_2 or prompt
    clip_tokens = len(pipe.tokenizer(prompt, truncation=False).input_ids)
    t5_tokens, t5_truncated = count_tokens(pipe.tokenizer_2, t5_prompt, config.max_sequence_length)
    if t5_truncated:
        log.warning("T5 reads %d of the prompt's %d tokens", config.max_sequence_length, t5_tokens)

    # 2. Denoise and decode, with the memory knobs on.
    callback, seen = _step_callback(progress, config.num_inference_steps)
    generator = torch.Generator("cpu").manual_seed(int(seed))
    started = time.perf_counter()
    with memory_knobs(pipe, config) as (applied, skipped), torch.inference_mode():
        image = pipe(
            prompt=prompt,
            prompt_2=prompt_2 or None,
            width=int(width),
            height=int(height),
            num_inference_steps=config.num_inference_steps,
            guidance_scale=config.guidance_scale,
            max_sequence_length=config.max_sequence_length,
            generator=generator,
            callback_on_step_end=callback,
            output_type="pil",
        ).images[0]

    # 3. Check the output: NaN latents decode to a black picture.
    if image.getextrema() in (((0, 0), (0, 0), (0, 0)),):
        raise FloatingPointError("FLUX produced an all-black picture: NaN latents (corrupt weights, or float16)")
    return FluxPicture(
        image=image, seed=int(seed), width=image.width, height=image.height, steps=seen["steps"],
        clip_tokens=clip_tokens, t5_tokens=t5_tokens, t5_truncated=t5_truncated,
        seconds=time.perf_counter() - started, knobs=list(applied), skipped_knobs=list(skipped),
    )


def load_cached(spec: str):
    """FLUX.1-schnell (FluxPipeline), loaded once per process, on the CPU: bf16 when there is a
    GPU, fp32 without; the stage places it."""
    from faceless.tasks.models.registry import device_and_dtype, load_once
    from faceless.tasks.models.specs import resolve

    def load():
        device_and_dtype()  # quiets the libraries, flushes denormals on a CPU
        return load_pipeline(resolve(spec))

    return load_once(FAMILY, (spec,), load)


def make_keyframe(shot: dict, index: int, settings: dict, progress, models):
    """The keyframe stage's call: the shot's picture and what the manifest records. Unlike the
    rest of this module it holds the GPU slot and places the pipeline (tasks/runtime/).
    `models`: the models package (passed in: it loads this module, so it is not imported here)."""
    from faceless.tasks.runtime import gpu, placement

    def on_gpu():
        pipe = load_cached(settings["model"])
        with models.MODEL_LOCK:
            where = placement.ensure_placed("keyframe", FAMILY, NAME, pipe, settings)
            gpu.inject_fault("keyframe", index)
            return where, keyframe(pipe, shot["prompt"], settings["width"], settings["height"], shot["seed"],
                                   settings, progress, prompt_2=shot["description"])

    where, made = gpu.on_gpu(f"keyframe[{index}]", on_gpu)
    return made.image, {"t5_tokens": made.t5_tokens, "t5_truncated": made.t5_truncated, "placement": where}

# -- the profile's section (tasks/profile_schema.py builds the stage's union from the registry) --

class FluxRung(RungSection):
    """A rung of the flux-schnell ladder; only the keys it sets are kept."""
    vae_tiling: bool | None = None
    vae_slicing: bool | None = None
    model_cpu_offload: bool | None = None
    sequential_cpu_offload: bool | None = None


_FLUX = FluxSettings()  # schnell's trained defaults, the section's too


class FluxKeyframe(Section):
    """FLUX.1-schnell: 4 steps, no guidance; CLIP reads `prompt`, T5 the shot's whole
    description (tasks/backends/flux.py)."""
    backend: Literal["flux-schnell"]
    model: str = "hf:black-forest-labs/FLUX.1-schnell"
    width: int = 720  # multiples of 16
    height: int = 1280
    num_inference_steps: int = _FLUX.num_inference_steps
    guidance_scale: float = _FLUX.guidance_scale
    max_sequence_length: int = _FLUX.max_sequence_length
    vae_tiling: bool = _FLUX.vae_tiling
    vae_slicing: bool = _FLUX.vae_slicing
    model_cpu_offload: bool = _FLUX.model_cpu_offload  # ignored without a GPU
    sequential_cpu_offload: bool = _FLUX.sequential_cpu_offload
    degrade: list[FluxRung] = [FluxRung(vae_tiling=True), FluxRung(model_cpu_offload=True),
                               FluxRung(sequential_cpu_offload=True)]
    # The shots that show cast members drawn by FLUX.2 [klein] on their reference pictures
    # (tasks/backends/flux2_klein.py), at this section's size; None: every shot drawn here.
    references: KleinReferences | None = None

    @model_serializer(mode="wrap")
    def _references_only_when_set(self, handler):
        # Left out when unset: a profile without references resolves to the settings (and the
        # shots to the cache keys) it had before there were any.
        found = handler(self)
        if found.get("references") is None:
            found.pop("references", None)
        return found


SETTINGS = FluxKeyframe


# -- memory facts (tasks/runtime/memory_plan.py) -------------------------------------------------

VAE_TILING = True  # its VAE decodes in tiles (vae.enable_tiling)


def activations(settings: dict) -> dict[str, float]:
    """Activation peak (bytes) of each phase of one keyframe at the profile's size."""
    from faceless.tasks.runtime.memory_plan import MIB, dit, vae2d

    width, height = int(settings["width"]), int(settings["height"])
    pixels = width * height
    tokens = (width // 16) * (height // 16) + 256  # image tokens (2x2 patches of the 8x latent) + T5
    return {"encode": 256 * MIB, "transformer": dit(tokens, 3072, 12288),
            "decode": vae2d(pixels, 2), "decode_tiled": vae2d(min(pixels, 1024 * 1024), 2) + pixels * 3 * 2 * 2}


def components() -> dict[str, tuple]:
    """For benchmarks/memory_table.py: {component: (module at its published size on the meta
    device, bytes per parameter as the loader puts it on a GPU, role)}. bf16."""
    import torch
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from faceless.tasks.models.tiny import published

    with torch.device("meta"):
        return {
            "text_encoder": (CLIPTextModel(CLIPTextConfig(**published("flux-schnell-text-encoder"))), 2, "encoder"),
            "text_encoder_2": (T5EncoderModel(T5Config(**published("flux-schnell-text-encoder-2"))), 2, "encoder"),
            "transformer": (FluxTransformer2DModel(**published("flux-schnell-transformer")), 2, "denoiser"),
            "vae": (AutoencoderKL(**published("flux-schnell-vae")), 2, "vae"),
        }


# -- the tiny twin (tasks/models/tiny.py: `tiny:flux-schnell` in a profile) ------------------------

def _build_tiny(directory) -> None:
    from faceless.tasks.models.flux_tiny import build_tiny_flux
    from faceless.tasks.models.registry import quiet_libraries

    quiet_libraries()
    build_tiny_flux(directory)


TINY_MODELS = {"flux-schnell": (_build_tiny, "model_index.json", 1)}
