"""Keyframe: one picture per shot.

The profile's `keyframe.backend` (SDXL base and refiner for studio, FLUX.1-schnell for modern,
docs/architecture.md) is found through the registry (tasks/backends/base.py) and called as
`make_keyframe(shot, index, settings, progress, models) -> (image, manifest extras)`.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task

from faceless.tasks.runtime import gpu

from faceless.tasks import models
from faceless.tasks.backends import base as backends
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
