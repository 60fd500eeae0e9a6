"""Prefect's cache records for our tasks, as JSON that cannot run code.

Prefect 3.9 writes a task's result record with its default serializer, pickle, and reads a
record with whatever serializer the record itself names. The records live in the artifact
store, and on a shared deployment that is a bucket other people may write: a planted pickle
would run on every worker that reads it. So:

- our tasks write records with `RecordSerializer` (type `faceless-json`): plain JSON, and a
  pydantic model only when its class lives in one of the modules of `ALLOWED_MODELS`;
- before Prefect looks at a record (`caching.ArtifactPolicy`) and when the bucket hands one
  over (`caching.S3Records`), `unsafe_record` checks it is such a record; anything else (a
  pickle, Prefect's own `json` serializer, which imports any class a record names, a legacy
  blob) is never deserialized: it is a cache miss, with a warning, and the task runs again.
"""

from __future__ import annotations

import importlib
import json
import logging
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field
from prefect.serializers import Serializer

TYPE = "faceless-json"
# Pydantic models a record may rebuild: classes defined in these modules only.
ALLOWED_MODELS = ("faceless.tasks.stages.",)
_MODEL = "__faceless_model__"


_ERROR = "__faceless_error__"


class UnsafeRecordError(ValueError):
    """A cache record that is not a faceless-json record: never deserialized."""


class StoredError(RuntimeError):
    """A failed task's exception read back from its record: its type's name and message only
    (no class named by a record is imported)."""


def _allowed(qualified: Any) -> bool:
    return isinstance(qualified, str) and qualified.startswith(ALLOWED_MODELS) and ".." not in qualified


def _encode(value: Any) -> Any:
    if isinstance(value, BaseModel):
        name = f"{type(value).__module__}.{type(value).__qualname__}"
        if not _allowed(name):
            raise TypeError(f"{name} is not a model a cache record may hold (see ALLOWED_MODELS)")
        return {_MODEL: name, "data": value.model_dump(mode="json")}
    if isinstance(value, BaseException):  # Prefect records a failed task's exception too
        return {_ERROR: f"{type(value).__module__}.{type(value).__qualname__}", "message": str(value)}
    raise TypeError(f"a cache record holds JSON only, not {type(value).__name__}")


def _decode(value: dict) -> Any:
    if _ERROR in value and set(value) == {_ERROR, "message"}:
        return StoredError(f"{value[_ERROR]}: {value['message']}")
    name = value.get(_MODEL)
    if name is None:
        return value
    if not _allowed(name) or set(value) != {_MODEL, "data"}:
        raise UnsafeRecordError(f"a cache record names a model outside {ALLOWED_MODELS}: {str(name)[:120]}")
    module, _, qualname = name.rpartition(".")
    cls = getattr(importlib.import_module(module), qualname, None)
    if not (isinstance(cls, type) and issubclass(cls, BaseModel) and cls.__module__ == module):
        raise UnsafeRecordError(f"a cache record names {name}, which is no pydantic model")
    return cls.model_validate(value["data"])


class RecordSerializer(Serializer):
    """JSON with no configurable parts (no library or hook named by the record itself)."""

    type: Literal["faceless-json"] = Field(default=TYPE, frozen=True)
    model_config: ClassVar[ConfigDict] = ConfigDict(extra="forbid")

    def dumps(self, obj: Any) -> bytes:
        return json.dumps(obj, default=_encode, ensure_ascii=False, allow_nan=False).encode("utf-8")

    def loads(self, blob: bytes) -> Any:
        return json.loads(blob.decode("utf-8") if isinstance(blob, bytes) else blob, object_hook=_decode)


def unsafe_record(content: bytes) -> str | None:
    """Why a stored record must not be handed to Prefect, or None for a faceless-json record.
    Reads it as plain JSON: nothing in it is imported, unpickled or called."""
    try:
        record = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return "not JSON (a pickle?)"
    if not isinstance(record, dict) or set(record) - {"metadata", "result"}:
        return "not a result record"
    metadata = record.get("metadata")
    serializer = metadata.get("serializer") if isinstance(metadata, dict) else None
    if serializer != {"type": TYPE}:
        kind = serializer.get("type") if isinstance(serializer, dict) else serializer
        return f"written with serializer {str(kind)[:40]!r}, not {TYPE!r}"
    if not isinstance(record.get("result"), str):
        return "its result is not JSON text"
    return None


def warn(what: str, reason: str) -> None:
    message = f"refused the cache record {what}: {reason}; never loaded, the task runs again"
    try:
        from prefect import get_run_logger

        get_run_logger().warning(message)
    except Exception:  # outside a flow or task run
        logging.getLogger("faceless.records").warning(message)
