"""Keyframe: one picture per shot.

The profile's `keyframe.backend` (SDXL base and refiner for studio, FLUX.1-schnell for modern,
docs/architecture.md) is found through the registry (tasks/backends/base.py) and called as
`make_keyframe(shot, index, settings, progress, models) -> (image, manifest extras)`.

A shot showing cast members is conditioned on their reference pictures (tasks/stages/cast.py),
handed to a backend that takes them (`REFERENCES`) as `references=[(name, path), ...]`. A section
whose `references` name a backend of their own (modern: FLUX.1-schnell's section names FLUX.2
[klein]) has that backend draw the shots showing cast members, and its own backend the rest
(`drawing_section`); the key holds the backend that draws the shot, and a shot showing nobody
keeps the key it had before references existed.
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


def reference_backend(settings: dict) -> str | None:
    """The backend the section's `references` name (modern's klein), None where they name none
    (studio's IP-Adapter loads into SDXL itself) or are unset."""
    section = backends.reference_section(settings)
    return section["backend"] if section else None


def drawing_section(settings: dict, references: list) -> dict:
    """The settings a shot's keyframe is drawn with: with `references` naming a backend, the
    shots showing cast members (`references` given) get that backend's section at this
    section's size, and the others this section without the subsection; otherwise the section."""
    section = backends.reference_section(settings)
    if section is None:
        return settings
    return section if references else {key: value for key, value in settings.items() if key != "references"}


def drawing_groups(settings: dict, references: list[list]) -> list[tuple[dict, str, list[int]]]:
    """(section, model family, positions of the shots it draws) of each backend that draws some
    of the shots, given each shot's references: the section's own backend first (it drew the
    cast's references), then the one its `references` name."""
    groups: dict[str, tuple[dict, str, list[int]]] = {}
    for position, shot_references in enumerate(references):
        section = drawing_section(settings, shot_references)
        groups.setdefault(section["backend"], (section, backends.get(section["backend"]).FAMILY, []))[2].append(position)
    own = settings["backend"]
    return sorted(groups.values(), key=lambda group: group[0]["backend"] != own)


def drawing_identity(identity: dict, section: dict) -> dict:
    """The identities of the models that draw with `section`: its backend's alone where the
    stage's identities are keyed by backend (FLUX's), else all of them (SDXL's roles)."""
    name = section["backend"]
    return {name: identity[name]} if name in identity else identity


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
        "backend": backend.NAME,  # the backend that drew it (klein for modern's shots with references)
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
        content["settings"] = drawing_section(content["settings"], content.get("references"))
        content["models_used"] = drawing_identity(content["models_used"], content["settings"])
        if not content.get("references"):
            content.pop("references", None)
        return content


# The shot's index only names it (progress, faults, logs): the artifact depends on content.
@task(name="keyframe", cache_policy=KeyframePolicy(stage="keyframe", version=STAGE_VERSION, labels=("index",)),
      retry_condition_fn=gpu.retry_on_oom)
def keyframe_task(shot: dict, index: int, settings: dict, models_used: dict,
                  references: list[CastResult] | None = None) -> KeyframeResult:
    """`shot`: prompt, prompt_2, description, negative_prompt and seed; `references`: the cast
    references of the members the shot shows (tasks/stages/cast.py); `settings`: the stage's
    section, of which the shot is drawn with `drawing_section`."""
    section = drawing_section(settings, references or [])
    return KeyframeResult.of(gpu.run_gpu_stage("keyframe", index, section, lambda directory, applied: keyframe(
        shot, index, applied, directory, references or [])))
