"""What each stage task returns: a small typed result, the artifact's reference plus what the
flow needs from it (the plan's sentences, the storyboard's shots, the narration's length), so
the flow wires stages together without opening a file.

A stage builds its result from what it has in memory when it writes its files; when the store
already had the artifact (an earlier run, another machine), the stage reads it back from the
artifact's own files. Either way the result describes the files on disk, never more.

These are the records Prefect keeps for the stages' cache (in FACELESS_HOME/prefect-results or
the bucket): plain pydantic models, nested models only, every field JSON-serialisable, and all
of them in modules under `faceless.tasks.stages`. A result enters a downstream stage's cache key
by its reference alone (`store.as_ref`): the keys are those of the plain references before.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from faceless.tasks.runtime import store


class ArtifactRef(BaseModel):
    """The store's reference to one artifact (store._ref): stage and key, its files by content
    hash, the stage's metadata and how it was made. No absolute path: FACELESS_HOME may move."""

    kind: Literal["artifact"] = "artifact"
    stage: str
    key: str
    files: dict[str, str]
    meta: dict[str, Any] = Field(default_factory=dict)
    seconds: float = 0.0
    attempts: int = 1
    degraded: dict[str, Any] | None = None
    rendered_by: str | None = None
    cached: bool = True  # the store already had it (this task did not build it)

    @field_validator("meta", "degraded", mode="before")
    @classmethod
    def _as_in_the_manifest(cls, value: Any) -> Any:
        # As manifest.json holds them (lists, not tuples; plain floats): a result is the same
        # whether its stage just built the artifact or found it in the store.
        return json.loads(json.dumps(value)) if value is not None else None


class StageResult(BaseModel):
    """A stage's artifact (`ref`), with its cache `key`, its `meta` and `path(name)` for a file
    in it. Subclasses add what the flow needs from the stage."""

    model_config = ConfigDict(extra="forbid")

    ref: ArtifactRef

    @property
    def key(self) -> str:
        return self.ref.key

    @property
    def meta(self) -> dict[str, Any]:
        return self.ref.meta

    def path(self, name: str) -> Path:
        """A file of the artifact on this machine (fetched first from an s3:// store)."""
        return store.path_of(self.ref.model_dump(), name)

    @classmethod
    def of(cls, ref: dict, **fields: Any):
        """The result for a reference from the store (run_stage, store.produce)."""
        return cls(ref=ArtifactRef.model_validate(ref), **fields)


class Sentence(BaseModel):
    index: int
    text: str
    words: list[str]


class PlanResult(StageResult):
    """plan.json: the story's front matter (or the profile's defaults) and its sentences."""

    title: str
    slug: str
    style: str
    setting: str
    cast: dict[str, str]
    seed: int
    negative_prompt: str
    sentences: list[Sentence]
    language: str = "en"  # BCP 47 (plan.json files written before languages were English)
    language_source: str = "front matter"  # or "detected"

    def voice_lines(self) -> list[dict]:
        """The sentences as narrate takes them (and as its cache key has always held them)."""
        return [sentence.model_dump() for sentence in self.sentences]

    @property
    def word_count(self) -> int:
        return sum(len(sentence.words) for sentence in self.sentences)


class NarrationResult(StageResult):
    """narration.wav and words.json (the voice's word times, when it gives them)."""

    duration: float  # seconds of narration: the video is exactly this long


class AlignmentResult(StageResult):
    """words.json (the story's words on the narration's clock), subtitles.srt and subtitles.vtt."""


class Shot(BaseModel):
    """One shot of shots.json (tasks/stages/storyboard.py's Shot)."""

    index: int
    sentences: list[int]
    words: tuple[int, int]  # story word indexes [first, last + 1)
    text: str
    start: float
    end: float
    cast: list[str]
    prompt: str
    prompt_2: str
    prompt_tokens: int
    description: str
    negative_prompt: str
    seed: int
    # Who wrote the prompts: "rules" (tasks/text/prompts.py) or "llm" (tasks/stages/writer.py);
    # why a shot the model was asked for kept the rules prompt; what the model wrote.
    writer: str = "rules"
    writer_note: str | None = None
    visual: dict[str, str] | None = None  # subject, action, setting, camera, motion, prompt, description
    edited: bool = False  # a person changed its prompt or seed in the storyboard review


KEYFRAME_INPUTS = ("prompt", "prompt_2", "description", "negative_prompt", "seed")


class Storyboard(StageResult):
    """shots.json: the narration cut into shots, each with its prompts and seed."""

    shots: list[Shot]

    @property
    def indexes(self) -> list[int]:
        return [shot.index for shot in self.shots]

    @property
    def starts(self) -> list[float]:
        return [shot.start for shot in self.shots]

    @property
    def seeds(self) -> list[int]:
        return [shot.seed for shot in self.shots]

    @property
    def descriptions(self) -> list[str]:
        return [shot.description for shot in self.shots]

    def keyframe_inputs(self) -> list[dict]:
        """What each shot's keyframe is made from (its cache key holds exactly these)."""
        return [shot.model_dump(include=set(KEYFRAME_INPUTS)) for shot in self.shots]


class CastResult(StageResult):
    """reference.png (drawn) or reference.<ext> (the user's picture): one cast member's reference."""

    name: str
    description: str

    @property
    def file(self) -> str:
        """The reference picture's name in the artifact."""
        return self.meta["file"]

    @property
    def picture(self) -> Path:
        """The reference picture on this machine (fetched first from an s3:// store)."""
        return self.path(self.file)

    def summary(self) -> dict:
        """What the manifest records about the member's reference."""
        return {"description": self.description, "source": self.meta["source"], "sha256": self.meta["sha256"],
                "key": self.key}


class KeyframeResult(StageResult):
    """keyframe.png, one shot's picture."""


class ClipResult(StageResult):
    """clip.mp4 (and frames/), one shot's motion at the output size and frame rate."""


class VideoResult(StageResult):
    """video.mp4, the finished video."""


class MusicResult(StageResult):
    """The user's music file, copied into the store under its content's key."""

    @property
    def file(self) -> str:
        """The music file's name in the artifact (music.<its extension>)."""
        [name] = self.ref.files
        return name
