"""Cast: one reference picture per cast member, for the keyframes of the shots that show them.

A member with an `image` in the story's front matter is given: the picture is copied into the
store as it is (its sha256 goes into the manifest). Otherwise the profile's keyframe backend
draws one from the member's description: a neutral full-figure portrait in the story's style,
on the story's seed. The keyframe stage then conditions each shot on the references of the
members it shows (`shot_references`): through SDXL's IP-Adapter (studio, tasks/backends/sdxl.py),
or drawn by FLUX.2 [klein] from them (modern, tasks/backends/flux2_klein.py). A reference is
always drawn by the section's own backend (modern: FLUX.1-schnell), never by klein.

Each member is its own task and artifact, keyed only by what their picture is made from (the
description or the image's bytes, style, seed, negative prompt, the keyframe settings and
models): changing one member's description remakes that member's reference alone.

The stage runs only for a keyframe backend that takes references (`takes_references`); the
picture check (`check_image`) is preflight's, before any work.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import task

from faceless.tasks import models
from faceless.tasks.backends import base as backends
from faceless.tasks.runtime import gpu, store
from faceless.tasks.runtime.caching import ArtifactPolicy, run_stage
from faceless.tasks.runtime.progress import Progress
from faceless.tasks.stages.keyframe import reference_backend
from faceless.tasks.stages.results import CastResult

STAGE_VERSION = 1

# A reference should show the whole person plainly: the IP-Adapter carries over what the picture
# shows, so a busy background or a cropped face would carry over too.
PORTRAIT = "full-figure portrait of {description}, standing, facing the camera, plain neutral background, even light"


class CastImageError(ValueError):
    """A cast member's picture that is missing or not a picture."""


def check_image(name: str, path: str | Path) -> Path:
    """The member's picture, refused in one line when missing or not a picture PIL can read."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path).expanduser()
    if not path.is_file():
        raise CastImageError(f"cast image for {name} not found: {path}")
    try:
        with Image.open(path) as image:
            image.verify()  # reads the whole file: a truncated or fake picture fails here
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise CastImageError(f"cast image for {name} is not a picture: {path} ({error})") from None
    return path


def takes_references(keyframe: dict) -> bool:
    """Whether the keyframe stage is conditioned on cast references with these settings: its
    backend takes them itself (SDXL's IP-Adapter), or its `references` name a backend that
    draws the shots showing cast members (FLUX.1-schnell's, naming klein)."""
    if reference_backend(keyframe):
        return True
    return bool(getattr(backends.get(keyframe["backend"]), "REFERENCES", False) and keyframe.get("references"))


def cast_members(descriptions: dict[str, str], images: dict[str, str]) -> list[dict]:
    """The cast task's input per member, in front matter order; `image`: an absolute path or None."""
    return [{"name": name, "description": looks, "image": images.get(name)} for name, looks in descriptions.items()]


def shot_references(shot_cast: list[str], references: dict[str, CastResult]) -> list[CastResult]:
    """The references a shot is conditioned on: those of the members it shows, in its order."""
    return [references[name] for name in shot_cast if name in references]


@dataclass
class CastPolicy(ArtifactPolicy):
    """The key of what the picture is made from: the description, or the image's bytes wherever
    the file is; never the member's name or index, nor the keyframe stage's own reference
    settings nor the models they bring (the IP-Adapter, klein: the reference is drawn without
    references, by the section's own backend)."""

    def content(self, inputs: dict[str, Any]) -> dict[str, Any]:
        member = inputs["member"]
        if member["image"]:
            return {"image_sha256": store.file_sha256(Path(member["image"]))}
        settings = {k: v for k, v in inputs["settings"].items() if k != "references"}
        left_out = {"ip_adapter", reference_backend(inputs["settings"])}
        identity = {k: v for k, v in inputs["models_used"].items() if k not in left_out}
        return {"description": member["description"], "style": inputs["style"], "seed": inputs["seed"],
                "negative_prompt": inputs["negative_prompt"], "settings": settings, "models_used": identity}


def take_image(path: str, directory: Path) -> dict:
    """Copy the user's picture into the artifact as it is."""
    source = Path(path)
    # The artifact's file name is ours: only the suffix comes from the user's file, kept safe.
    suffix = source.suffix.lower() if re.fullmatch(r"\.[a-z0-9]{1,10}", source.suffix.lower()) else ".image"
    shutil.copyfile(source, directory / f"reference{suffix}")
    return {"source": "given", "file": f"reference{suffix}",
            "sha256": store.file_sha256(directory / f"reference{suffix}")}


def draw(member: dict, index: int, settings: dict, style: str, seed: int, negative_prompt: str,
         directory: Path) -> dict:
    """Draw the member's reference with the keyframe backend, as a keyframe of a shot of its own."""
    prompt = PORTRAIT.format(description=member["description"] or member["name"])
    shot = {"prompt": f"{prompt}, {style}" if style else prompt, "prompt_2": style or prompt,
            "description": prompt, "negative_prompt": negative_prompt, "seed": seed}
    backend = backends.get(settings["backend"])
    progress = Progress(f"denoise-cast-{index:02d}", f"Cast {member['name']}: {backend.LABEL} denoising",
                        settings["num_inference_steps"])
    image, extra = backend.make_keyframe(shot, index, settings, progress, models)
    progress.update(progress.total)
    image.save(directory / "reference.png")
    return {"source": "drawn", "file": "reference.png", "sha256": store.file_sha256(directory / "reference.png"),
            "prompt": shot["prompt"], "seed": seed, "placement": extra.get("placement")}


# `index` only names the task (progress, faults, logs).
@task(name="cast", cache_policy=CastPolicy(stage="cast", version=STAGE_VERSION, labels=("index",)),
      retry_condition_fn=gpu.retry_on_oom)
def cast_task(member: dict, index: int, settings: dict, style: str, seed: int, negative_prompt: str,
              models_used: dict) -> CastResult:
    """`member`: name, description and image (a checked absolute path, or None); `settings`:
    the keyframe stage's."""
    if member["image"]:  # given: no model runs
        ref = run_stage("cast", lambda directory: take_image(member["image"], directory))
    else:
        ref = gpu.run_gpu_stage("cast", index, settings, lambda directory, applied: draw(
            member, index, applied, style, seed, negative_prompt, directory))
    return CastResult.of(ref, name=member["name"], description=member["description"])
