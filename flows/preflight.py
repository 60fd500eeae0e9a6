"""One check of a render's inputs, before any stage runs and before anything is written.

The CLI runs it before Prefect starts (a bad input is one line on stderr and exit status 2,
in well under a second), `faceless resume` runs it on the old run's parameters, and the flow
runs it first thing, so a deployment run (which never passes through the CLI) is refused with
the same one-line message before any task runs. Every error is a ValueError (StoryError,
ProfileError, OutputError, ...) or a ModelMissingError, with a one-line message.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from faceless.flows import roots
from faceless.flows.deliver import output_folder
from faceless.flows.review import read_edits
from faceless.tasks import models
from faceless.tasks.media.captions import check_fonts
from faceless.tasks.media.music import check_music
from faceless.tasks.backends import base as backends, voices
from faceless.tasks.runtime.gpu import parse_faults
from faceless.tasks.settings import load_profile
from faceless.tasks.stages.cast import check_image
from faceless.tasks.stages.narrate import voice_identity
from faceless.tasks.stages.plan import StoryError, language_of, normalise_story, read_story_file, split_front_matter
from faceless.tasks.text.language import StoryLanguage, primary


@dataclass
class Checked:
    """What the checks read, so the flow does not read it twice."""
    text: str  # the story as given, front matter included (the plan stage parses it)
    title: str  # the story file's name, when the story came as a file ("" otherwise)
    settings: dict  # the resolved profile, its narrate voice chosen for the story's language
    identities: dict  # model identity per stage (for the cache keys)
    language: StoryLanguage  # as the plan stage will find it
    # cast member -> the absolute path of their picture (front matter `image`), checked
    cast_images: dict[str, str] = field(default_factory=dict)


def story_input(story: str | None, story_file: str | None) -> tuple[str, str | None]:
    """The story text and its title (the file's name), from exactly one of the two (an empty
    string, as the run form sends for an untouched box, is not given)."""
    if bool(story) == bool(story_file):
        raise StoryError("give exactly one of story (the text) or story_file (a path)")
    if story_file:
        roots.check("story_file", story_file)
        return read_story_file(story_file), Path(story_file).stem.replace("_", " ")
    return story, None


def model_identities(profile: dict) -> dict:
    """Model identity per stage (part of the cache keys). Fails first, in seconds, naming
    every model whose weights are not on this machine."""
    models.require(profile)
    align = profile["align"]
    writer = profile["storyboard"]
    return {
        "storyboard": models.identity(writer["model"], "transformers") if writer["writer"] == "llm" else "rules",
        "narrate": voice_identity(profile["narrate"]),
        "align": (models.identity(align["model"], "ctranslate2") if align["backend"] == "faster-whisper"
                  else "the voice's own word times"),
        "keyframe": keyframe_identity(profile["keyframe"]),
        # Keyed by backend: svd's key is what it always was, so studio's caches stay valid.
        "animate": {profile["animate"]["backend"]: models.identity(profile["animate"]["model"])},
    }


def for_language(settings: dict, language: str, voice: str = "") -> dict:
    """The profile for a story in `language`: narrate becomes the section of the voice that
    reads it (tasks/backends/voices.py; a one-line VoiceError when none does), and a Whisper
    aligner that is not told a language is told the story's."""
    settings = {**settings, "narrate": voices.choose(settings["narrate"], language, voice, settings["name"])}
    align = settings["align"]
    if align["backend"] == "faster-whisper" and not align.get("language"):
        from faster_whisper.tokenizer import _LANGUAGE_CODES

        # Whisper knows languages by their two-letter codes; one it does not know is detected.
        settings["align"] = {**align, "language": primary(language) if primary(language) in _LANGUAGE_CODES else None}
    return settings


def keyframe_identity(keyframe: dict) -> dict:
    """The keyframe models' identities: SDXL's two (as before backends; and its IP-Adapter when
    it takes cast references), else the backend's one, and the one of the backend its
    `references` name (modern's klein), by backend."""
    if keyframe["backend"] == "sdxl-ensemble":
        found = {role: models.identity(keyframe[role]) for role in ("base", "refiner")}
        if keyframe.get("references"):
            found["ip_adapter"] = models.identity(keyframe["references"]["ip_adapter"], "ip-adapter")
        return found
    found = {keyframe["backend"]: models.identity(keyframe["model"])}
    references = backends.reference_section(keyframe)
    if references:
        found[references["backend"]] = models.identity(references["model"])
    return found


def for_cast(settings: dict, cast: dict) -> dict:
    """The profile for a story with or without a cast: a story with none has no use for the
    backend a keyframe section's `references` name (modern's klein), so the subsection is left
    out, and that model's weights are neither needed nor checked. (Studio's IP-Adapter, which
    loads into SDXL itself, stays as it always was.)"""
    if cast or backends.reference_section(settings["keyframe"]) is None:
        return settings
    return {**settings, "keyframe": {k: v for k, v in settings["keyframe"].items() if k != "references"}}


def cast_images(text: str, story_file: str | None) -> dict[str, str]:
    """The cast's pictures (front matter `image`), each relative to the story file (to the
    working folder for a story given as text), checked against the roots and opened: a missing
    or unreadable picture is refused in one line naming it."""
    front, _ = split_front_matter(text)
    folder = Path(story_file).parent if story_file else Path(".")
    found = {}
    for name, image in front.cast_images.items():
        path = folder / Path(image).expanduser()
        roots.check(f"cast image for {name}", path)
        found[name] = str(check_image(name, path).resolve())
    return found


def preflight(story: str | None = None, story_file: str | None = None, profile: str = "offline",
              out: str = "./out", size: str | None = None, music: str | None = None,
              profile_file: str = "", voice: str = "", review: bool = False, review_edits: str = "") -> Checked:
    """Check the flow's parameters (the same names and defaults as story_to_video's; empty
    text is not given, and profile_file, when given, is used instead of profile); raises with
    a one-line message at the first problem. Writes nothing. `voice` reads the story in that
    voice whatever its language (a voice of the profile's narrate backend, or espeak:<voice>)."""
    roots.refuse_job_variables()  # a deployment run cannot widen the worker's roots
    text, title = story_input(story, story_file)
    front, body = split_front_matter(text)
    pictures = cast_images(text, story_file)
    # Fonts are checked on the text the captions will draw: normalised, as the plan stage does.
    body = normalise_story(body)
    output_folder(out)
    source = profile_file or profile
    if source.endswith((".yaml", ".yml")) or profile_file:  # a file of the caller's, not an installed one
        roots.check("profile_file", source)
    settings = load_profile(source, size or None)
    language = language_of(text)
    settings = for_cast(for_language(settings, language.tag, voice), {**front.cast, **front.cast_images})
    roots.check_profile(settings)  # every model folder and font file the profile names
    try:
        identities = model_identities(settings)  # every missing model named at once
    except models.ModelMissingError as error:
        # Which voice would read this story, so the download fetches the right one.
        raise models.ModelMissingError(f"{error}; this story is in {language.tag} ({language.source}), "
                                       f"read by {voices.describe(settings['narrate'])}") from None
    check_fonts(body, settings["compose"]["captions"])
    if music:
        roots.check("music", music)
        check_music(music)
    if review_edits:  # a bad edit file is refused now, not after the keyframes
        roots.check("review_edits", review_edits)
        read_edits(review_edits)
    parse_faults(os.environ.get("FACELESS_FAULT", ""))  # a test's injected fault, checked here, not mid-run
    return Checked(text, title or "", settings, identities, language, pictures)
