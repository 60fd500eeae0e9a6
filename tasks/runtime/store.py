"""The artifact store: one directory per (stage, cache key), written atomically.

Layout (contract)::

    $FACELESS_HOME/artifacts/<stage>/<key>/...files...   + manifest.json (written last)
    $FACELESS_HOME/models/<name>/                          locally built models

A directory without a valid manifest.json, or whose files no longer hash to what the
manifest says, is not an artifact: readers treat it as a cache miss and it is rebuilt.

With FACELESS_HOME=s3://bucket/prefix the artifacts live in S3-compatible object storage
(boto3, configured by the standard AWS variables: AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_REGION)::

    <prefix>/artifacts/<stage>/<key>/<sha256>/<name>      each file, named by its content
    <prefix>/artifacts/<stage>/<key>/manifest.json        written last, create-only

The manifest is a conditional create (If-None-Match: *): of two machines building one key, one
manifest wins (the other gets 412, drops its own objects and uses the winner's artifact), and
since file objects are named by their hash, the loser cannot overwrite a file the winner's
manifest names. A reader downloads each file into the machine's scratch folder
(FACELESS_SCRATCH, default ~/.cache/faceless) and checks it against the manifest; files whose
manifest is missing are never used. Models stay local, in the scratch folder.

Whoever may write the bucket (or the artifact folder) writes the manifests, so nothing in one is
trusted: every file name, digest, stage and key read from a manifest or a cached record is
checked (`safe_name`, `check_ref`) before it touches a path. A manifest naming `../x`, `/etc/x`,
`C:\\x` or anything else outside the artifact's own folder is refused, logged once with its
stage and key, and the artifact is built again here.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

MANIFEST = "manifest.json"
_CHUNK = 1 << 20

# A file name inside an artifact: relative, "/"-separated parts of safe characters, none of them
# "." or ".." or hidden; no drive letter, backslash or control character; bounded in length.
_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}")
_MAX_NAME = 200
_MAX_PARTS = 4
_DIGEST = re.compile(r"[0-9a-f]{64}")
_LABEL = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")  # a stage name or a cache key
_refused: set[tuple[str, str]] = set()


class UnsafeArtifactError(ValueError):
    """A manifest or record whose names would lead outside an artifact's own folder."""


def safe_name(name: Any) -> bool:
    """True for a file name a manifest may hold: relative, inside the artifact's folder."""
    if not isinstance(name, str) or not name or len(name) > _MAX_NAME:
        return False
    parts = name.split("/")
    return len(parts) <= _MAX_PARTS and all(_PART.fullmatch(part) and part not in (".", "..") for part in parts)


def safe_label(value: Any) -> bool:
    """True for a stage name or cache key (one folder name, no separators or dots)."""
    return isinstance(value, str) and bool(_LABEL.fullmatch(value))


def unsafe_files(files: Any) -> list:
    """The entries of a manifest's `files` that must not be used (every one, if it is no dict)."""
    if not isinstance(files, dict):
        return [files]
    return [name for name, digest in files.items()
            if not safe_name(name) or not isinstance(digest, str) or not _DIGEST.fullmatch(digest)]


def refuse(stage: str, key: str, what: str, bad: list) -> None:
    """Log a refused manifest or record once per (stage, key) in this process."""
    if (stage, key) in _refused:
        return
    _refused.add((stage, key))
    message = (f"refused the {what} of {stage} artifact {key}: unsafe file names "
               f"{[str(b)[:80] for b in bad[:5]]!r}; building the artifact again here")
    try:
        from prefect import get_run_logger

        get_run_logger().warning(message)
    except Exception:  # outside a flow or task run
        logging.getLogger("faceless.store").warning(message)


def check_ref(ref: Any) -> dict:
    """An artifact reference (from a cached record) whose stage, key and file names are safe;
    raises UnsafeArtifactError otherwise."""
    if not is_ref(ref) or not safe_label(ref.get("stage")) or not safe_label(ref.get("key")):
        raise UnsafeArtifactError(f"refused an artifact record with an unsafe stage or key: {str(ref)[:200]}")
    bad = unsafe_files(ref.get("files"))
    if bad:
        refuse(ref["stage"], ref["key"], "record", bad)
        raise UnsafeArtifactError(f"refused the record of {ref['stage']} artifact {ref['key']}: unsafe file names")
    return ref


def remote() -> tuple[str, str] | None:
    """(bucket, prefix) when FACELESS_HOME is s3://bucket/prefix, else None."""
    value = os.environ.get("FACELESS_HOME") or ""
    if not value.startswith("s3://"):
        return None
    bucket, _, prefix = value[len("s3://"):].partition("/")
    return bucket, prefix.strip("/")


def home() -> Path:
    """FACELESS_HOME, read on every call so tests and users can point it elsewhere; with an
    s3:// home, this machine's scratch folder (local copies of artifacts, and models)."""
    if remote() is not None:
        return Path(os.environ.get("FACELESS_SCRATCH") or Path.home() / ".cache" / "faceless").expanduser()
    return Path(os.environ.get("FACELESS_HOME") or Path.home() / ".cache" / "faceless").expanduser()


def rendered_by() -> str:
    """Who computes here: FACELESS_WORKER_NAME (the cluster's workers set it), else the host name."""
    import socket

    return os.environ.get("FACELESS_WORKER_NAME") or socket.gethostname()


def s3_client():
    """A boto3 S3 client from the standard AWS variables (AWS_ENDPOINT_URL for a non-AWS server)."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", config=Config(retries={"max_attempts": 5, "mode": "standard"}))


def _s3_key(*parts: str) -> str:
    bucket, prefix = remote()
    return "/".join(p for p in (prefix, *parts) if p)


def _is_missing(error: Exception) -> bool:
    code = getattr(error, "response", {}).get("Error", {}).get("Code", "")
    return code in ("404", "NoSuchKey", "NotFound")


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


def as_ref(value: Any) -> dict | None:
    """The artifact reference in `value`: a reference itself, or a stage's typed result, which
    holds one as `.ref` (tasks/stages/results.py); else None."""
    if is_ref(value):
        return value
    ref = getattr(value, "ref", None)
    if hasattr(ref, "model_dump"):
        ref = ref.model_dump()
    return ref if is_ref(ref) else None


def _key_material(value: Any) -> Any:
    # A reference enters a key by its content only: where the store lives, when it was
    # built and whether it came from cache must not change downstream keys. A stage's typed
    # result enters by its reference alone (what else it carries is read from those files),
    # so its keys are those of the plain reference it replaced.
    ref = as_ref(value)
    if ref is not None:
        return {"stage": ref["stage"], "files": ref["files"]}
    if hasattr(value, "model_dump"):  # any other pydantic model: by its JSON content
        return _key_material(value.model_dump(mode="json"))
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
    if not safe_label(stage) or not safe_label(key):
        raise UnsafeArtifactError(f"unsafe artifact stage or key: {stage!r} {key!r}")
    return artifacts_dir() / stage / key


def inside(directory: Path, name: str) -> Path:
    """directory / name, for a name already checked by safe_name (and checked once more here)."""
    if not safe_name(name):
        raise UnsafeArtifactError(f"unsafe artifact file name {name!r}")
    return directory / name


def load(stage: str, key: str, verify: bool = True) -> dict | None:
    """The artifact's reference if it is complete and intact, else None (a cache miss)."""
    if remote() is not None:
        return _load_remote(stage, key)
    directory = artifact_dir(stage, key)
    try:
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(manifest, dict) or manifest.get("key") != key or manifest.get("stage", stage) != stage \
            or not isinstance(files, dict):
        return None
    bad = unsafe_files(files)
    if bad:
        refuse(stage, key, "manifest", bad)
        return None
    for name, digest in files.items():
        path = directory / name
        if not path.is_file():
            return None
        if verify and file_sha256(path) != digest:
            return None
    return _ref(manifest)


def _remote_manifest(stage: str, key: str) -> dict | None:
    bucket, _ = remote()
    try:
        body = s3_client().get_object(Bucket=bucket, Key=_s3_key("artifacts", stage, key, MANIFEST))["Body"].read()
        manifest = json.loads(body)
    except ValueError:
        return None
    except Exception as error:
        if _is_missing(error):
            return None
        raise
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or manifest.get("key") != key or manifest.get("stage", stage) != stage:
        return None
    bad = unsafe_files(files)
    if bad:
        refuse(stage, key, "manifest", bad)
        return None
    return manifest


def _load_remote(stage: str, key: str) -> dict | None:
    manifest = _remote_manifest(stage, key)
    if manifest is None:
        return None
    if not fetch(stage, key, manifest["files"]):
        return None
    return _ref(manifest)


def fetch(stage: str, key: str, files: dict[str, str]) -> bool:
    """Make this machine's copy of an S3 artifact: download what is missing, keep a file only
    if it hashes to the manifest's digest. False if any file is missing or does not match."""
    if unsafe_files(files):
        raise UnsafeArtifactError(f"{stage} artifact {key}: unsafe file names {unsafe_files(files)[:5]!r}")
    bucket, _ = remote()
    client = None
    directory = artifact_dir(stage, key)
    for name, digest in files.items():
        path = inside(directory, name)
        if path.is_file() and file_sha256(path) == digest:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
        client = client or s3_client()
        try:
            client.download_file(bucket, _s3_key("artifacts", stage, key, digest, name), str(tmp))
        except Exception as error:
            tmp.unlink(missing_ok=True)
            if _is_missing(error):
                return False
            raise
        if file_sha256(tmp) != digest:
            tmp.unlink(missing_ok=True)
            return False
        os.replace(tmp, path)
    return True


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
        "rendered_by": manifest.get("rendered_by"),
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
            "rendered_by": rendered_by(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        if remote() is not None:
            winner = _publish_remote(stage, key, tmp, manifest)
            if winner is not None:
                shutil.rmtree(tmp, ignore_errors=True)
                return winner
        else:
            write_json(tmp / MANIFEST, manifest)
        move_into_place(tmp, final)  # remote: the local copy is the built folder itself
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    ref = _ref(manifest)
    ref["cached"] = False
    return ref


def _publish_remote(stage: str, key: str, tmp: Path, manifest: dict) -> dict | None:
    """Upload the files (named by content), then create the manifest only if there is none.
    Of two racing machines one manifest wins; the loser deletes its objects and returns the
    winner's artifact. None when ours won."""
    from botocore.exceptions import ClientError

    bucket, _ = remote()
    client = s3_client()
    uploaded = []
    for name, digest in manifest["files"].items():
        object_key = _s3_key("artifacts", stage, key, digest, name)
        client.upload_file(str(tmp / name), bucket, object_key)
        uploaded.append((name, digest, object_key))
    body = (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    manifest_key = _s3_key("artifacts", stage, key, MANIFEST)
    for attempt in range(2):
        try:
            client.put_object(Bucket=bucket, Key=manifest_key, Body=body, IfNoneMatch="*",
                              ContentType="application/json")
            break
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in ("PreconditionFailed", "412"):
                raise
        # Another manifest is there: a machine that built the same key first (use its
        # artifact), or a damaged one that produce() found unusable (replace it, once).
        winner = _remote_manifest(stage, key)
        ref = _load_remote(stage, key) if winner is not None else None
        if ref is not None:
            for name, digest, object_key in uploaded:  # ours, unless the winner's names it too
                if winner["files"].get(name) != digest:
                    client.delete_object(Bucket=bucket, Key=object_key)
            return ref
        if attempt == 1:
            raise RuntimeError(f"{stage} artifact {key}: could not replace its damaged manifest")
        client.delete_object(Bucket=bucket, Key=manifest_key)
    return None


def discard(stage: str, key: str) -> None:
    """Remove an artifact, so its stage makes it again (a degraded one, for --redo-degraded).
    Under the artifact's lock, so a render building the same key is not cut short."""
    final, location = artifact_dir(stage, key), remote()
    final.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(final.parent / f".{key}.lock"):
        if location is not None:  # without its manifest the bucket's copy is a miss everywhere
            s3_client().delete_object(Bucket=location[0], Key=_s3_key("artifacts", stage, key, MANIFEST))
        if final.exists():
            gone = final.with_name(f".tmp-{key}-discarded-{os.getpid()}")
            os.rename(final, gone)  # readers see the whole artifact or none
            shutil.rmtree(gone, ignore_errors=True)


def move_into_place(tmp: Path, final: Path) -> None:
    """Publish a finished folder by one rename, so readers see all of it or none. A folder
    already there is an incomplete or damaged earlier attempt (complete ones are never rebuilt)."""
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)


def build_folder_once(directory: Path, marker: str, build: Callable[[Path], Any]) -> Path:
    """A folder built once per machine (tiny models, tokenizer files): under the artifacts' own
    lock, so processes started together build it once, in a temporary folder moved into place."""
    if (directory / marker).is_file():
        return directory
    directory.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(directory.parent / f".{directory.name}.lock"):
        if (directory / marker).is_file():
            return directory
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{directory.name}-", dir=directory.parent))
        try:
            build(tmp)
            move_into_place(tmp, directory)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return directory


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
    check_ref(ref)  # a record read back from the store is checked like a manifest
    if name not in ref["files"]:
        raise KeyError(f"{ref['stage']} artifact {ref['key']} has no file {name!r}")
    path = inside(artifact_dir(ref["stage"], ref["key"]), name)
    # An S3 artifact this process has not read yet (e.g. a Cached result from another machine).
    if remote() is not None and not path.is_file():
        if not fetch(ref["stage"], ref["key"], {name: ref["files"][name]}):
            raise FileNotFoundError(f"{ref['stage']} artifact {ref['key']}: {name} is missing or damaged in the bucket")
    return path


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))
