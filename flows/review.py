"""Storyboard review: a person sees every shot's words, times, prompt, seed and keyframe, and
approves or changes prompts and seeds, after the keyframes and before animation (the expensive
part) starts.

- A deployment run suspends (`suspend_flow_run(wait_for_input=...)`): its process ends, so no
  worker slot and no GPU is held while a person looks. The run page shows the storyboard as a
  markdown artifact (`<slug>-storyboard`, keyframes as JPEG data URIs, flows/report.py), and
  the UI's Resume form, built from `review_form(board)`, has each shot's prompt filled in and a
  "new seed" box. On resume the run starts from the top: every finished stage comes back Cached,
  `suspend_flow_run` with the same key hands back the submitted form, and only the shots whose
  prompt or seed changed get new keyframes (their keys hold prompt and seed). If anything
  changed, the review shows again (key `review-1`, `review-2`...) with the new keyframes.
- With cast references, both show the cast sheet above the shots (each member's reference
  picture and description, flows/report.py) and the members each shot shows.
- `faceless render --review` prints the same storyboard on stderr with the keyframes' paths and
  takes edits from a file (`--review-edits FILE`, or a path typed at the prompt; Enter
  approves). A file is applied once: the run then continues with it.

An edit file is YAML (or JSON), by shot index as the storyboard shows it:

    2:
      prompt: a lighthouse at dusk, waves breaking, wide shot
    4:
      new_seed: true
    5:
      seed: 1234
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, NamedTuple

import yaml
from prefect.futures import wait
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from faceless.tasks.stages.cast import shot_references
from faceless.tasks.stages.results import CastResult, Storyboard
from faceless.tasks.text.prompts import MAX_TOKENS, count_tokens, fit

REVIEW_TIMEOUT_S = 7 * 24 * 3600  # how long a suspended run waits for a person before it fails
NEW_SEED_STEP = 0x9E3779B9  # "a new seed" is this much further on: the same request, the same seed


class ReviewError(ValueError):
    """An edit file that cannot be applied (bad YAML, an unknown shot, an empty prompt)."""


class ShotEdit(BaseModel):
    """What a person changed in one shot."""

    model_config = ConfigDict(extra="forbid")

    prompt: str | None = Field(None, min_length=1)
    seed: int | None = Field(None, ge=0, lt=2**32)
    new_seed: bool = False

    def changes(self) -> bool:
        return self.prompt is not None or self.seed is not None or self.new_seed


def parse_edits(text: str, source: str = "edits") -> dict[int, ShotEdit]:
    """{shot index: edit} from an edit file's text; raises ReviewError with one line."""
    try:
        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as error:
        raise ReviewError(f"{source}: not YAML or JSON ({str(error).splitlines()[0]})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ReviewError(f"{source}: expected a mapping of shot index to its edit, e.g. `2: {{prompt: ...}}`")
    edits = {}
    for key, value in data.items():
        try:
            index = int(key)
        except (TypeError, ValueError):
            raise ReviewError(f"{source}: {key!r} is not a shot index") from None
        try:
            edits[index] = ShotEdit.model_validate(value or {})
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ReviewError(f"{source}: shot {index}{' ' + where if where else ''}: {first['msg']}") from None
    return {index: edit for index, edit in edits.items() if edit.changes()}


def read_edits(path: str) -> dict[int, ShotEdit]:
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ReviewError(f"review edits file {path}: {getattr(error, 'strerror', None) or error}") from None
    return parse_edits(text, f"review edits file {path}")


def apply_edits(board: Storyboard, edits: dict[int, ShotEdit]) -> Storyboard:
    """The storyboard with the edits applied: an edited prompt goes to both CLIP encoders (cut at
    a word to 77 tokens if longer) and, whole, to the long description; `edited` is set."""
    indexes = set(board.indexes)
    unknown = sorted(set(edits) - indexes)
    if unknown:
        raise ReviewError(f"no shot {', '.join(map(str, unknown))} in this storyboard "
                          f"(its shots are {min(indexes)}-{max(indexes)})")
    shots = []
    for shot in board.shots:
        edit = edits.get(shot.index)
        if edit is None or not edit.changes():
            shots.append(shot)
            continue
        changed: dict = {"edited": True}
        if edit.prompt is not None and edit.prompt.strip() != shot.prompt:
            text = " ".join(edit.prompt.split())
            prompt = text if count_tokens(text) <= MAX_TOKENS else fit([text], [0])
            changed.update(prompt=prompt, prompt_2="", prompt_tokens=count_tokens(prompt), description=text)
        if edit.seed is not None:
            changed["seed"] = edit.seed
        elif edit.new_seed:
            changed["seed"] = (shot.seed + NEW_SEED_STEP) % 2**32
        shots.append(shot.model_copy(update=changed) if len(changed) > 1 else shot)
    return board.model_copy(update={"shots": shots})


# -- the Prefect UI's Resume form -------------------------------------------------------------------

def review_form(board: Storyboard):
    """A RunInput model with a text box per shot, holding its prompt, and a "new seed" box: the
    UI draws the Resume form from it. Made the same way from the same storyboard, so a run that
    starts again after the resume reads the submitted form back with it."""
    from prefect.input import RunInput

    fields: dict = {}
    for shot in board.shots:
        fields[f"shot_{shot.index}_prompt"] = (str, Field(
            shot.prompt, title=f"Shot {shot.index} prompt",
            description=f"{shot.start:.2f}-{shot.end:.2f} s: “{shot.text}”"))
        fields[f"shot_{shot.index}_new_seed"] = (bool, Field(
            False, title=f"Shot {shot.index}: new seed", description=f"now {shot.seed}"))
    return create_model("StoryboardReview", __base__=RunInput, **fields)


def edits_from_form(board: Storyboard, answer) -> dict[int, ShotEdit]:
    edits = {}
    for shot in board.shots:
        prompt = " ".join(str(getattr(answer, f"shot_{shot.index}_prompt")).split())
        edit = ShotEdit(prompt=prompt if prompt and prompt != shot.prompt else None,
                        new_seed=bool(getattr(answer, f"shot_{shot.index}_new_seed")))
        if edit.changes():
            edits[shot.index] = edit
    return edits


# -- what a person sees -----------------------------------------------------------------------------

def _shown(shot, cast: dict[str, CastResult]) -> list[str]:
    """The names of the cast members whose references a shot's keyframe is conditioned on."""
    return [reference.name for reference in shot_references(shot.cast, cast)]


def storyboard_markdown(board: Storyboard, keyframes: list[Path], title: str, round_: int,
                        cast: dict[str, CastResult] | None = None) -> str:
    """The storyboard for the run page; with cast references, the cast sheet above the shots and
    the members each shot shows."""
    from faceless.flows.report import _cell, cast_table, thumbnail_uri

    cast = cast or {}
    lines = [f"# Storyboard review: {title}" + (f" (round {round_ + 1})" if round_ else ""), "",
             "Approve with **Resume**, or change a shot's prompt or tick its *new seed* in the form: "
             "those shots get new keyframes and the storyboard shows again.", ""]
    if cast:
        shots = {name: [shot.index for shot in board.shots if name in _shown(shot, cast)] for name in cast}
        lines += ["## Cast", "", *cast_table(cast, shots), "", "## Shots", ""]
    # The prompt next to its picture: what a person reviews is in view without scrolling.
    lines += ["| shot | keyframe | prompt | seed | words | times | writer |" + (" cast |" if cast else ""),
              "|---|---|---|---|---|---|---|" + ("---|" if cast else "")]
    for shot, png in zip(board.shots, keyframes):
        prompt = shot.prompt + (f" / second encoder: {shot.prompt_2}" if shot.prompt_2 else "")
        lines.append(f"| {shot.index} | ![shot {shot.index} keyframe]({thumbnail_uri(png)}) | {_cell(prompt)} | "
                     f"{shot.seed} | {_cell(shot.text)} | {shot.start:.2f}-{shot.end:.2f} s | "
                     f"{shot.writer}{' (edited)' if shot.edited else ''} |"
                     + (f" {_cell(', '.join(_shown(shot, cast)) or 'nobody')} |" if cast else ""))
    return "\n".join(lines) + "\n"


def storyboard_text(board: Storyboard, keyframes: list[Path], cast: dict[str, CastResult] | None = None) -> str:
    """The storyboard for a terminal; with cast references, the cast sheet above the shots (each
    member's description and reference picture) and the members each shot shows."""
    cast = cast or {}
    lines = []
    if cast:
        lines.append("cast")
        for name, reference in cast.items():
            lines += [f"  {name}: {reference.description}",
                      f"    reference: {reference.picture} ({reference.meta['source']})"]
        lines.append("")
    for shot, png in zip(board.shots, keyframes):
        lines += [f"shot {shot.index}  {shot.start:.2f}-{shot.end:.2f} s  seed {shot.seed}  writer {shot.writer}"
                  + ("  (edited)" if shot.edited else ""),
                  f"  words:    {shot.text}", f"  prompt:   {shot.prompt}"]
        if shot.prompt_2:
            lines.append(f"  prompt 2: {shot.prompt_2}")
        if cast:
            lines.append(f"  cast:     {', '.join(_shown(shot, cast)) or 'nobody'}")
        lines.append(f"  keyframe: {png}")
    return "\n".join(lines)


# -- in the flow ------------------------------------------------------------------------------------

class Reviewed(NamedTuple):
    board: Storyboard  # as approved, edits applied
    keyframes: list  # the keyframe futures of that storyboard
    stopped: str | None = None  # a local run stopped for review: the storyboard as text


def _pictures(futures) -> list[Path]:
    wait(futures)
    return [future.result().path("keyframe.png") for future in futures]


def review_storyboard(board: Storyboard, keyframes: list, make_keyframes: Callable[[Storyboard], list], *,
                      edits_file: str, slug: str, title: str, cast: dict[str, CastResult] | None = None) -> Reviewed:
    """The storyboard as a person approved it, with its keyframes (unchanged shots come back
    Cached). A file of edits is applied first; then a deployment run suspends for the UI's
    review, again after each round that changed something; a local run without a file stops.
    `cast`: the members' references, {name: CastResult}, shown above the shots."""
    from prefect import get_run_logger
    from prefect.artifacts import create_markdown_artifact
    from prefect.flow_runs import suspend_flow_run
    from prefect.runtime import deployment

    logger = get_run_logger()
    if edits_file:
        edits = read_edits(edits_file)
        board = apply_edits(board, edits)
        keyframes = make_keyframes(board)
        logger.info("storyboard with the edits of %s (shots %s):\n%s", edits_file,
                    ", ".join(map(str, sorted(edits))) or "none", storyboard_text(board, _pictures(keyframes), cast))
        if deployment.id is None:
            return Reviewed(board, keyframes)
    if deployment.id is None:
        return Reviewed(board, keyframes, stopped=storyboard_text(board, _pictures(keyframes), cast))
    round_ = 0
    while True:
        create_markdown_artifact(storyboard_markdown(board, _pictures(keyframes), title, round_, cast),
                                 key=f"{slug}-storyboard",
                                 description=f"Storyboard of {title} for review: {len(board.shots)} shots "
                                             "with their keyframes; Resume approves or edits them")
        # The process ends here until a person resumes the run; it then starts from the top, and
        # this call, with the same key, hands back what the form sent.
        answer = suspend_flow_run(wait_for_input=review_form(board), key=f"review-{round_}",
                                  timeout=REVIEW_TIMEOUT_S)
        edits = edits_from_form(board, answer)
        if not edits:
            logger.info("storyboard approved%s", f" after {round_} rounds of edits" if round_ else "")
            return Reviewed(board, keyframes)
        logger.info("review %d changed shots %s: new keyframes for them", round_ + 1, ", ".join(map(str, sorted(edits))))
        board = apply_edits(board, edits)
        keyframes = make_keyframes(board)
        round_ += 1
