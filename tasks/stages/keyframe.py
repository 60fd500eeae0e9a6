"""Keyframe: one picture per shot.

The profile's `keyframe.backend` (SDXL base and refiner for studio, FLUX.1-schnell for modern,
docs/architecture.md) is found through the registry (tasks/backends/base.py) and called as
`make_keyframe(shot, index, settings, progress, models) -> (image, manifest extras)`.

A shot showing cast members is conditioned on their reference pictures (tasks/stages/cast.py),
handed to a backend that takes them (`REFERENCES`) as `references=[(name, path), ...]`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import task

from faceless.tasks.runtime import gpu

from faceless.tasks import models
from faceless.tasks.backends import base as backends
from faceless.tasks.runtime.caching import ArtifactPolicy
from faceless.tasks.runtime.progress import Progress
from faceless.tasks.stages.results import CastResult, KeyframeResult

STAGE_VERSION = 3  # 3: backends (sdxl-ensemble, flux-schnell)


def keyframe(shot: dict, index: int, settings: dict, directory: Path, references: list[CastResult] = ()) -> dict:
    backend = backends.get(settings["backend"])
    make, name = backend.make_keyframe, backend.LABEL
    progress = Progress(f"denoise-keyframe-{index:02d}", f"Shot {index}: {name} denoising",
                        settings["num_inference_steps"])
    pictures = [(reference.name, reference.picture) for reference in references]
    # Only a shot with references passes them: every backend keeps its plain call.
    image, extra = make(shot, index, settings, progress, models, **({"references": pictures} if pictures else {}))
    progress.update(progress.total)
    image.save(directory / "keyframe.png")
    return {
        "seed": shot["seed"],
        "prompt": shot["prompt"],
        "prompt_2": shot["prompt_2"],
        "size": [image.width, image.height],
        "references": [name for name, _ in pictures],
        **extra,
    }


@dataclass
class KeyframePolicy(ArtifactPolicy):
    """A shot's key holds the references it is conditioned on (by their files' hashes); a shot
    with none keeps the key it had before references existed."""

    def content(self, inputs: dict[str, Any]) -> dict[str, Any]:
        content = super().content(inputs)
        if not content.get("references"):
            content.pop("references", None)
        return content


# The shot's index only names it (progress, faults, logs): the artifact depends on content.
@task(name="keyframe", cache_policy=KeyframePolicy(stage="keyframe", version=STAGE_VERSION, labels=("index",)),
      retry_condition_fn=gpu.retry_on_oom)
def keyframe_task(shot: dict, index: int, settings: dict, models_used: dict,
                  references: list[CastResult] | None = None) -> KeyframeResult:
    """`shot`: prompt, prompt_2, description, negative_prompt and seed; `references`: the cast
    references of the members the shot shows (tasks/stages/cast.py)."""
    return KeyframeResult.of(gpu.run_gpu_stage("keyframe", index, settings, lambda directory, applied: keyframe(
        shot, index, applied, directory, references or [])))
