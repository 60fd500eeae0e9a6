"""FLUX.2 [klein]'s profile sections, apart from its backend module (tasks/backends/flux2_klein.py):
FLUX.1-schnell's section takes klein's as its `references`, and klein's module uses FLUX.1's
code, so the sections live here, where both import them without a cycle."""

from __future__ import annotations

from typing import Literal

from faceless.tasks.profile_sections import RungSection, Section

STEPS = 4  # klein 4B is step-distilled: 4 steps, no guidance


class KleinRung(RungSection):
    """A rung of the klein ladder; only the keys it sets are kept."""
    vae_tiling: bool | None = None
    vae_slicing: bool | None = None
    model_cpu_offload: bool | None = None
    sequential_cpu_offload: bool | None = None


class _Klein(Section):
    """What klein draws with, as a keyframe section or as another section's `references`."""
    model: str = "hf:black-forest-labs/FLUX.2-klein-4B"
    num_inference_steps: int = STEPS
    guidance_scale: float = 1.0  # off: the 4B model is step-distilled without guidance
    max_sequence_length: int = 512  # Qwen3 tokens, chat template included
    max_references: int = 4  # reference pictures in one call; a shot showing more uses its first ones
    vae_tiling: bool = False
    vae_slicing: bool = False
    model_cpu_offload: bool = False  # ignored without a GPU
    sequential_cpu_offload: bool = False
    cpu_threads: int | None = None  # torch threads on a CPU (None: torch's choice); 1 suits tiny twins
    degrade: list[KleinRung] = [KleinRung(vae_tiling=True), KleinRung(model_cpu_offload=True),
                                KleinRung(sequential_cpu_offload=True)]


class KleinReferences(_Klein):
    """Another keyframe backend's `references` (FLUX.1-schnell's): the shots showing cast
    members are drawn by klein, at that section's size, on their references."""
    backend: Literal["flux2-klein"] = "flux2-klein"
