"""What a finished run shows on its Prefect UI page: a markdown summary and a table of stages.

Both are made at flow level from the manifest: a cached task never runs its body, so a
summary made inside the stages would be missing exactly when a re-render is all cache hits.

A render with cast references also gets its cast sheet (`<slug>-cast`): each member's reference
picture, name and description, and whether the picture was drawn or given; the storyboard
review shows the same sheet above its shots (`cast_table`, flows/review.py).

The Prefect UI shows image artifacts only as a link, and it cannot reach files on the
worker's disk. So each keyframe goes into the summary as a small JPEG `data:` URI: the
markdown renderer draws it inline, with nothing to serve and nothing to break when the
store moves. The run page itself lists artifacts by key and description, and renders the
description as markdown in its list view: the summary's description is a one-paragraph
summary with a strip of small keyframes, so the run page shows both without a click
(checked in Chromium by tests/test_deployments.py).
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

from PIL import Image
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from faceless.tasks.backends import base as backends
from faceless.tasks.stages.results import CastResult

THUMB_WIDTH = 180  # in the summary: enough to recognise a shot, a few kB a shot
STRIP_WIDTH = 54   # in the run page's list of artifacts
STRIP_SCENES = 12


def thumbnail_uri(png: Path, width: int = THUMB_WIDTH) -> str:
    with Image.open(png) as image:
        image = image.convert("RGB")
        height = max(1, round(image.height * width / image.width))
        small = image.resize((width, height), Image.LANCZOS)
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _motion(shot: dict, backend: str, fps: int) -> str:
    """How a shot was animated: as the backend tells it (SVD's windows), or one native pass."""
    module = backends.get(backend) if backend in backends.REGISTRY else None
    if hasattr(module, "motion_note"):
        return module.motion_note(shot)
    return f"one {module.LABEL if module else backend} pass at {fps} fps"


def _stage_name(row: dict) -> str:
    return row["stage"] if row["scene"] is None else f"{row['stage']}[{row['scene']}]"


def summary_markdown(manifest: dict, target: Path) -> str:
    story, video, stages = manifest["story"], manifest["video"], manifest["stages"]
    cached = sum(1 for r in stages if r["cached"])
    retried = [r for r in stages if r["attempts"] > 1 or r["degraded"]]
    lines = [
        f"# {story['title']}",
        "",
        f"**{_count(story['sentences'], 'sentence')}, {_count(story['words'], 'word')}, "
        f"{_count(len(manifest['scenes']), 'shot')}** · "
        f"profile `{manifest['profile']}` · {video['size'][0]}x{video['size'][1]} at {video['fps']} fps · "
        f"{manifest['narration']['duration']:.1f} s of narration · rendered in {manifest['seconds']:.1f} s",
        "",
        f"**Video:** `{target / 'video.mp4'}`  ",
        f"**Folder:** `{target}` (narration.wav, subtitles.srt, subtitles.vtt, keyframes/, manifest.json)",
        "",
        f"**Cache:** {cached} of {len(stages)} stages cached; computed: "
        + (", ".join(f"{_stage_name(r)} {r['seconds']:.1f} s" for r in stages if not r["cached"]) or "nothing"),
        "",
        "**Retries and degradations:** "
        + ("; ".join(f"{_stage_name(r)}: {r['attempts']} attempts, degraded with `{r['degraded']}`" for r in retried)
           or "none"),
        "",
        "**GPU placement:** " + placements(stages),
        "",
        "## Shots",
        "",
        "| shot | keyframe | starts at | length | motion | prompt |",
        "|---|---|---|---|---|---|",
    ]
    fps = video["fps"]
    for i, shot in enumerate(manifest["scenes"]):
        png = target / "keyframes" / f"scene-{i:02d}.png"
        prompt = shot["prompt"] + (f" / second encoder: {shot['prompt_2']}" if shot.get("prompt_2") else "")
        lines.append(
            f"| {shot['index']} | ![shot {shot['index']} keyframe]({thumbnail_uri(png)}) | "
            f"{shot['start']:.2f} s | {shot['frames'] / fps:.2f} s | "
            f"{_motion(shot, manifest['backends']['animate'], fps)} | {_cell(prompt)} |")
    return "\n".join(lines) + "\n"


def summary_description(manifest: dict, target: Path) -> str:
    """The summary in brief, with the keyframes: what the run page shows of the summary."""
    story, stages = manifest["story"], manifest["stages"]
    cached = sum(1 for r in stages if r["cached"])
    degraded = sum(1 for r in stages if r["degraded"])
    pictures = " ".join(
        f"![shot {i}]({thumbnail_uri(target / 'keyframes' / f'scene-{i:02d}.png', STRIP_WIDTH)})"
        for i in range(min(len(manifest["scenes"]), STRIP_SCENES)))
    return (f"**{story['title']}**: {_count(story['sentences'], 'sentence')} in "
            f"{_count(len(manifest['scenes']), 'shot')}, "
            f"{manifest['narration']['duration']:.1f} s of narration; {cached} of {len(stages)} stages cached, "
            f"{degraded} degraded; video `{target / 'video.mp4'}` {pictures}")


def cast_table(cast: dict[str, CastResult], shots: dict[str, list[int]]) -> list[str]:
    """The cast sheet as the lines of a markdown table, a row per member: the reference picture,
    the name, the description, whether the picture was drawn or given (with its sha256, as the
    manifest records it) and `shots`, the indexes of the shots that show them."""
    lines = ["| member | reference | description | picture | shots |", "|---|---|---|---|---|"]
    for name, reference in cast.items():
        made = reference.summary()
        how = "drawn from the description" if made["source"] == "drawn" else "given by the user"
        alt = name.replace("[", "").replace("]", "")
        lines.append(f"| {_cell(name)} | ![{_cell(alt)} reference]({thumbnail_uri(reference.picture)}) | "
                     f"{_cell(reference.description)} | {how}, sha256 `{made['sha256']}` | "
                     f"{', '.join(map(str, shots.get(name, []))) or 'none'} |")
    return lines


def cast_markdown(manifest: dict, cast: dict[str, CastResult]) -> str:
    """The cast sheet of a render with cast references: each member's reference picture and the
    shots whose keyframes it conditioned (the manifest's `references`)."""
    shots = {name: [shot["index"] for shot in manifest["scenes"] if name in shot["references"]] for name in cast}
    lines = [f"# Cast: {manifest['story']['title']}", "",
             "Each member's reference picture: the keyframe of every shot that shows them is conditioned on it.", "",
             *cast_table(cast, shots)]
    return "\n".join(lines) + "\n"


def publish_cast(manifest: dict, cast: dict[str, CastResult]) -> None:
    """The cast sheet artifact (`<slug>-cast`), for a render with cast references only."""
    if not cast:
        return
    story = manifest["story"]
    create_markdown_artifact(cast_markdown(manifest, cast), key=f"{story['slug']}-cast",
                             description=f"Cast of {story['title']}: {_count(len(cast), 'member')}, "
                                         "each with the reference picture the shots showing them are conditioned on")


def placements(stages: list[dict]) -> str:
    """Each GPU stage's placement (the memory plan's, docs/gpu-memory.md) and predicted peak."""
    seen: dict[str, set[str]] = {}
    for r in stages:
        where = r.get("placement")
        if where:
            peak = where.get("predicted_peak_gib")
            seen.setdefault(r["stage"], set()).add(
                f"`{where['placement']}`" + ("" if peak is None else f" (predicted peak {peak:.2f} GiB)"))
    return "; ".join(f"{stage}: {', '.join(sorted(v))}" for stage, v in seen.items()) or "none"


def stage_rows(stages: list[dict]) -> list[dict]:
    return [{"stage": _stage_name(r), "state": "cached" if r["cached"] else "computed",
             "seconds": round(r["seconds"], 2), "attempts": r["attempts"],
             "degraded": "" if not r["degraded"] else str(r["degraded"]),
             "placement": (r.get("placement") or {}).get("placement") or "", "key": r["key"]}
            for r in stages]


def publish(manifest: dict, target: Path, cast: dict[str, CastResult] | None = None) -> None:
    """The run's summary (`<slug>-summary`) and stage table (`<slug>-stages`) artifacts, and its
    cast sheet (`<slug>-cast`) when the keyframes were conditioned on cast references."""
    slug = manifest["story"]["slug"]
    create_markdown_artifact(summary_markdown(manifest, target), key=f"{slug}-summary",
                             description=summary_description(manifest, target))
    create_table_artifact(stage_rows(manifest["stages"]), key=f"{slug}-stages",
                          description="Stages of this run: computed or cached, seconds, attempts, degradation")
    publish_cast(manifest, cast or {})
