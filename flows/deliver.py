"""Export a render's deliverables to <out>/<slug>/, all at once or not at all.

`out` may be s3://bucket/prefix (the standard AWS variables say where and who): the folder is
made locally first (in the scratch folder), then uploaded with manifest.json last, and the run
page gets a link artifact to the video.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from faceless.flows import roots
from faceless.tasks.runtime import store
from faceless.tasks.stages.results import AlignmentResult, KeyframeResult, NarrationResult, VideoResult


class OutputError(ValueError):
    """An output folder that cannot be used."""


def s3_out(out: str | Path) -> tuple[str, str] | None:
    """(bucket, prefix) for an s3:// output in any spelling roots.normal knows (a Path made of
    one has lost a slash: s3:/b/p; S3://b/p is the same place)."""
    text = str(out)
    if not re.match(r"s3:/", text, re.I):
        return None
    bucket, _, prefix = roots.normal(text)[len("s3://"):].partition("/")
    if not bucket:
        raise OutputError(f"out {text!r} names no bucket")
    if any(part in (".", "..") for part in (bucket, *prefix.split("/"))):  # also a local staging folder's name
        raise OutputError(f"out {text!r} has . or .. in it; name the bucket and prefix plainly")
    return bucket, prefix.strip("/")


def output_folder(out: str | Path) -> Path | str:
    """The absolute output folder. A relative `out` must stay inside the working folder:
    `../..` in a parameter (say, from a deployment run) cannot write elsewhere on the machine;
    and with FACELESS_ROOTS set, any `out` must be inside those (flows/roots.py)."""
    roots.check("out", out)
    location = s3_out(out)
    if location is not None:
        return "s3://" + "/".join(p for p in location if p)
    path = Path(out).expanduser()
    if not path.is_absolute():
        cwd = Path.cwd().resolve()
        path = (cwd / path).resolve()
        if path != cwd and cwd not in path.parents:
            raise OutputError(f"out {str(out)!r} escapes the working folder {cwd}; give a folder inside it or an absolute path")
    else:
        path = path.resolve()
    if path.exists() and not path.is_dir():
        raise OutputError(f"out {str(out)!r} exists and is not a folder")
    return path


def export(out: Path, slug: str, video: VideoResult, narration: NarrationResult, alignment: AlignmentResult,
           keyframes: list[KeyframeResult], manifest: dict) -> Path:
    """Copy the artifacts a creator needs out of the store, then swap the folder into place,
    so <out>/<slug> is always either the previous complete render or this one."""
    if not slug or slug != Path(slug).name or slug.startswith("."):
        raise OutputError(f"unsafe story slug {slug!r}")
    location = s3_out(out)
    if location is not None:
        staged = export(store.home() / "delivered" / location[0] / (location[1] or "_"), slug, video, narration,
                        alignment, keyframes, manifest)
        upload(staged, *location, slug)
        return staged
    out = output_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    target = out / slug
    with store.exclusive_lock(out / f".{slug}.lock"):  # two renders of one story swap in turn
        return _swap_in(target, slug, video, narration, alignment, keyframes, manifest)


def _swap_in(target: Path, slug: str, video: VideoResult, narration: NarrationResult, alignment: AlignmentResult,
             keyframes: list[KeyframeResult], manifest: dict) -> Path:
    out = target.parent
    tmp = Path(tempfile.mkdtemp(prefix=f".{slug}.tmp-", dir=out))
    try:
        shutil.copyfile(video.path("video.mp4"), tmp / "video.mp4")
        shutil.copyfile(narration.path("narration.wav"), tmp / "narration.wav")
        for name in ("subtitles.srt", "subtitles.vtt"):
            shutil.copyfile(alignment.path(name), tmp / name)
        (tmp / "keyframes").mkdir()
        for index, ref in enumerate(keyframes):
            shutil.copyfile(ref.path("keyframe.png"), tmp / "keyframes" / f"scene-{index:02d}.png")
        store.write_json(tmp / "manifest.json", manifest)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; deliverables are for sharing
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{slug}.old-", dir=out))
            os.rename(target, old / slug)
            os.rename(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def upload(folder: Path, bucket: str, prefix: str, slug: str) -> str:
    """Upload a finished deliverable folder to s3://bucket/prefix/slug/, manifest.json last, and
    link the video from the run page; returns the video's s3:// address."""
    from prefect import get_run_logger
    from prefect.artifacts import create_link_artifact
    from prefect.context import FlowRunContext

    client = store.s3_client()
    base = "/".join(p for p in (prefix, slug) if p)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "manifest.json")
    for path in [*files, folder / "manifest.json"]:
        client.upload_file(str(path), bucket, f"{base}/{path.relative_to(folder).as_posix()}")
    address = f"s3://{bucket}/{base}/video.mp4"
    url = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": f"{base}/video.mp4"},
                                        ExpiresIn=7 * 24 * 3600)
    if FlowRunContext.get() is None:  # a plain function call: no run page to link from
        return address
    logger = get_run_logger()
    try:
        create_link_artifact(link=url, link_text=address, key=f"{slug.lower()}-video",
                             description=f"The video in object storage: `{address}` (the link works for 7 days)")
    except Exception as error:  # the video is delivered; a missing link is not worth failing the run
        logger.warning("video uploaded to %s, but its link artifact failed: %r", address, error)
    else:
        logger.info("video uploaded: %s", address)
    return address
