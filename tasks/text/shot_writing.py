"""What the shot writer asks a language model for, and how its answer becomes a shot's prompts.

The model writes, for one shot at a time, a JSON object with the fields of `ShotDescription`
(what the camera sees, not what the narration says). Generation is constrained to
`description_schema()` (the shot writer's backend), so the text always parses; what can still
be wrong is caught by `read_description` (an empty field, a field of whitespace): such a shot
keeps the rules prompt and the reason is recorded.

The model's words never decide alone what reaches the picture model: `shot_prompts` puts the
shot's cast descriptions and the story's style in itself, through the same 77-token fitting as
the rules prompts (tasks/text/prompts.py), so the CLIP prompt is within 77 tokens whatever the
model wrote, and the T5/UMT5 description holds everything whole.
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from faceless.tasks.text.prompts import MAX_TOKENS, ShotPrompt, join_parts, count_tokens, fit

FIELDS = ("subject", "action", "setting", "camera", "motion", "prompt", "description")


class ShotDescription(BaseModel):
    """One shot's visual description as the writer wrote it (shots.json and manifest carry it)."""

    model_config = ConfigDict(extra="forbid")

    subject: str  # who or what is seen
    action: str  # what they are doing in this shot
    setting: str  # where, at what time, in what light
    camera: str  # shot size and angle: "close-up, low angle"
    motion: str  # how the picture moves: "slow push-in", "she turns to the window"
    prompt: str  # a short picture prompt for CLIP (the fitting below keeps it within 77 tokens)
    description: str  # a longer description for the T5/UMT5 encoders (FLUX, Wan)

    @field_validator(*FIELDS)
    @classmethod
    def _words(cls, value: str) -> str:
        value = " ".join(value.split())  # a model's newlines and runs of spaces are not meaning
        if not value:
            raise ValueError("empty")
        return value


def description_schema(max_chars: int) -> dict:
    """The JSON schema generation is constrained to: every field a string of 1 to `max_chars`
    characters, no other keys. The length bound matters: it is what makes even a random-weight
    model finish the object within a bounded number of tokens."""
    field = {"type": "string", "minLength": 1, "maxLength": max_chars}
    return {"type": "object", "properties": {name: dict(field) for name in FIELDS},
            "required": list(FIELDS), "additionalProperties": False}


def read_description(text: str) -> tuple[ShotDescription | None, str | None]:
    """(the description, None), or (None, why it is unusable) for the log and the manifest."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        return None, f"not JSON ({error.msg} at character {error.pos})"
    try:
        return ShotDescription.model_validate(data), None
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the object"
        return None, f"{where}: {first['msg']}"


SYSTEM = ("You write storyboards for short vertical videos. For one shot of a narrated story you "
          "describe what the camera sees: concrete, visible things only (people, places, objects, "
          "light), never sounds, thoughts or the narration's own words. Answer with one JSON object.")


def messages(*, story: str, shot_text: str, cast: dict[str, str], setting: str, style: str,
             max_chars: int) -> list[dict]:
    """The chat for one shot: the whole story for context, the shot's own sentence, who is in
    it and how they look, the story's setting and style, and what each field means."""
    people = "\n".join(f"- {name}: {looks}" for name, looks in cast.items()) or "- nobody named"
    fields = (
        "subject: who or what is seen; action: what they do in this shot; setting: where, when, "
        "which light; camera: shot size and angle; motion: how the picture moves; prompt: a "
        "comma-separated picture prompt of at most 40 words; description: two or three sentences "
        f"describing the frame in detail. Each field at most {max_chars} characters.")
    user = (f"Story:\n{story}\n\nThe shot's narration: {shot_text}\n\nPeople in this shot:\n{people}\n\n"
            f"Setting of the story: {setting or 'not given'}\nVisual style: {style or 'not given'}\n\n"
            f"Fields: {fields}")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def shot_prompts(written: ShotDescription, cast: list[str], style: str) -> ShotPrompt:
    """The shot's prompts from the writer's description: its CLIP prompt, the cast descriptions,
    its setting and the story's style, within 77 tokens; and the long description, every part
    whole. What the model wrote is what gives way: when all of it does not fit, encoder 2 (bigG,
    the pooled embedding, the refiner's only encoder) keeps the style, then each cast member
    whole, then the setting and the prompt; encoder 1 keeps the cast, then the prompt, then the
    setting. So the cast and the style are whole in one of the two whenever they fit at all."""
    parts = [written.prompt.rstrip(".,;: "), *cast, written.setting, style]
    full = join_parts(parts)
    if count_tokens(full) <= MAX_TOKENS:
        fitted = ShotPrompt(full, "", count_tokens(full), full)
    else:
        n, members = len(parts), list(range(1, len(parts) - 2))
        prompt = fit(parts[:-1], [*members, 0, n - 2])
        prompt_2 = fit(parts, [n - 1, *reversed(members), n - 2, 0])
        fitted = ShotPrompt(prompt, prompt_2, max(count_tokens(prompt), count_tokens(prompt_2)), full)
    long = ". ".join(p.rstrip(". ") for p in (
        written.description, f"{written.subject}, {written.action}", written.setting, *cast,
        f"{written.camera}, {written.motion}", style) if p)
    return ShotPrompt(fitted.prompt, fitted.prompt_2, fitted.tokens, long)
