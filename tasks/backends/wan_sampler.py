"""How a Wan 2.2 TI2V pass walks from noise to a clip: the `sampler` and `step_cache` settings.

- ``full``: the model's own schedule (UniPC over `num_inference_steps`, 50 published) with
  classifier-free guidance: two transformer passes a step.
- ``distilled``: a step-distilled checkpoint at its published timesteps, guidance off: one
  transformer pass a step. FastWan2.2-TI2V-5B (FastVideo, DMD) was distilled at the discrete
  timesteps 1000, 757 and 522 of 1000; they are already in the scheduler's shifted space, so the
  noise level of step i is t_i / 1000 (FastVideo's own tests pin sigmas 1.0, 0.757, 0.522, 0).
  Each step predicts the clean latent from the model's flow output (x0 = x - sigma * v) and,
  but for the last, noises it afresh to the next level (DMD's sampler, not an Euler step).

A step cache (diffusers' hooks, `transformer.enable_cache`) skips transformer work between
close steps of the `full` sampler. With a distilled sampler every one of its three steps is
far from the others: nothing to reuse, so the two are refused together.

    with sampling(pipe, options, seed):
        pipe(...)          # the pipeline's own loop, with the sampler's scheduler and cache
"""

from __future__ import annotations

import contextlib
from typing import Any, Mapping

SAMPLERS = ("full", "distilled")
STEP_CACHES = ("none", "firstblock", "magcache", "taylorseer")
CACHE_LABELS = {"firstblock": "firstblockcache", "magcache": "magcache", "taylorseer": "taylorseercache"}
# FastWan2.2-TI2V-5B's DMD timesteps (FastVideo's FastWan2_2_TI2V_5B_Config.dmd_denoising_steps).
DISTILLED_TIMESTEPS = (1000, 757, 522)


def check(sampler: str, step_cache: str, steps: int, guidance_scale: float,
          timesteps=DISTILLED_TIMESTEPS, cache_options: Mapping[str, Any] | None = None) -> None:
    """Refuse settings that cannot run as asked (a profile is checked when it loads)."""
    if sampler not in SAMPLERS:
        raise ValueError(f"wan sampler {sampler!r}: one of {', '.join(SAMPLERS)}")
    if step_cache not in STEP_CACHES:
        raise ValueError(f"wan step_cache {step_cache!r}: one of {', '.join(STEP_CACHES)}")
    if sampler == "distilled":
        if step_cache != "none":
            raise ValueError(f"wan: step_cache {step_cache!r} with the distilled sampler: its few steps are far "
                             "apart and share nothing to cache; use one or the other (step_cache: none)")
        if guidance_scale > 1:
            raise ValueError(f"wan: the distilled sampler runs without guidance (guidance_scale 1, got "
                             f"{guidance_scale:g}): the guidance was distilled into the weights")
        if steps != len(timesteps):
            raise ValueError(f"wan: the distilled sampler makes {len(timesteps)} steps (its timesteps "
                             f"{list(timesteps)}), but num_inference_steps is {steps}")
    if step_cache == "magcache" and not (cache_options or {}).get("mag_ratios"):
        raise ValueError("wan: step_cache magcache needs `step_cache_options: {mag_ratios: [...]}`, the model's "
                         "measured magnitude ratios (diffusers' MagCacheConfig(calibrate=True) prints them)")


def label(sampler: str, step_cache: str) -> str:
    """What the manifest records: "distilled", "full", "full+firstblockcache", ..."""
    return sampler if step_cache == "none" else f"{sampler}+{CACHE_LABELS[step_cache]}"


def distilled_scheduler(timesteps=DISTILLED_TIMESTEPS, generator=None):
    """A diffusers scheduler that steps the pipeline's own loop through the distilled timesteps."""
    import torch
    from diffusers import ConfigMixin, SchedulerMixin
    from diffusers.configuration_utils import register_to_config
    from diffusers.schedulers.scheduling_utils import SchedulerOutput

    class DistilledScheduler(SchedulerMixin, ConfigMixin):
        """Predict the clean latent at each timestep, noise it to the next one (DMD sampling)."""

        config_name = "scheduler_config.json"
        order = 1
        init_noise_sigma = 1.0

        @register_to_config
        def __init__(self, timesteps=DISTILLED_TIMESTEPS, num_train_timesteps: int = 1000):
            self.noise = generator  # the re-noising draws: seeded, so a shot is the same every time
            self.set_timesteps()

        def set_timesteps(self, num_inference_steps: int | None = None, device=None, **_):
            count = len(self.config.timesteps)
            if num_inference_steps not in (None, count):
                raise ValueError(f"the distilled sampler makes {count} steps, asked for {num_inference_steps}")
            self.timesteps = torch.tensor(self.config.timesteps, dtype=torch.float32, device=device)
            levels = [t / self.config.num_train_timesteps for t in self.config.timesteps] + [0.0]
            self.sigmas = torch.tensor(levels, dtype=torch.float32)
            self.index = 0

        def step(self, model_output, timestep, sample, return_dict: bool = True, **_):
            sigma, following = float(self.sigmas[self.index]), float(self.sigmas[self.index + 1])
            clean = sample.float() - sigma * model_output.float()  # flow prediction: v = noise - x0
            if following > 0:
                fresh = torch.randn(sample.shape, generator=self.noise, dtype=torch.float32)
                clean = (1 - following) * clean + following * fresh.to(clean.device)
            self.index += 1
            out = clean.to(sample.dtype)
            return SchedulerOutput(prev_sample=out) if return_dict else (out,)

    return DistilledScheduler(timesteps=list(timesteps))


def cache_config(step_cache: str, options: Mapping[str, Any] | None, steps: int):
    """diffusers' config object for `step_cache` (None for "none"), with the profile's options."""
    options = dict(options or {})
    if step_cache == "none":
        return None
    if step_cache == "firstblock":
        from diffusers import FirstBlockCacheConfig

        return FirstBlockCacheConfig(**options)
    if step_cache == "magcache":
        from diffusers import MagCacheConfig

        return MagCacheConfig(num_inference_steps=steps, **options)  # its ratios are read per step
    from diffusers import TaylorSeerCacheConfig

    return TaylorSeerCacheConfig(**options)


@contextlib.contextmanager
def sampling(pipe, options, seed: int):
    """Run the pipeline under `options`' sampler and step cache, and put its own scheduler back
    and the cache off after: the pipeline is shared with the next shots and profiles."""
    import torch

    scheduler, cached = pipe.scheduler, False
    try:
        if options.sampler == "distilled":
            noise = torch.Generator("cpu").manual_seed(seed + 1)  # not the initial noise's stream
            pipe.scheduler = distilled_scheduler(tuple(options.distilled_timesteps), noise)
        config = cache_config(options.step_cache, options.step_cache_options, options.num_inference_steps)
        if config is not None:
            pipe.transformer.enable_cache(config)
            cached = True
        yield
    finally:
        if cached:
            pipe.transformer.disable_cache()
        pipe.scheduler = scheduler
