"""One interface for the model backends, and the one registry that names them.

A backend is one model family doing one stage's work (docs/architecture.md). Each is a module
in tasks/backends/ that declares what the rest of the code needs to know about it:

    NAME           the profile's `backend` value ("wan", "sdxl-ensemble", ...)
    STAGE          the stage it serves (narrate, align, keyframe, animate)
    FAMILY         its family in the models registry: loaded once, released, placed together
    LABEL          how people call it (progress, summaries)
    SIZE_MULTIPLE  (image and video backends) what width and height must be multiples of

Its components and their parameter bytes come from the published configs through the memory
table (tasks/runtime/memory_table.json, keyed by NAME). Adding a backend is its module plus its
line below.

Not done yet (issue 19): the settings model, identity, load and run are still reached through
the stage modules, the profile schema and tasks/models/loaders.py rather than through here.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Protocol, runtime_checkable


@runtime_checkable
class Backend(Protocol):
    NAME: str
    STAGE: str
    FAMILY: str
    LABEL: str


# NAME -> the module that implements it.
REGISTRY: dict[str, str] = {
    "piper": "faceless.tasks.backends.piper",
    "bark": "faceless.tasks.backends.bark",
    "kokoro": "faceless.tasks.backends.kokoro",
    "espeak": "faceless.tasks.backends.espeak",
    "faster-whisper": "faceless.tasks.backends.whisper_align",
    "sdxl-ensemble": "faceless.tasks.backends.sdxl",
    "flux-schnell": "faceless.tasks.backends.flux",
    "svd": "faceless.tasks.backends.svd",
    "wan": "faceless.tasks.backends.wan",
    "ltx": "faceless.tasks.backends.ltx",
    "shot-writer": "faceless.tasks.backends.shot_llm",
}


def get(name: str) -> ModuleType:
    """The backend module registered as `name`."""
    if name not in REGISTRY:
        raise ValueError(f"unknown backend {name!r} (known: {', '.join(REGISTRY)})")
    module = importlib.import_module(REGISTRY[name])
    if not isinstance(module, Backend) or module.NAME != name:
        raise TypeError(f"{REGISTRY[name]} does not implement the backend {name!r} (tasks/backends/base.py)")
    return module


def names(stage: str | None = None) -> list[str]:
    """Registered backend names, those of `stage` only when given (imports each module)."""
    return [name for name in REGISTRY if stage is None or get(name).STAGE == stage]
