"""FLUX.2 [klein] 4B keyframes: one picture from a prompt and several reference pictures, 4 steps.

Why klein for modern's cast references: it is Apache-2.0, 4B parameters (a 4B transformer and
the Qwen3-4B text encoder: about 16 GB in bf16, loaded apart from schnell), takes several
reference pictures in one call, and is step-distilled to 4 steps without guidance, like
schnell. Qwen-Image-Edit-2509 (about 20B, 1-3 references) would not fit the cards creators
own; the FLUX.1 Kontext [dev], Redux, PuLID and InstantID routes are left out for their licences
(README.md).

How it is used: modern's keyframe section (FLUX.1-schnell) names it in its `references`
subsection; a shot showing cast members is then drawn by klein, conditioned on their reference
pictures (tasks/stages/cast.py), at the section's size; a shot showing nobody is drawn by
schnell as before (tasks/stages/keyframe.py `drawing_section`). The references go to
`Flux2KleinPipeline` as its `image` list: each is encoded by the VAE and its latent tokens join
the picture's in the transformer's attention (a reference over 1024x1024 pixels is scaled down
by the pipeline). The prompt names them in order ("Tomas is the person in reference image 1"),
since the model reads references by their place in the list.

The text encoder is Qwen3-4B read through its chat template: the pipeline stacks the hidden
states of its layers 9, 18 and 27 into the transformer's 7680-wide text tokens. Sizes must be
multiples of 16 (8x VAE, 2x2 patches); on a GPU the model runs in bfloat16. Memory knobs and
the step callback are FLUX.1's (tasks/backends/flux.py).

It can also be a profile's keyframe backend of its own (`backend: flux2-klein`): text to
picture, and with `references: true` the cast's references for the shots that show them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from faceless.tasks.backends.klein_sections import STEPS, KleinReferences, KleinRung, _Klein  # noqa: F401

# The backend interface (tasks/backends/base.py).
NAME = "flux2-klein"
STAGE = "keyframe"
FAMILY = "flux2"
LABEL = "FLUX.2 [klein] 4B"

log = logging.getLogger(__name__)

MAX_SEQUENCE_LENGTH = 512  # the pipeline's text context (Qwen3 tokens, chat template included)
SIZE_MULTIPLE = 16
MODELS = {"model": "diffusers"}  # its model setting: the kind of folder it is
REFERENCES = True  # conditioned on cast references (`references: true` when it is the section's backend)
PIPELINE = "Flux2KleinPipeline"
MIN_REFERENCE_SIDE = 64  # the pipeline's image processor refuses smaller references


@dataclass
class KleinPicture:
    """One keyframe and what made it."""

    image: Any  # PIL.Image.Image
    seed: int
    width: int
    height: int
    steps: int  # denoising steps run (callbacks seen)
    text_tokens: int  # Qwen3 tokens of the prompt in its chat template
    text_truncated: bool  # True when the prompt was cut at max_sequence_length
    references: list[str]  # the members whose pictures conditioned it, in the prompt's order
    seconds: float
    knobs: list[str] = field(default_factory=list)
    skipped_knobs: list[str] = field(default_factory=list)


def prompt_with_references(prompt: str, names: list[str]) -> str:
    """The prompt, naming each reference picture by its place in the list (klein reads them in
    order: "image 1" is the first)."""
    if not names:
        return prompt
    who = "; ".join(f"{name} is the person in reference image {i}" for i, name in enumerate(names, 1))
    return f"{prompt.rstrip().rstrip('.')}. {who}."


def _big_enough(picture):
    """The pipeline refuses a reference under 64 pixels a side (a user's thumbnail): scaled up."""
    if min(picture.size) >= MIN_REFERENCE_SIDE:
        return picture
    scale = MIN_REFERENCE_SIDE / min(picture.size)
    return picture.resize((max(MIN_REFERENCE_SIDE, round(picture.width * scale)),
                           max(MIN_REFERENCE_SIDE, round(picture.height * scale))))


def count_tokens(tokenizer, prompt: str, limit: int) -> tuple[int, bool]:
    """Tokens the text encoder reads for `prompt` (the pipeline's chat template around it)."""
    text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True, enable_thinking=False)
    from faceless.tasks.backends import flux

    return flux.count_tokens(tokenizer, text, limit)


def keyframe(pipe, prompt: str, width: int, height: int, seed: int, settings: dict, progress=None,
             references: list = ()) -> KleinPicture:
    """One klein keyframe. pipe: a Flux2KleinPipeline (`load_cached`); width, height: multiples
    of 16; seed: the CPU generator's; settings: the section (steps, guidance, sequence length,
    memory knobs); references: (name, PIL image or path) of the members the shot shows, at most
    `max_references` (the first ones; the rest are left out, with a warning)."""
    import torch
    from PIL import Image

    from faceless.tasks.backends import flux

    flux.check_size(width, height)
    if not prompt or not prompt.strip():
        raise ValueError("FLUX.2 [klein] keyframe needs a prompt")
    references = list(references)
    limit = int(settings["max_references"])
    if len(references) > limit:
        log.warning("klein takes %d references: %s left out", limit, ", ".join(n for n, _ in references[limit:]))
        references = references[:limit]
    names = [name for name, _ in references]
    pictures = [_big_enough(picture if isinstance(picture, Image.Image) else Image.open(picture).convert("RGB"))
                for _, picture in references]
    text = prompt_with_references(prompt, names)
    tokens, truncated = count_tokens(pipe.tokenizer, text, int(settings["max_sequence_length"]))
    if truncated:
        log.warning("klein's text encoder reads %d of the prompt's %d tokens", settings["max_sequence_length"], tokens)

    steps = int(settings["num_inference_steps"])
    callback, seen = flux._step_callback(progress, steps)
    generator = torch.Generator("cpu").manual_seed(int(seed))
    started = time.perf_counter()
    with flux.memory_knobs(pipe, settings) as (applied, skipped), torch.inference_mode():
        image = pipe(
            prompt=text,
            image=pictures or None,
            width=int(width),
            height=int(height),
            num_inference_steps=steps,
            guidance_scale=float(settings["guidance_scale"]),
            max_sequence_length=int(settings["max_sequence_length"]),
            generator=generator,
            callback_on_step_end=callback,
            output_type="pil",
        ).images[0]
    if image.getextrema() in (((0, 0), (0, 0), (0, 0)),):
        raise FloatingPointError("FLUX.2 [klein] produced an all-black picture: NaN latents (corrupt weights, or float16)")
    return KleinPicture(image=image, seed=int(seed), width=image.width, height=image.height, steps=seen["steps"],
                        text_tokens=tokens, text_truncated=truncated, references=names,
                        seconds=time.perf_counter() - started, knobs=list(applied), skipped_knobs=list(skipped))


def load_cached(spec: str):
    """FLUX.2 [klein] (Flux2KleinPipeline), loaded once per process, on the CPU: bf16 when
    there is a GPU, fp32 without; the stage places it."""
    from faceless.tasks.backends import flux
    from faceless.tasks.models.registry import device_and_dtype, load_once
    from faceless.tasks.models.specs import resolve

    def load():
        device_and_dtype()  # quiets the libraries, flushes denormals on a CPU
        return flux.load_pipeline(resolve(spec), pipeline=PIPELINE)

    return load_once(FAMILY, (spec,), load)


def make_keyframe(shot: dict, index: int, settings: dict, progress, models, references: list = ()):
    """The keyframe stage's call: the shot's picture (from its whole description, as T5 reads it
    for schnell) and what the manifest records. `references`: (name, picture path) of the cast
    members the shot shows. Like FLUX.1's, it holds the GPU slot and places the pipeline."""
    from faceless.tasks.runtime import gpu, placement

    def on_gpu():
        pipe = load_cached(settings["model"])
        device = getattr(pipe, "_execution_device", pipe.device)
        with models.model_turn(FAMILY, device, settings.get("cpu_threads")):
            where = placement.ensure_placed("keyframe", FAMILY, NAME, pipe, settings)
            gpu.inject_fault("keyframe", index)
            return where, keyframe(pipe, shot["description"], settings["width"], settings["height"], shot["seed"],
                                   settings, progress, list(references))

    where, made = gpu.on_gpu(f"keyframe[{index}]", on_gpu)
    return made.image, {"text_tokens": made.text_tokens, "text_truncated": made.text_truncated,
                        "references_used": made.references, "placement": where}

# -- the profile's section (tasks/profile_schema.py builds the stage's union from the registry) --

class KleinKeyframe(_Klein):
    """FLUX.2 [klein] 4B as the keyframe backend: every shot drawn by it."""
    backend: Literal["flux2-klein"]
    width: int = 720  # multiples of 16
    height: int = 1280
    references: bool = False  # true: shots showing cast members are conditioned on their references


SETTINGS = KleinKeyframe


# -- memory facts (tasks/runtime/memory_plan.py) -------------------------------------------------

VAE_TILING = True  # its VAE decodes in tiles (vae.enable_tiling)


def activations(settings: dict) -> dict[str, float]:
    """Activation peak (bytes) of each phase of one keyframe at the profile's size, with
    `max_references` reference pictures at that size (each adds its own latent tokens)."""
    from faceless.tasks.runtime.memory_plan import MIB, dit, vae2d

    width, height = int(settings["width"]), int(settings["height"])
    pixels = width * height
    image_tokens = (width // 16) * (height // 16)
    tokens = image_tokens * (1 + int(settings.get("max_references", 4))) + int(settings.get("max_sequence_length", 512))
    # 3072 wide (24 heads of 128); the single blocks' fused projection is SwiGLU's 2 x 9216.
    return {"encode": 256 * MIB, "transformer": dit(tokens, 3072, 2 * 9216),
            "decode": vae2d(pixels, 2), "decode_tiled": vae2d(min(pixels, 1024 * 1024), 2) + pixels * 3 * 2 * 2}


def components() -> dict[str, tuple]:
    """For benchmarks/memory_table.py: {component: (module at its published size on the meta
    device, bytes per parameter as the loader puts it on a GPU, role)}. bf16."""
    import torch
    from diffusers import AutoencoderKLFlux2, Flux2Transformer2DModel
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from faceless.tasks.models.tiny import published

    with torch.device("meta"):
        return {
            "text_encoder": (Qwen3ForCausalLM(Qwen3Config(**published("flux2-klein-4b-text-encoder"))), 2, "encoder"),
            "transformer": (Flux2Transformer2DModel(**published("flux2-klein-4b-transformer")), 2, "denoiser"),
            "vae": (AutoencoderKLFlux2(**published("flux2-klein-4b-vae")), 2, "vae"),
        }


# -- the tiny twin (tasks/models/tiny.py: `tiny:flux2-klein` in a profile) ------------------------

def _build_tiny(directory) -> None:
    from faceless.tasks.models.klein_tiny import build_tiny_klein
    from faceless.tasks.models.registry import quiet_libraries

    quiet_libraries()
    build_tiny_klein(directory)


TINY_MODELS = {"flux2-klein": (_build_tiny, "model_index.json", 1)}
