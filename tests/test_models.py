"""Tiny offline models: built deterministically, loaded like real ones, ensemble wiring."""

from __future__ import annotations

import pytest

from faceless.tasks.backends import sdxl
from faceless.tasks.backends.sdxl import base_then_refiner


@pytest.fixture(scope="module")
def ensemble(tiny_home):
    return sdxl.load_cached("tiny:sdxl-base", "tiny:sdxl-refiner")


def test_refiner_shares_text_encoder_2_and_vae_with_the_base(ensemble):
    base, refiner = ensemble
    assert refiner.text_encoder_2 is base.text_encoder_2
    assert refiner.vae is base.vae
    assert getattr(refiner, "text_encoder", None) is None


def test_refiner_continues_from_the_base_latents(ensemble):
    base, refiner = ensemble
    settings = {"width": 64, "height": 96, "num_inference_steps": 5, "high_noise_frac": 0.8, "guidance_scale": 5.0}
    calls = []
    hook = refiner.unet.register_forward_hook(lambda module, args, kwargs_out: calls.append(args[0].shape))
    try:
        image, latents = base_then_refiner(base, refiner, "a fox", "", 7, settings)
    finally:
        hook.remove()
    # The base hands over latents (4 channels at 1/8 size), not a decoded picture...
    assert tuple(latents.shape) == (1, 4, 12, 8)
    # ...and the refiner denoises those latents for the last 20% of the schedule: one step of 5.
    assert len(calls) == 1 and tuple(calls[0][-2:]) == (12, 8)
    assert image.size == (64, 96)


def test_same_seed_same_picture(ensemble):
    base, refiner = ensemble
    settings = {"width": 64, "height": 96, "num_inference_steps": 4, "high_noise_frac": 0.8, "guidance_scale": 5.0}
    first, _ = base_then_refiner(base, refiner, "a fox", "", 3, settings)
    second, _ = base_then_refiner(base, refiner, "a fox", "", 3, settings)
    third, _ = base_then_refiner(base, refiner, "a fox", "", 4, settings)
    assert first.tobytes() == second.tobytes() != third.tobytes()
