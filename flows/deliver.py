"""Export a render's deliverables to <out>/<slug>/, all at once or not at all."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from tasks import store


class OutputError(ValueError):
    """An output folder that cannot be used."""


def output_folder(out: str | Path) -> Path:
    """The absolute output folder. A relative `out` must stay inside the working folder:
    `../..` in a parameter (say, from a deployment run) cannot write elsewhere on the machine."""
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


def export(out: Path, slug: str, video: dict, narration: dict, alignment: dict,
           keyframes: list[dict], manifest: dict) -> Path:
    """Copy the artifacts a creator needs out of the store, then swap the folder into place,
    so <out>/<slug> is always either the previous complete render or this one."""
    if not slug or slug != Path(slug).name or slug.startswith("."):
        raise OutputError(f"unsafe story slug {slug!r}")
    out = output_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    target = out / slug
    with store.exclusive_lock(out / f".{slug}.lock"):  # two renders of one story swap in turn
        return _swap_in(target, slug, video, narration, alignment, keyframes, manifest)


def _swap_in(target: Path, slug: str, video: dict, narration: dict, alignment: dict,
             keyframes: list[dict], manifest: dict) -> Path:
    out = target.parent
    tmp = Path(tempfile.mkdtemp(prefix=f".{slug}.tmp-", dir=out))
    try:
        shutil.copyfile(store.path_of(video, "video.mp4"), tmp / "video.mp4")
        shutil.copyfile(store.path_of(narration, "narration.wav"), tmp / "narration.wav")
        for name in ("subtitles.srt", "subtitles.vtt"):
            shutil.copyfile(store.path_of(alignment, name), tmp / name)
        (tmp / "keyframes").mkdir()
        for index, ref in enumerate(keyframes):
            shutil.copyfile(store.path_of(ref, "keyframe.png"), tmp / "keyframes" / f"scene-{index:02d}.png")
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
