"""Every section and key a profile may set, with its type and its default.

Defaults live in the schema and nowhere else (here, and in the backends' own sections: see
below). A profile is resolved once (tasks/settings.py) into a
plain dict holding every key, and the stages read `settings["key"]` from it: so a default is
part of the settings each task gets, hence of its cache key and of the manifest, and changing
a default here makes the stages it touches run again.

A key with no default is one the code never had a fallback for: the profile must set it.
Unknown keys are refused (`extra="forbid"`), so a typo cannot silently fall back to a default.

The sections of the backends (the narrate, align, keyframe and animate settings of each model
family) live in the backends' modules, with the published models' own defaults
(tasks/backends/base.py); this module joins them, by stage, through the registry.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, BeforeValidator, Discriminator, Field, Tag

from faceless.tasks.backends import base as backends
from faceless.tasks.profile_sections import Section


# -- plan -------------------------------------------------------------------------------------

class ShotSeconds(Section):
    target: float = 4.0  # a shot spoken for less than half of this joins a neighbour
    max: float = 6.0  # a sentence spoken longer is cut between two words


class Plan(Section):
    shot_seconds: ShotSeconds = ShotSeconds()
    seed: int = 0  # a shot's seed is this plus a hash of its words (front matter `seed` overrides)
    style: str = ""  # front matter `style` replaces it
    negative_prompt: str = ""


# -- the backends' sections ----------------------------------------------------------------------
# Each backend's section is its module's SETTINGS (tasks/backends/base.py); a stage's section is
# the union of its backends' sections, told apart by `backend`. Narrate sections each take
# `voices`, the voice for each language (tasks/backends/voices.py); `voice` (Bark:
# `voice_preset`), when set, reads every language.

def _sections(stage: str) -> tuple[type[BaseModel], ...]:
    return tuple(backends.get(name).SETTINGS for name in backends.names(stage))


def _backend_or(default: str):
    """A discriminator that reads `backend`, or takes `default` when a profile leaves it out
    (profiles written before there was a choice)."""
    def tag(value):
        found = value.get("backend") if isinstance(value, dict) else getattr(value, "backend", None)
        return found or default
    return Discriminator(tag)


def _tagged(stage: str):
    """The stage's union where a profile may leave `backend` out: it then means the stage's
    first backend in the registry (the one there was before there was a choice)."""
    names = backends.names(stage)
    members = tuple(Annotated[backends.get(name).SETTINGS, Tag(name)] for name in names)
    return Annotated[Union[members], _backend_or(names[0])]


# The storyboard's section is its one model backend's, the shot writer's: `writer: rules` (the
# default) leaves the model unused.
(StoryboardWriter,) = _sections("storyboard")
_NARRATE, _ALIGN = _sections("narrate"), _sections("align")
Narrate = Annotated[Union[_NARRATE], Field(discriminator="backend")]


class VoiceAlign(Section):
    """Subtitles timed by the voice's own word times (Piper) or estimates (Bark)."""
    backend: Literal["voice"] = "voice"


Align = Annotated[Union[(VoiceAlign, *_ALIGN)], Field(discriminator="backend")]
Keyframe = _tagged("keyframe")
Animate = _tagged("animate")


class Memory(Section):
    release_between_stages: bool = False  # one model family on the GPU at a time


# -- compose ----------------------------------------------------------------------------------

class Loudness(Section):
    target_lufs: float = -14.0
    true_peak_db: float = -1.0


class Music(Section):
    level_db: float = -12.0  # relative to the voice's loudness
    duck_db: float = -10.0  # lower still while the voice speaks
    attack_s: float = 0.1
    release_s: float = 0.5


def _a_list(value):
    return [value] if isinstance(value, str) else value


class Captions(Section):
    # Each character is drawn with the first font that has it.
    fonts: Annotated[list[str], BeforeValidator(_a_list), Field(min_length=1)] = [
        "NotoSans[wdth,wght].ttf", "NotoSansArabic[wdth,wght].ttf", "NotoSansCJKjp-Bold.otf"]
    weight: str | None = None  # a variable font's named instance
    size: int  # for a 720-wide frame, scaled with the frame
    color: str
    highlight: str  # the word being spoken
    outline: str
    outline_width: int = 4
    max_words: int = 4
    bottom_margin: float = 0.22  # fraction of the height kept clear of the apps' own UI


class Compose(Section):
    width: int
    height: int
    fps: int
    transition_s: float = 0.0  # cross-fade between shots
    video_codec: str
    preset: str
    crf: int
    maxrate: str | int | None = None  # a bitrate cap for x264 (e.g. 12M), with its VBV buffer
    bufsize: str | int | None = None  # None: the same as maxrate
    audio_bitrate: str | int
    audio_rate: int
    audio_channels: int = 1
    loudness: Loudness = Loudness()
    music: Music = Music()
    captions: Captions


class Profile(Section):
    name: str | None = None  # None: the file's name
    description: str = ""
    plan: Plan
    storyboard: StoryboardWriter = StoryboardWriter()
    narrate: Narrate
    align: Align = VoiceAlign()
    keyframe: Keyframe
    animate: Animate
    memory: Memory = Memory()
    compose: Compose
