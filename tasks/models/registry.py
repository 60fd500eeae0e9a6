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

# One model runs at a time in a process: scenes map to threads, and two diffusion runs
# side by side would only fight over the same cores (or GPU memory).
MODEL_LOCK = threading.RLock()


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


@contextlib.contextmanager
def cpu_threads(device, threads: int):
    """Token-by-token decoding on a CPU is many tiny matrix products: thread hand-offs cost
    more than they save (a tiny Bark sentence took 0.4 s on one thread, 7-16 s on two of a
    busy 2-core machine). The caller holds MODEL_LOCK, so no other model runs meanwhile."""
    import torch

    if str(device).startswith("cuda") or not threads:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)
