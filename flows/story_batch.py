"""The story-batch flow: one `story-to-video` deployment run per story, all at once.

Each story runs as its own flow run through the `story-to-video/<profile>` deployment, so it
gets its own process on the worker, its own retries and its own page in the UI (linked here
as a subflow run). Stories share the GPU through the `gpu` concurrency limit; their CPU stages
overlap. The batch's page ends with a table of the stories, their states, durations and links.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact
from prefect.deployments import arun_deployment
from prefect.settings import get_current_settings

from faceless.flows import roots
from faceless.flows.deliver import output_folder
from faceless.flows.parameters import ProfileName


def story_files(stories: str | list[str]) -> list[Path]:
    """The story files named by a folder (its *.txt files), a file, or a list of either."""
    files: list[Path] = []
    for entry in [stories] if isinstance(stories, str) else stories:
        roots.check("stories", entry)
        path = Path(entry).expanduser().absolute()
        if path.is_dir():
            files.extend(sorted(path.glob("*.txt")))
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"no story file or folder {entry!r} (from {Path.cwd()})")
    if not files:
        raise ValueError(f"no stories (*.txt) in {stories!r}")
    roots.check_all("stories", files)  # a link inside a folder may still lead out
    return files


def run_link(flow_run_id) -> str:
    ui = get_current_settings().ui_url
    return f"{ui}/runs/flow-run/{flow_run_id}" if ui else str(flow_run_id)


def _seconds(run) -> float:
    if run.start_time and run.end_time:
        return (run.end_time - run.start_time).total_seconds()
    return run.total_run_time.total_seconds()


def batch_table(files: list[Path], runs: list) -> str:
    lines = ["| story | state | duration | run |", "|---|---|---|---|"]
    for path, run in zip(files, runs):
        lines.append(f"| {path.name} | {run.state.name if run.state else 'unknown'} | {_seconds(run):.1f} s | "
                     f"[{run.name}]({run_link(run.id)}) |")
    return "\n".join(lines) + "\n"


@flow(name="story-batch")
async def story_batch(stories: str | list[str] = "deployments/stories", profile: ProfileName = "offline",
                      out: str = "./out", size: str = "") -> list[str]:
    """Render every story (a folder of .txt files, one file, or a list) through the
    `story-to-video/<profile>` deployment; returns the states of the story runs.

    Args:
        stories: A folder of UTF-8 .txt stories (each one is rendered), one story file, or a list
            of either; on the worker's machine, relative to the clone.
        profile: The story-to-video deployment each story runs through, named after its
            profile: offline (a CPU, no network), fast or studio (a GPU and the weights), tiny
            (the smallest).
        out: Folder the videos go into, a folder per story with its video.mp4.
        size: Output WIDTHxHEIGHT for every story, e.g. 1080x1920 or 1920x1080; empty for the
            profile's own (720x1280).
    """
    roots.refuse_job_variables()  # before any story run starts
    logger = get_run_logger()
    files = story_files(stories)
    target = str(output_folder(out))
    deployment = f"story-to-video/{profile}"
    logger.info("%d stories through %s into %s", len(files), deployment, target)
    parameters = [{"story_file": str(path), "out": target, **({"size": size} if size else {})} for path in files]
    # timeout=None: wait for each run to end, however long the GPU queue is.
    runs = await asyncio.gather(*(
        arun_deployment(deployment, parameters=p, timeout=None, flow_run_name=f"{path.stem}")
        for path, p in zip(files, parameters)))
    await acreate_markdown_artifact(
        f"# Batch: {len(files)} stories, profile `{profile}`\n\n{batch_table(files, runs)}",
        key="story-batch", description=f"Story runs of this batch ({deployment})")
    failed = [path.name for path, run in zip(files, runs) if not (run.state and run.state.is_completed())]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(files)} stories did not complete: {', '.join(failed)}")
    return [run.state.name for run in runs]
