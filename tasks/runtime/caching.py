"""Prefect caching on top of the artifact store.

Prefect's cache is the first layer (the UI shows a stage as Cached), but it only knows that
a result record exists, not that the files the record points to are still there and intact.
ArtifactPolicy derives the Prefect cache key from the same inputs as the artifact key and,
when the artifact is missing or corrupt, deletes Prefect's record so the task runs again.

The records live next to the artifacts: in FACELESS_HOME/prefect-results, or with an s3://
home in the bucket (<prefix>/prefect-results/), so a retry on another machine finds them and
comes back Cached.

Records are JSON (`records.RecordSerializer`), never pickles: whoever may write the bucket
must not be able to run code on the workers that read it. A record of any other kind is
refused unread (a cache miss with a warning) and deleted, here before Prefect looks for it,
and in `S3Records.read_path` when the bucket hands one over.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from prefect.cache_policies import CachePolicy
from prefect.filesystems import WritableFileSystem
from prefect.runtime import task_run
from prefect.transactions import get_transaction

from faceless.tasks.runtime import live, records, store


def records_dir() -> Path:
    """Where Prefect keeps its result records for our tasks (inside FACELESS_HOME)."""
    return store.home() / "prefect-results"


RECORDS_VERSION = "r2"  # r2: tasks return typed results (tasks/stages/results.py), not plain dicts


def prefect_key(stage: str, key: str) -> str:
    """The name of Prefect's record for an artifact. Its version changes when what the tasks
    return changes, so a record of an older kind is never handed to newer code; the artifact
    (and its key) stays, and the task finds it in the store."""
    return f"{stage}-{RECORDS_VERSION}-{key}"


class S3Records(WritableFileSystem):
    """Prefect result storage in the artifact store's bucket (boto3, the standard AWS variables)."""

    _block_type_name = "Faceless S3 Records"
    bucket: str
    prefix: str = ""

    def _key(self, path: str) -> str:
        return "/".join(p for p in (self.prefix, "prefect-results", path) if p)

    # Prefect's sync code paths pass _sync=True (for its own dual sync/async blocks); ignored here.
    def read_path(self, path: str, **_: object) -> bytes:
        content = store.s3_client().get_object(Bucket=self.bucket, Key=self._key(path))["Body"].read()
        reason = records.unsafe_record(content)
        if reason is not None:  # Prefect then counts the record as missing: the task runs
            records.warn(f"s3://{self.bucket}/{self._key(path)}", reason)
            self.delete_path(path)
            raise records.UnsafeRecordError(f"refused the cache record {path}: {reason}")
        return content

    def write_path(self, path: str, content: bytes, **_: object) -> str:
        store.s3_client().put_object(Bucket=self.bucket, Key=self._key(path), Body=content)
        return path

    def delete_path(self, path: str) -> None:
        store.s3_client().delete_object(Bucket=self.bucket, Key=self._key(path))

    async def aread_path(self, path: str) -> bytes:
        import anyio.to_thread

        return await anyio.to_thread.run_sync(self.read_path, path)

    async def awrite_path(self, path: str, content: bytes) -> str:
        import anyio.to_thread

        return await anyio.to_thread.run_sync(self.write_path, path, content)


def result_storage():
    """Where Prefect's records for our tasks go: a folder, or the bucket with an s3:// home (a
    block saved on the server, as Prefect requires, holding only bucket and prefix: each
    machine's credentials stay in its own AWS variables)."""
    location = store.remote()
    if location is None:
        return records_dir()
    return _saved_records(*location, os.environ.get("PREFECT_API_URL"))


@functools.lru_cache(maxsize=None)
def _saved_records(bucket: str, prefix: str, api_url: str | None) -> S3Records:
    block = S3Records(bucket=bucket, prefix=prefix)
    name = "faceless-" + hashlib.sha256(f"{bucket}/{prefix}".encode()).hexdigest()[:16]
    try:
        block.save(name, overwrite=True)
    except Exception:  # another machine saved it at the same moment; the second save updates it
        block.save(name, overwrite=True)
    return block


def check_record(stage: str, key: str) -> None:
    """Delete our record for (stage, key) unread, with a warning, if it is not a faceless-json
    record (a pickle planted where a record should be), so Prefect finds none. A bucket's
    records need no look here: Prefect reads them through S3Records.read_path, which refuses
    an unsafe one (downloading each record twice would only cost a request a stage)."""
    storage = result_storage()
    if isinstance(storage, S3Records):
        return
    path = storage / prefect_key(stage, key)
    try:
        content = path.read_bytes()
    except OSError:
        return
    reason = records.unsafe_record(content)
    if reason is not None:
        records.warn(str(path), reason)
        path.unlink(missing_ok=True)


def forget_record(stage: str, key: str) -> None:
    storage = result_storage()
    if isinstance(storage, S3Records):
        storage.delete_path(prefect_key(stage, key))
    else:
        (storage / prefect_key(stage, key)).unlink(missing_ok=True)


@dataclass
class ArtifactPolicy(CachePolicy):
    stage: str = ""
    version: int = 1
    labels: tuple[str, ...] = ()  # parameters that only name the work (a shot's index), not its content

    def content(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """What the artifact is made from: the task's parameters less its labels."""
        return {name: value for name, value in inputs.items() if name not in self.labels}

    def compute_key(self, task_ctx, inputs: dict[str, Any], flow_parameters, **kwargs) -> str:
        key = store.artifact_key(self.stage, self.version, self.content(inputs))
        found = store.load(self.stage, key)
        if found is not None and found["degraded"] and flow_parameters.get("redo_degraded"):
            # A result made down the degrade ladder is reused until a run asks for it again at
            # full settings (`faceless render --redo-degraded`): then it is made anew.
            store.discard(self.stage, key)
            found = None
        if found is None:
            # Without the artifact, Prefect's record would hand back a path to nothing.
            forget_record(self.stage, key)
        else:
            check_record(self.stage, key)
        return prefect_key(self.stage, key)


def run_stage(stage: str, build: Callable[[Path], dict], degraded: Any = None) -> dict:
    """The body of every stage task: return the artifact for this task's inputs, building
    it if needed. The key is the one ArtifactPolicy computed from the task's parameters."""
    transaction = get_transaction()
    if transaction is None or not transaction.key:
        raise RuntimeError(f"stage {stage} must run as a task with ArtifactPolicy")
    key = transaction.key.removeprefix(prefect_key(stage, ""))
    return store.produce(stage, key, build, attempts=task_run.run_count or 1, degraded=degraded)


def run_stage_keeping(stage: str, build: Callable[[Path], tuple[dict, Any]]) -> tuple[dict, Any]:
    """run_stage for a stage whose result carries what it wrote: `build` returns (metadata, the
    data it wrote), and this returns (the artifact's reference, that data), or None for the data
    when the store already had the artifact (built by an earlier run or another machine), for
    the stage to read back from the artifact's files."""
    kept = []

    def keep(directory: Path) -> dict:
        meta, data = build(directory)
        kept.append(data)
        return meta

    ref = run_stage(stage, keep)
    return ref, (kept[-1] if kept else None)


def with_store(task, retries: int = 0):
    """The task with results persisted next to the artifacts of the current FACELESS_HOME (and,
    under `faceless render`'s live view, state hooks that report to it)."""
    return task.with_options(result_storage=result_storage(), result_serializer=records.RecordSerializer(),
                             persist_result=True, retries=retries, **live.hooks())
