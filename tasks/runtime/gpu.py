"""Out-of-memory handling for the model stages: retry only on OOM, stepping down a ladder.

A profile gives each model stage a `degrade` ladder, e.g. for animate::

    degrade:
      - {decode_chunk_size: 2}
      - {forward_chunking: true}
      - {model_cpu_offload: true}
      - {num_frames: 14}

Attempt 1 uses the profile's settings; attempt k adds the first k-1 rungs. Prefect retries
the task (only when the failure was torch.OutOfMemoryError, or a CUDA RuntimeError that means
"too big for this kernel" in a VAE decode: cuDNN "not supported", 32-bit index math) as many
times as there are rungs.

The rung a model family needed is remembered for the rest of the flow run: later shots of the
stage start there instead of failing their way down again. Until a stage has finished one
shot, its shots run one at a time (the first one learns the rung). Rungs that ask for
`model_cpu_offload` or `sequential_cpu_offload` lower the family's placement
(tasks/runtime/placement.py) instead of switching offload on and off around each shot.

FACELESS_FAULT (contract) injects real OOMs where a model runs, to test all this:
``<stage>:oom:<n>`` fails every task of the stage while it runs on one of the ladder's first n
rungs (as a real OOM would: with rung 1 remembered, later shots start there and pass), and
``<stage>[<scene>]:oom:<n>`` only that scene's; several faults are separated by commas.
A suffix ``@<k>`` limits a fault to the flow run's k-th attempt: ``animate[1]:oom:99@1`` fails
a deployment run, and its Retry (which keeps the run's environment) then runs clean.
``<stage>[<scene>]:hang:<seconds>`` instead sleeps that long where the model runs, holding the
GPU slot (the fault tests kill a render there).

The GPU itself is shared through a Prefect global concurrency limit, `gpu` unless
FACELESS_GPU_LIMIT names another (one per GPU machine, e.g. `gpu-<host>`, set on that
machine's worker). The local stack (deployments/stack.py) creates it; a deployment run on a
server without it creates it (1 slot) and says so in its log. A model stage takes the slot
inside its task body, only when it really computes: a cached stage never runs its body, so
it never waits.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import gc
import logging
import os
import re
import threading
import time
from typing import Any, Callable

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.sync import concurrency
from prefect.context import TaskRunContext
from prefect.exceptions import ObjectNotFound
from prefect.runtime import deployment, flow_run, task_run

from faceless.tasks.runtime.caching import run_stage

_FAULT = re.compile(r"^(?P<stage>[a-z]+)(?:\[(?P<scene>\d+)\])?:oom:(?P<count>\d+)(?:@(?P<flow_attempt>\d+))?$")
_HANG = re.compile(r"^(?P<stage>[a-z]+)(?:\[(?P<scene>\d+)\])?:hang:(?P<seconds>\d+)$")
GPU_LIMIT = "gpu"


def gpu_limit() -> str:
    """The name of this machine's GPU slot: FACELESS_GPU_LIMIT, else `gpu`."""
    return os.environ.get("FACELESS_GPU_LIMIT") or GPU_LIMIT
# A killed holder keeps the slot until its lease runs out; a live one renews it in the background.
# 60 s is the shortest lease Prefect's server accepts (it answers 422 to less).
GPU_LEASE_S = 60


class FaultSpecError(ValueError):
    """FACELESS_FAULT that does not follow <stage>[<scene>]:oom:<n>."""


def parse_faults(spec: str) -> list[tuple[str, int | None, int, int | None]]:
    """(stage, scene or None, attempts to fail, flow run attempt or None) per entry."""
    faults = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        if _HANG.match(part):
            continue
        match = _FAULT.match(part)
        if not match:
            raise FaultSpecError(f"FACELESS_FAULT entry {part!r} is not <stage>[<scene>]:oom:<n>[@<flow attempt>] "
                                 "or <stage>[<scene>]:hang:<seconds>")
        scene, flow_attempt = match["scene"], match["flow_attempt"]
        faults.append((match["stage"], None if scene is None else int(scene), int(match["count"]),
                       None if flow_attempt is None else int(flow_attempt)))
    return faults


def attempt_number() -> int:
    return task_run.run_count or 1


# The ladder rung (0: the profile's settings) the current stage runs at; a context variable, so
# the `gpu` task run that holds the slot (and may run in another thread) sees it too.
_RUNG: contextvars.ContextVar[int | None] = contextvars.ContextVar("faceless_rung", default=None)
_REMEMBERED: dict[tuple, int] = {}  # (flow run, stage, backend) -> the rung later shots start at
_LEARNED: set[tuple] = set()  # stages that have finished a shot in this flow run
_LEARNING: dict[tuple, threading.Lock] = {}
_STATE_LOCK = threading.Lock()


def forget_rungs() -> None:
    """Forget every remembered rung (a new process starts empty; tests call this)."""
    with _STATE_LOCK:
        _REMEMBERED.clear()
        _LEARNED.clear()
        _LEARNING.clear()


def current_rung() -> int | None:
    return _RUNG.get()


def _family_key(stage: str, settings: dict) -> tuple:
    return (str(flow_run.id), stage, settings.get("backend"))


def remembered_rung(stage: str, settings: dict) -> int:
    return _REMEMBERED.get(_family_key(stage, settings), 0)


def remember_rung(stage: str, settings: dict, rung: int) -> None:
    key = _family_key(stage, settings)
    with _STATE_LOCK:
        _REMEMBERED[key] = max(rung, _REMEMBERED.get(key, 0))


def inject_fault(stage: str, scene: int | None) -> None:
    """Raise a real torch.OutOfMemoryError here if FACELESS_FAULT asks for one now."""
    spec = os.environ.get("FACELESS_FAULT", "")
    if not spec:
        return
    for part in filter(None, (p.strip() for p in spec.split(","))):
        hang = _HANG.match(part)
        if hang and hang["stage"] == stage and (hang["scene"] is None or int(hang["scene"]) == scene):
            _logger().warning("%s: hanging for %s s (FACELESS_FAULT=%s)", stage, hang["seconds"], spec)
            time.sleep(int(hang["seconds"]))
    rung = current_rung()
    attempt = attempt_number() if rung is None else rung + 1  # the rung, as a real OOM would depend on
    for fault_stage, fault_scene, count, flow_attempt in parse_faults(spec):
        if flow_attempt is not None and flow_attempt != (flow_run.run_count or 1):
            continue
        if fault_stage == stage and fault_scene in (None, scene) and attempt <= count:
            import torch

            raise torch.OutOfMemoryError(
                f"CUDA out of memory (injected by FACELESS_FAULT={spec}, attempt {attempt})")


def degrade(settings: dict, attempt: int) -> tuple[dict, dict | None]:
    """The settings for this attempt, and the rungs applied (None on the first attempt)."""
    rungs = settings["degrade"]
    applied: dict = {}
    for rung in rungs[:attempt - 1]:
        applied.update(rung)
    return {**settings, **applied}, (applied or None)


# CUDA errors that mean "this tensor is too big for the kernel", which a smaller decode (tiles,
# fewer frames at once) avoids: they go down the ladder like an OOM when raised in a VAE decode.
KERNEL_TOO_BIG = re.compile(r"CUDNN_STATUS_NOT_SUPPORTED|cuDNN error: .*not supported|canUse32BitIndexMath|"
                            r"32-bit index|32 bit index|INT_MAX|numel\(\) < 2\^31|too large for", re.I)
DECODE_FUNCTIONS = frozenset({"decode", "_decode", "tiled_decode", "_tiled_decode", "decode_latents"})


def kernel_too_big(error: BaseException) -> bool:
    """A CUDA RuntimeError from a VAE decode that means the tensor is too big for the kernel."""
    import torch

    if isinstance(error, torch.OutOfMemoryError) or not isinstance(error, RuntimeError):
        return False
    if not KERNEL_TOO_BIG.search(str(error)):
        return False
    tb = error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name in DECODE_FUNCTIONS:
            return True
        tb = tb.tb_next
    return False


def placement_floor(settings: dict) -> str | None:
    """The placement a profile setting or rung asks for at least (None: the plan decides)."""
    if settings.get("sequential_cpu_offload"):
        return "sequential_offload"
    if settings.get("model_cpu_offload"):
        return "model_offload"
    return None


def retries_for(settings: dict) -> int:
    return len(settings["degrade"])


def retry_on_oom(task, task_run_, state) -> bool:
    """Prefect retry condition: retry out-of-memory failures, fail at once on anything else."""
    import torch

    try:
        state.result()
    except torch.OutOfMemoryError:
        return True
    except BaseException:
        return False
    return False


def free_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.ipc_collect()
    except ImportError:
        pass


def _logger():
    try:
        from prefect import get_run_logger

        return get_run_logger()
    except Exception:  # called outside a flow or task run
        return logging.getLogger("faceless")


@contextlib.contextmanager
def memory_knobs(pipe, settings: dict):
    """Apply the memory-saving switches a degrade rung asked for, and undo them afterwards
    (the pipeline is shared with later scenes, which should start from full settings).
    Offload is not a switch here: it is the family's placement (tasks/runtime/placement.py),
    kept between shots."""
    undo: list[Callable[[], None]] = []
    try:
        if settings.get("attention_slicing") and hasattr(pipe, "enable_attention_slicing"):
            pipe.enable_attention_slicing()
            undo.append(pipe.disable_attention_slicing)
        if settings.get("vae_tiling") and hasattr(pipe.vae, "enable_tiling"):
            pipe.vae.enable_tiling()
            undo.append(pipe.vae.disable_tiling)
        if settings.get("forward_chunking") and hasattr(pipe.unet, "enable_forward_chunking"):
            pipe.unet.enable_forward_chunking()
            undo.append(lambda: _set_feed_forward_chunks(pipe.unet, None))
        yield
    finally:
        for step in reversed(undo):
            step()


def _set_feed_forward_chunks(model, chunk_size: int | None) -> None:
    # SVD's UNet can enable feed-forward chunking but has no method to turn it off again.
    for module in model.modules():
        if hasattr(module, "set_chunk_feed_forward"):
            module.set_chunk_feed_forward(chunk_size=chunk_size, dim=0)


@task(name="gpu", cache_policy=NO_CACHE, persist_result=False)
def _holding_gpu(work: Callable[[], Any]) -> Any:
    return work()


@functools.lru_cache(maxsize=None)
def _server_has_gpu_limit(api_url: str | None, name: str) -> bool:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
            return True
        except ObjectNotFound:
            return False


@functools.lru_cache(maxsize=None)
def ensure_gpu_limit(api_url: str | None, name: str) -> bool:
    """Create the GPU limit (1 slot) if the server has none; True if this call created it.
    A server set up by hand (not by deployments/stack.py) then works as it is."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
            return False
        except ObjectNotFound:
            pass
        try:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
        except Exception:  # another run created it in between
            client.read_global_concurrency_limit_by_name(name)
            return False
    _logger().warning("created the global concurrency limit %r (1 slot): the server had none "
                      "(`prefect gcl create %s --limit 1` makes it by hand)", name, name)
    return True


def on_gpu(label: str, work: Callable[[], Any]) -> Any:
    """Run `work` (model loading and inference) holding this machine's GPU slot.

    The work runs as its own task run, `gpu <label>`, started once the slot is held: the
    stage's task run also counts the time spent waiting for the slot, this one only the time
    on the GPU, so the run page (and the tests) can see that GPU work never overlaps.
    Deployment runs always take the slot, creating the limit if the server lacks it; a local
    `faceless render` uses it only if its server has one (its temporary server has none).
    """
    if TaskRunContext.get() is None:  # the stage's plain function, called outside Prefect
        return work()
    name = gpu_limit()
    api_url = os.environ.get("PREFECT_API_URL")
    strict = deployment.id is not None
    if strict:
        ensure_gpu_limit(api_url, name)
    elif not _server_has_gpu_limit(api_url, name):
        return work()
    with concurrency(name, occupy=1, strict=strict, lease_duration=GPU_LEASE_S,
                     raise_on_lease_renewal_failure=False):  # a server hiccup must not kill a render
        return _holding_gpu.with_options(task_run_name=f"gpu {label}")(work)


def run_gpu_stage(stage: str, scene: int | None, settings: dict, build: Callable[[Any, dict], dict]) -> dict:
    """run_stage for a model stage: degrade by attempt, starting at the rung this stage's family
    needed earlier in the flow run; turn an OOM (or a decode too big for its kernel) into a fresh
    OOM that holds no reference to the failed attempt's tensors."""
    import torch

    key = _family_key(stage, settings)
    with _STATE_LOCK:
        learning = _LEARNING.setdefault(key, threading.Lock())
    label = stage if scene is None else f"{stage}[{scene}]"
    # Until one shot of the stage has finished, shots run one at a time: each starts from the
    # rung the ones before it needed.
    guard = contextlib.nullcontext() if key in _LEARNED else learning
    with guard:
        attempt = attempt_number()
        # A failed attempt has already raised the remembered rung; a retry is at least one rung
        # below its last attempt.
        rung = min(max(remembered_rung(stage, settings), attempt - 1), retries_for(settings))
        applied, degraded = degrade(settings, rung + 1)
        if attempt > 1:
            free_memory()
            _logger().warning("%s attempt %d after running out of memory: degraded with %s", label, attempt, degraded)
        elif rung:
            _logger().info("%s starts at rung %d (%s): an earlier shot needed it", label, rung, degraded)
        message = None
        token = _RUNG.set(rung)
        try:
            result = run_stage(stage, lambda directory: build(directory, applied), degraded=degraded)
            remember_rung(stage, settings, rung)
            _LEARNED.add(key)
            return result
        except torch.OutOfMemoryError as error:
            message = str(error).splitlines()[0] if str(error) else "out of memory"
        except RuntimeError as error:
            if not kernel_too_big(error):
                raise
            message = "too big for the kernel in a VAE decode: " + str(error).splitlines()[0]
        finally:
            _RUNG.reset(token)
        # Outside the except block: the original exception, its traceback and every tensor its
        # frames held are released before memory is freed and the fresh error is raised.
        remember_rung(stage, settings, min(rung + 1, retries_for(settings)))
    free_memory()
    attempts = retries_for(settings) + 1
    run_id = flow_run.id or "<flow-run-id>"
    raise torch.OutOfMemoryError(
        f"{label} ran out of memory on attempt {attempt} of {attempts} "
        f"(degraded: {degraded or 'none'}): {message}. To resume once memory is free or the profile "
        f"asks for less, render the same story again, or run `faceless resume {run_id}`"
    )
