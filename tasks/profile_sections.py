"""What every section of the profile schema is built from, for the schema (tasks/profile_schema.py)
and for the backends, whose own sections live in their modules (tasks/backends/base.py): kept
apart from the schema because the schema imports the backends."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, model_serializer

CLIP_CRF = 14  # a shot's clip is an intermediate that compose re-encodes: near-lossless by default


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RungSection(Section):
    """One rung of a degrade ladder: only the keys it sets. Unset keys are left out of the
    resolved settings, since a rung is applied over the stage's settings with dict.update."""

    @model_serializer(mode="wrap")
    def _only_what_it_sets(self, handler):
        return {key: value for key, value in handler(self).items() if value is not None}


# A narrate section's `voices`: a BCP 47 tag (or `*`, every other language) -> a voice of the
# backend, or `espeak` / `espeak:<voice>` for eSpeak NG (tasks/backends/voices.py).
Voices = dict[str, str]
