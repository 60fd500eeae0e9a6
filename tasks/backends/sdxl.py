"""The `sdxl-ensemble` keyframe backend: SDXL base then the SDXL refiner, in latent space.

The base runs the first `high_noise_frac` of one denoising schedule and returns latents; the
refiner continues the same schedule from those latents (the "ensemble of experts" use of the
refiner), so the image is decoded once, at the end. Base and refiner share `text_encoder_2` and
the VAE, and are placed on the GPU together (tasks/runtime/placement.py): one family, one set of
hooks.
"""

from __future__ import annotations

from faceless.tasks import models
from faceless.tasks.runtime import gpu, placement

# The backend interface (tasks/backends/base.py).
NAME = "sdxl-ensemble"
STAGE = "keyframe"
LABEL = "SDXL base + refiner"

FAMILY = "sdxl"
SIZE_MULTIPLE = 8


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


def make_keyframe(shot: dict, index: int, settings: dict, progress, models=models):
    """The keyframe stage's call: (PIL image, what the manifest records)."""
    def on_gpu():
        base, refiner = models.sdxl_ensemble(settings["base"], settings["refiner"])
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
