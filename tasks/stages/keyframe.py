"""Keyframe: one picture per shot.

Backends (the profile's `keyframe.backend`):

- ``sdxl-ensemble`` (studio, fast, offline, tiny): SDXL base then the SDXL refiner, handed
  over in latent space. The base runs the first `high_noise_frac` of one denoising schedule
  and returns latents; the refiner continues the same schedule from those latents (the
  "ensemble of experts" use of the refiner), so the image is decoded once, at the end.
- ``flux-schnell`` (modern): FLUX.1-schnell in 4 steps; CLIP reads the shot's 77-token
  prompt and T5 its whole description (tasks/backends/flux.py).
"""

from __future__ import annotations

from pathlib import Path

from prefect import task

from faceless.tasks.runtime import gpu

from faceless.tasks import models
from faceless.tasks.runtime.caching import ArtifactPolicy
from faceless.tasks.runtime.progress import Progress
from faceless.tasks.stages.results import KeyframeResult

STAGE_VERSION = 3  # 3: backends (sdxl-ensemble, flux-schnell)


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


def sdxl_ensemble(shot: dict, index: int, settings: dict, progress: Progress):
    def on_gpu():
        base, refiner = models.sdxl_ensemble(settings["base"], settings["refiner"])
        with models.MODEL_LOCK, gpu.memory_knobs(base, settings), gpu.memory_knobs(refiner, settings), \
                models.cpu_threads(base.device, settings["cpu_threads"]):
            gpu.inject_fault("keyframe", index)
            return base_then_refiner(base, refiner, shot["prompt"], shot["negative_prompt"], shot["seed"],
                                     settings, on_step=progress.step_callback(), prompt_2=shot["prompt_2"])

    image, latents = gpu.on_gpu(f"keyframe[{index}]", on_gpu)
    return image, {"latent_shape": list(latents.shape)}


def flux_schnell(shot: dict, index: int, settings: dict, progress: Progress):
    from faceless.tasks.backends import flux

    def on_gpu():
        pipe = models.flux(settings["model"])
        with models.MODEL_LOCK:
            gpu.inject_fault("keyframe", index)
            return flux.keyframe(pipe, shot["prompt"], settings["width"], settings["height"], shot["seed"],
                                 settings, progress, prompt_2=shot["description"])

    made = gpu.on_gpu(f"keyframe[{index}]", on_gpu)
    return made.image, {"t5_tokens": made.t5_tokens, "t5_truncated": made.t5_truncated}


BACKENDS = {"sdxl-ensemble": (sdxl_ensemble, "SDXL base + refiner"), "flux-schnell": (flux_schnell, "FLUX.1-schnell")}


def keyframe(shot: dict, index: int, settings: dict, directory: Path) -> dict:
    make, name = BACKENDS[settings["backend"]]
    progress = Progress(f"denoise-keyframe-{index:02d}", f"Shot {index}: {name} denoising",
                        settings["num_inference_steps"])
    image, extra = make(shot, index, settings, progress)
    progress.update(progress.total)
    image.save(directory / "keyframe.png")
    return {
        "seed": shot["seed"],
        "prompt": shot["prompt"],
        "prompt_2": shot["prompt_2"],
        "size": [image.width, image.height],
        **extra,
    }


# The shot's index only names it (progress, faults, logs): the artifact depends on content.
@task(name="keyframe", cache_policy=ArtifactPolicy(stage="keyframe", version=STAGE_VERSION, labels=("index",)),
      retry_condition_fn=gpu.retry_on_oom)
def keyframe_task(shot: dict, index: int, settings: dict, models_used: dict) -> KeyframeResult:
    """`shot`: prompt, prompt_2, description, negative_prompt and seed."""
    return KeyframeResult.of(gpu.run_gpu_stage("keyframe", index, settings,
                                               lambda directory, applied: keyframe(shot, index, applied, directory)))
