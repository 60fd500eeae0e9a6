"""Keyframe: one picture per shot.

Backends (the profile's `keyframe.backend`):

- ``sdxl-ensemble`` (studio, fast, offline, tiny): SDXL base then the SDXL refiner, handed
  over in latent space (tasks/backends/sdxl.py).
- ``flux-schnell`` (modern): FLUX.1-schnell in 4 steps; CLIP reads the shot's 77-token
  prompt and T5 its whole description (tasks/backends/flux.py).

Each is found through the registry (tasks/backends/base.py) and called as
`make_keyframe(shot, index, settings, progress, models) -> (image, manifest extras)`.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task

from faceless.tasks.runtime import gpu

from faceless.tasks import models
from faceless.tasks.backends import base as backends
from faceless.tasks.backends.sdxl import base_then_refiner  # noqa: F401  (where tests and benchmarks import it)
from faceless.tasks.runtime.caching import ArtifactPolicy
from faceless.tasks.runtime.progress import Progress
from faceless.tasks.stages.results import KeyframeResult

STAGE_VERSION = 3  # 3: backends (sdxl-ensemble, flux-schnell)


def keyframe(shot: dict, index: int, settings: dict, directory: Path) -> dict:
    backend = backends.get(settings["backend"])
    make, name = backend.make_keyframe, backend.LABEL
    progress = Progress(f"denoise-keyframe-{index:02d}", f"Shot {index}: {name} denoising",
                        settings["num_inference_steps"])
    image, extra = make(shot, index, settings, progress, models)
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
