"""The artifact store: one directory per (stage, cache key), written atomically.

Layout (contract)::

    $FACELESS_HOME/artifacts/<stage>/<key>/...files...   + manifest.json (written last)
    $FACELESS_HOME/models/<name>/                          locally built models

A directory without a valid manifest.json, or whose files no longer hash to what the
manifest says, is not an artifact: readers treat it as a cache miss and it is rebuilt.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

MANIFEST = "manifest.json"
_CHUNK = 1 << 20


def home() -> Path:
    """FACELESS_HOME, read on every call so tests and users can point it elsewhere."""
    return Path(os.environ.get("FACELESS_HOME") or Path.home() / ".cache" / "faceless").expanduser()


def artifacts_dir() -> Path:
    return home() / "artifacts"


def models_dir() -> Path:
    return home() / "models"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def is_ref(value: Any) -> bool:
    """An artifact reference: the small record a stage returns instead of media."""
    return isinstance(value, dict) and value.get("kind") == "artifact"


def _key_material(value: Any) -> Any:
    # A reference enters a key by its content only: where the store lives, when it was
    # built and whether it came from cache must not change downstream keys.
    if is_ref(value):
        return {"stage": value["stage"], "files": value["files"]}
    if isinstance(value, dict):
        return {str(k): _key_material(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_key_material(v) for v in value]
    if isinstance(value, Path):
        raise TypeError("paths do not belong in cache keys; pass content (a ref) instead")
    return value


def artifact_key(stage: str, version: int, inputs: dict[str, Any]) -> str:
    """Hash of stage name, stage version, settings, model identity and input content."""
    material = {"stage": stage, "version": version, "inputs": _key_material(inputs)}
    blob = json.dumps(material, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def artifact_dir(stage: str, key: str) -> Path:
    return artifacts_dir() / stage / key


def load(stage: str, key: str, verify: bool = True) -> dict | None:
    """The artifact's reference if it is complete and intact, else None (a cache miss)."""
    directory = artifact_dir(stage, key)
    try:
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    files = manifest.get("files")
    if manifest.get("key") != key or not isinstance(files, dict):
        return None
    for name, digest in files.items():
        path = directory / name
        if not path.is_file():
            return None
        if verify and file_sha256(path) != digest:
            return None
    return _ref(manifest)


def _ref(manifest: dict) -> dict:
    # No absolute path inside: Prefect keeps this record, and FACELESS_HOME may move.
    return {
        "kind": "artifact",
        "stage": manifest["stage"],
        "key": manifest["key"],
        "files": manifest["files"],
        "meta": manifest.get("meta", {}),
        "seconds": manifest.get("seconds", 0.0),
        "attempts": manifest.get("attempts", 1),
        "degraded": manifest.get("degraded"),
        "cached": True,
    }


def produce(
    stage: str,
    key: str,
    build: Callable[[Path], dict | None],
    attempts: int = 1,
    degraded: Any = None,
) -> dict:
    """Return the artifact (stage, key), building it with build(tmp_dir) if absent.

    build writes its files into a fresh temporary directory and returns metadata. The
    directory is renamed into place only after every file is hashed into the manifest,
    so a process killed halfway leaves a temporary directory, never a bad artifact.
    """
    existing = load(stage, key)
    if existing is not None:
        return existing
    final = artifact_dir(stage, key)
    final.parent.mkdir(parents=True, exist_ok=True)
    # Two renders of the same story build each artifact once: the second waits on the first's
    # lock and then finds the finished artifact. The OS drops a dead process's flock, so a
    # killed render never blocks the next one.
    with exclusive_lock(final.parent / f".{key}.lock"):
        existing = load(stage, key)
        if existing is not None:
            return existing
        return _build(stage, key, final, build, attempts, degraded)


@contextlib.contextmanager
def exclusive_lock(path: Path):
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(stage: str, key: str, final: Path, build: Callable[[Path], dict | None],
           attempts: int, degraded: Any) -> dict:
    _sweep_stale_temporaries(final.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=final.parent))
    try:
        started = time.perf_counter()
        meta = build(tmp) or {}
        seconds = round(time.perf_counter() - started, 3)
        files = {
            str(path.relative_to(tmp)): file_sha256(path)
            for path in sorted(tmp.rglob("*"))
            if path.is_file()
        }
        manifest = {
            "stage": stage,
            "key": key,
            "files": files,
            "meta": meta,
            "seconds": seconds,
            "attempts": attempts,
            "degraded": degraded,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        write_json(tmp / MANIFEST, manifest)
        if final.exists():  # an incomplete or corrupt earlier attempt
            shutil.rmtree(final)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    ref = _ref(manifest)
    ref["cached"] = False
    return ref


def _sweep_stale_temporaries(parent: Path, older_than_s: float = 6 * 3600) -> None:
    # Temporaries of killed processes; young ones may belong to a live render.
    now = time.time()
    for tmp in parent.glob(".tmp-*"):
        try:
            if now - tmp.stat().st_mtime > older_than_s:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            pass


def path_of(ref: dict, name: str) -> Path:
    """A file inside an artifact, by its name in the manifest."""
    if name not in ref["files"]:
        raise KeyError(f"{ref['stage']} artifact {ref['key']} has no file {name!r}")
    return artifact_dir(ref["stage"], ref["key"]) / name


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))
