"""Loaded models, one registry per process: the shots of a run share one pipeline, and
``release`` drops a family before a stage that needs the memory."""

from __future__ import annotations

import collections
import contextlib
import gc
import os
import threading

# transformers prints advice at import (e.g. that torchvision is absent): keep logs for errors.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

class ModelTurns:
    """Whose turn it is to run a model. Scenes map to threads; two diffusion runs side by side
    on a GPU, or on every core of a CPU, would only fight over its memory or cores.

    ``with MODEL_LOCK:`` takes the whole turn (reentrant, like an RLock): no other model runs
    meanwhile. ``MODEL_LOCK.lane(family)`` is for a call on one torch thread on a CPU (a
    stage's ``cpu_threads: 1``): such calls run beside each other, one per family (a pipeline
    keeps per-call state, its scheduler's step) and at most one per core, so the offline
    profile's keyframes and clips use both cores of a 2-core machine. Code holding a lane
    must not take the whole turn (two lanes doing so would wait on each other)."""

    def __init__(self, lanes: int):
        self.lanes = max(1, lanes)
        self._changed = threading.Condition()
        self._owner: int | None = None  # the thread holding the whole turn
        self._depth = 0
        self._running: dict[str, int] = {}  # family -> thread, for the lanes

    def __enter__(self):
        me = threading.get_ident()
        with self._changed:
            if self._owner != me:
                self._changed.wait_for(lambda: self._owner is None and not self._running)
                self._owner = me
            self._depth += 1
        return self

    def __exit__(self, *exc) -> None:
        with self._changed:
            self._depth -= 1
            if not self._depth:
                self._owner = None
                self._changed.notify_all()

    @contextlib.contextmanager
    def lane(self, family: str):
        me = threading.get_ident()
        if self._owner == me:  # already holds the whole turn
            yield
            return
        with self._changed:
            self._changed.wait_for(lambda: self._owner is None and family not in self._running
                                   and len(self._running) < self.lanes)
            self._running[family] = me
        try:
            yield
        finally:
            with self._changed:
                del self._running[family]
                self._changed.notify_all()


MODEL_LOCK = ModelTurns(lanes=os.cpu_count() or 1)


def quiet_libraries() -> None:
    # Progress bars and advice meant for notebooks would drown the run's own logs.
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def device_and_dtype():
    import torch

    quiet_libraries()
    if torch.cuda.is_available():
        return "cuda", torch.float16
    torch.set_flush_denormal(True)  # random weights make denormals that slow CPUs 2-3x
    return "cpu", torch.float32


# -- loaded models, one registry per process ---------------------------------------------------

_LOADED: dict[tuple, object] = {}
LOADS: collections.Counter = collections.Counter()  # loads per family in this process, for the manifest


def load_once(family: str, key: tuple, load):
    """The loaded model for `key`, loading it the first time. Scenes run in threads: the lock
    makes the first caller load while the others wait (diffusers' lazy imports do not race well)."""
    with MODEL_LOCK:
        if (family, *key) not in _LOADED:
            _LOADED[(family, *key)] = load()
            LOADS[family] += 1
        return _LOADED[(family, *key)]


def release(*families: str) -> list[str]:
    """Drop the loaded models of these families (all when none named) and free their memory,
    so the next stage's model fits. Returns the families released."""
    with MODEL_LOCK:
        keys = [k for k in _LOADED if not families or k[0] in families]
        for key in keys:
            del _LOADED[key]
        from faceless.tasks.runtime import placement

        placement.forget(*{k[0] for k in keys})
    if keys:
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass
    return sorted({k[0] for k in keys})


_THREADS = threading.Lock()
_THREAD_USERS = 0  # model calls inside cpu_threads now (several only in lanes, all on one thread)
_THREADS_BEFORE = 0


@contextlib.contextmanager
def cpu_threads(device, threads: int):
    """Token-by-token decoding on a CPU is many tiny matrix products: thread hand-offs cost
    more than they save (a tiny Bark sentence took 0.4 s on one thread, 7-16 s on two of a
    busy 2-core machine). torch's thread count is the process's: the first call in sets it,
    the last one out puts it back."""
    global _THREAD_USERS, _THREADS_BEFORE
    import torch

    if str(device).startswith("cuda") or not threads:
        yield
        return
    with _THREADS:
        if not _THREAD_USERS:
            _THREADS_BEFORE = torch.get_num_threads()
        _THREAD_USERS += 1
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        with _THREADS:
            _THREAD_USERS -= 1
            if not _THREAD_USERS:
                torch.set_num_threads(_THREADS_BEFORE)


@contextlib.contextmanager
def model_turn(family: str, device, threads: int | None):
    """The turn to run `family`'s model on `device`, with `threads` torch threads on a CPU: a
    lane beside other one-thread calls (see ModelTurns), else the whole turn."""
    one_cpu_thread = not str(device).startswith("cuda") and threads == 1
    with (MODEL_LOCK.lane(family) if one_cpu_thread else MODEL_LOCK), cpu_threads(device, threads):
        yield
