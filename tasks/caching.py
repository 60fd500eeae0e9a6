"""Prefect caching on top of the artifact store.

Prefect's cache is the first layer (the UI shows a stage as Cached), but it only knows that
a result record exists, not that the files the record points to are still there and intact.
ArtifactPolicy derives the Prefect cache key from the same inputs as the artifact key and,
when the artifact is missing or corrupt, deletes Prefect's record so the task runs again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from prefect.cache_policies import CachePolicy
from prefect.runtime import task_run
from prefect.transactions import get_transaction

from tasks import store


def records_dir() -> Path:
    """Where Prefect keeps its result records for our tasks (inside FACELESS_HOME)."""
    return store.home() / "prefect-results"


def prefect_key(stage: str, key: str) -> str:
    return f"{stage}-{key}"


@dataclass
class ArtifactPolicy(CachePolicy):
    stage: str = ""
    version: int = 1
    labels: tuple[str, ...] = ()  # parameters that only name the work (a shot's index), not its content

    def compute_key(self, task_ctx, inputs: dict[str, Any], flow_parameters, **kwargs) -> str:
        content = {name: value for name, value in inputs.items() if name not in self.labels}
        key = store.artifact_key(self.stage, self.version, content)
        if store.load(self.stage, key) is None:
            # Without the artifact, Prefect's record would hand back a path to nothing.
            (records_dir() / prefect_key(self.stage, key)).unlink(missing_ok=True)
        return prefect_key(self.stage, key)


def run_stage(stage: str, build: Callable[[Path], dict], degraded: Any = None) -> dict:
    """The body of every stage task: return the artifact for this task's inputs, building
    it if needed. The key is the one ArtifactPolicy computed from the task's parameters."""
    transaction = get_transaction()
    if transaction is None or not transaction.key:
        raise RuntimeError(f"stage {stage} must run as a task with ArtifactPolicy")
    key = transaction.key.removeprefix(prefect_key(stage, ""))
    return store.produce(stage, key, build, attempts=task_run.run_count or 1, degraded=degraded)


def with_store(task, retries: int = 0):
    """The task with results persisted next to the artifacts of the current FACELESS_HOME."""
    return task.with_options(result_storage=records_dir(), persist_result=True, retries=retries)
