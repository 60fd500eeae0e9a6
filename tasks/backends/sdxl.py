"""The `sdxl-ensemble` keyframe backend: SDXL base then the SDXL refiner, in latent space.

The base runs the first `high_noise_frac` of one denoising schedule and returns latents; the
refiner continues the same schedule from those latents (the "ensemble of experts" use of the
refiner), so the image is decoded once, at the end. Base and refiner share `text_encoder_2` and
the VAE, and are placed on the GPU together (tasks/runtime/placement.py): one family, one set of
hooks.
"""

from __future__ import annotations

from typing import Literal

from faceless.tasks.profile_sections import RungSection, Section

# The backend interface (tasks/backends/base.py).
NAME = "sdxl-ensemble"
STAGE = "keyframe"
LABEL = "SDXL base + refiner"

FAMILY = "sdxl"
SIZE_MULTIPLE = 8
MODELS = {"base": "diffusers", "refiner": "diffusers"}  # its model settings: the kind of folder each is


def base_then_refiner(base, refiner, prompt: str, negative_prompt: str, seed: int, settings: dict,
                      on_step=None, prompt_2: str = ""):
    """Run the ensemble; returns (PIL image, base latents). `on_step` is a diffusers
    callback_on_step_end called after every denoising step of both models."""
    import torch

    generator = torch.Generator("cpu").manual_seed(seed)
    common = dict(
        prompt=prompt,
        # The second encoder's own prompt (the refiner has only that encoder); None: `prompt`.
        prompt_2=prompt_2 or None,
        negative_prompt=negative_prompt or None,
        num_inference_steps=settings["num_inference_steps"],
        guidance_scale=settings["guidance_scale"],
        generator=generator,
        callback_on_step_end=on_step,
    )
    split = settings["high_noise_frac"]
    latents = base(
        **common, width=settings["width"], height=settings["height"],
        denoising_end=split, output_type="latent",
    ).images
    if torch.isnan(latents).any():  # fp16 overflow shows up here first; a NaN image is black
        raise FloatingPointError("SDXL base produced NaN latents: corrupt weights, or an overflow in fp16")
    # The refiner has only the second (bigG) encoder, and diffusers feeds it `prompt` when the
    # first encoder is absent: hand it the second encoder's prompt under that name.
    image = refiner(**{**common, "prompt": prompt_2 or prompt, "prompt_2": None},
                    image=latents, denoising_start=split).images[0]
    return image, latents


def load_cached(base_spec: str, refiner_spec: str):
    """SDXL base and refiner, sharing text_encoder_2 and the VAE; loaded once per process, on
    the CPU in the GPU's dtype: the stage places both pipelines as one family."""
    from faceless.tasks.models.registry import load_once

    return load_once(FAMILY, (base_spec, refiner_spec), lambda: _load(base_spec, refiner_spec))


def _load(base_spec: str, refiner_spec: str):
    import torch
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

    from faceless.tasks.models.registry import device_and_dtype
    from faceless.tasks.models.specs import resolve

    _, dtype = device_and_dtype()
    base = StableDiffusionXLPipeline.from_pretrained(str(resolve(base_spec)), dtype=dtype)
    refiner = StableDiffusionXLImg2ImgPipeline.from_pretrained(
        str(resolve(refiner_spec)), text_encoder_2=base.text_encoder_2, vae=base.vae, dtype=dtype,
    )
    if dtype == torch.float16:
        # SDXL's VAE overflows in fp16 (NaN, black pictures): have the pipelines decode in fp32.
        base.vae.register_to_config(force_upcast=True)
    base.set_progress_bar_config(disable=True)
    refiner.set_progress_bar_config(disable=True)
    return base, refiner


def make_keyframe(shot: dict, index: int, settings: dict, progress, models):
    """The keyframe stage's call: (PIL image, what the manifest records). `models`: the models
    package, passed in by the stage."""
    from faceless.tasks.runtime import gpu, placement

    def on_gpu():
        base, refiner = load_cached(settings["base"], settings["refiner"])
        device = getattr(base, "_execution_device", base.device)
        with models.model_turn(FAMILY, device, settings["cpu_threads"]):
            # Base and refiner share text_encoder_2 and the VAE: placed together, one set of hooks.
            where = placement.ensure_placed("keyframe", FAMILY, NAME, (base, refiner), settings)
            with gpu.memory_knobs(base, settings), gpu.memory_knobs(refiner, settings):
                gpu.inject_fault("keyframe", index)
                return where, *base_then_refiner(base, refiner, shot["prompt"], shot["negative_prompt"], shot["seed"],
                                                 settings, on_step=progress.step_callback(), prompt_2=shot["prompt_2"])

    where, image, latents = gpu.on_gpu(f"keyframe[{index}]", on_gpu)
    return image, {"latent_shape": list(latents.shape), "placement": where}

# -- the profile's section (tasks/profile_schema.py builds the stage's union from the registry) --

class Rung(RungSection):
    """One rung of a degrade ladder: only the keys it sets. Unset keys are left out of the
    resolved settings, since a rung is applied over the stage's settings with dict.update."""
    model_cpu_offload: bool | None = None
    vae_tiling: bool | None = None
    attention_slicing: bool | None = None
    forward_chunking: bool | None = None


# The section also takes the memory-saving switches of tasks/runtime/gpu.py `memory_knobs`
# (model_cpu_offload, vae_tiling, attention_slicing, forward_chunking; all off by default),
# which its degrade ladder turns on one rung at a time after an out-of-memory error.

class SdxlKeyframe(Section):
    backend: Literal["sdxl-ensemble"] = "sdxl-ensemble"
    base: str
    refiner: str
    width: int
    height: int
    num_inference_steps: int  # one schedule, split between base and refiner
    high_noise_frac: float = 0.8  # base runs this fraction of the schedule, the refiner the rest
    guidance_scale: float = 5.0
    model_cpu_offload: bool = False  # ignored without a GPU
    # torch threads on a CPU (None: torch's own choice, every core). Tiny models make small
    # matrix products, where a second thread mostly waits: 1 used a quarter of the CPU time.
    cpu_threads: int | None = None
    vae_tiling: bool = False
    attention_slicing: bool = False
    forward_chunking: bool = False
    degrade: list[Rung] = []


SETTINGS = SdxlKeyframe


# -- memory facts (tasks/runtime/memory_plan.py) -------------------------------------------------

VAE_TILING = True  # its VAE decodes in tiles (vae.enable_tiling)


def activations(settings: dict) -> dict[str, float]:
    """Activation peak (bytes) of each phase of one keyframe at the profile's size."""
    from faceless.tasks.runtime.memory_plan import MIB, vae2d

    pixels = int(settings["width"]) * int(settings["height"])
    latent = pixels // 64
    # CFG: batch 2. The top level's resnets (320 wide) and the skip tensors, and the 64x64-ish
    # level's transformer (640 wide, GEGLU feed-forward 5120).
    unet = 2 * 2 * (latent * 320 * 12 + latent // 4 * (640 * 8 + 2 * 5120))
    decode = vae2d(pixels, 4)  # force_upcast: the VAE decodes in fp32
    tile = min(pixels, 1024 * 1024)  # the VAE's tile is its sample_size, 1024 px
    return {"encode": 128 * MIB, "unet": unet, "refiner_unet": unet, "decode": decode,
            "decode_tiled": vae2d(tile, 4) + pixels * 3 * 4 * 2}


def components() -> dict[str, tuple]:
    """For benchmarks/memory_table.py: {component: (module at its published size on the meta
    device, bytes per parameter as the loader puts it on a GPU, role)}. fp16; the VAE
    counted in fp32, as it decodes upcast (force_upcast)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from faceless.tasks.models.tiny import published

    with torch.device("meta"):
        return {
            "text_encoder": (CLIPTextModel(CLIPTextConfig(**published("sdxl-text-encoder"))), 2, "encoder"),
            "text_encoder_2": (CLIPTextModelWithProjection(CLIPTextConfig(**published("sdxl-text-encoder-2"))), 2,
                               "encoder"),
            "unet": (UNet2DConditionModel(**published("sdxl-base-unet")), 2, "denoiser"),
            "refiner_unet": (UNet2DConditionModel(**published("sdxl-refiner-unet")), 2, "denoiser"),
            "vae": (AutoencoderKL(**published("sdxl-vae")), 4, "vae"),
        }
