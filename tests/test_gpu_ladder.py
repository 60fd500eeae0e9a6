"""Degrade ladders that remember: the rung a family needed is where its later shots start, a
decode too big for its kernel steps down like an OOM, anything else fails at once. No GPU, no
Prefect server: run_gpu_stage is called as a task body would call it."""

from __future__ import annotations

import threading

import pytest
import torch

from faceless.tasks.profile_schema import Profile
from faceless.tasks.runtime import gpu
from faceless.tasks.settings import load_profile

LADDER = {"backend": "svd", "decode_chunk_size": 8,
          "degrade": [{"decode_chunk_size": 4}, {"decode_chunk_size": 2}, {"model_cpu_offload": True}]}


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    gpu.forget_rungs()
    monkeypatch.setattr(gpu, "run_stage", lambda stage, build, degraded=None: {"degraded": degraded, **build("dir")})
    yield
    gpu.forget_rungs()


def attempt(monkeypatch, number: int):
    monkeypatch.setattr(gpu, "attempt_number", lambda: number)


def shot(settings_seen: list, fail_above: int | None = None, error=None):
    def build(directory, settings):
        settings_seen.append(settings["decode_chunk_size"])
        if error is not None:
            raise error
        if fail_above is not None and settings["decode_chunk_size"] > fail_above:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return {"chunk": settings["decode_chunk_size"]}
    return build


def test_a_later_shot_starts_at_the_rung_an_earlier_one_needed(monkeypatch):
    seen: list[int] = []
    attempt(monkeypatch, 1)
    with pytest.raises(torch.OutOfMemoryError):
        gpu.run_gpu_stage("animate", 0, LADDER, shot(seen, fail_above=4))
    attempt(monkeypatch, 2)  # Prefect's retry of shot 0
    assert gpu.run_gpu_stage("animate", 0, LADDER, shot(seen, fail_above=4))["chunk"] == 4
    attempt(monkeypatch, 1)  # shot 1's first attempt starts at rung 1: no failed attempt
    result = gpu.run_gpu_stage("animate", 1, LADDER, shot(seen, fail_above=4))
    assert result == {"chunk": 4, "degraded": {"decode_chunk_size": 4}}
    assert seen == [8, 4, 4]
    assert gpu.remembered_rung("animate", LADDER) == 1


def test_the_rung_is_per_stage_and_backend(monkeypatch):
    gpu.remember_rung("animate", LADDER, 2)
    assert gpu.remembered_rung("keyframe", LADDER) == 0
    assert gpu.remembered_rung("animate", {**LADDER, "backend": "wan"}) == 0
    gpu.remember_rung("animate", LADDER, 1)  # never climbs back up
    assert gpu.remembered_rung("animate", LADDER) == 2


def test_injected_fault_follows_the_rung_not_the_task_attempt(monkeypatch):
    monkeypatch.setenv("FACELESS_FAULT", "animate:oom:1")
    seen: list[int] = []

    def build(directory, settings):
        gpu.inject_fault("animate", 0)
        seen.append(settings["decode_chunk_size"])
        return {}

    attempt(monkeypatch, 1)
    with pytest.raises(torch.OutOfMemoryError):
        gpu.run_gpu_stage("animate", 0, LADDER, build)
    attempt(monkeypatch, 2)
    gpu.run_gpu_stage("animate", 0, LADDER, build)
    attempt(monkeypatch, 1)
    for scene in (1, 2):  # start at rung 1: the fault (rung 0 only) is behind them
        assert gpu.run_gpu_stage("animate", scene, LADDER, build)["degraded"] == {"decode_chunk_size": 4}
    assert seen == [4, 4, 4]


def test_first_shot_runs_alone_until_it_has_learned(monkeypatch):
    attempt(monkeypatch, 1)
    inside, overlap = threading.Semaphore(0), []
    running = threading.Lock()

    def build(directory, settings):
        if not running.acquire(blocking=False):
            overlap.append(True)
            return {}
        try:
            threading.Event().wait(0.2)
        finally:
            running.release()
        return {}

    threads = [threading.Thread(target=gpu.run_gpu_stage, args=("animate", i, LADDER, build)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not overlap


def too_big() -> RuntimeError:
    return RuntimeError("cuDNN error: CUDNN_STATUS_NOT_SUPPORTED. This error may appear if you passed in "
                        "a non-contiguous input.")


def decode(error):
    raise error


def test_a_decode_too_big_for_its_kernel_goes_down_the_ladder(monkeypatch):
    attempt(monkeypatch, 1)

    def build(directory, settings):
        decode(RuntimeError("Expected canUse32BitIndexMath(input) && canUse32BitIndexMath(output) to be true"))

    with pytest.raises(torch.OutOfMemoryError, match="too big for the kernel"):
        gpu.run_gpu_stage("animate", 0, LADDER, build)
    assert gpu.remembered_rung("animate", LADDER) == 1


def test_other_errors_fail_at_once(monkeypatch):
    attempt(monkeypatch, 1)
    for error in (RuntimeError("CUDA error: an illegal memory access"), ValueError("bad prompt")):
        with pytest.raises(type(error)):
            gpu.run_gpu_stage("animate", 0, LADDER, shot([], error=error))
    # the same cuDNN message outside a decode is not a decode too big
    with pytest.raises(RuntimeError, match="CUDNN"):
        gpu.run_gpu_stage("animate", 0, LADDER, shot([], error=too_big()))
    assert gpu.remembered_rung("animate", LADDER) == 0


def test_kernel_too_big_needs_a_decode_frame():
    try:
        decode(too_big())
    except RuntimeError as error:
        assert gpu.kernel_too_big(error)
    assert not gpu.kernel_too_big(too_big())  # never raised: not from a decode
    assert not gpu.kernel_too_big(torch.OutOfMemoryError("CUDA out of memory"))


def test_svd_schema_refuses_vae_tiling_and_attention_slicing():
    studio = load_profile("studio")
    for key in ("vae_tiling", "attention_slicing"):
        with pytest.raises(ValueError):
            Profile.model_validate({**studio, "animate": {**studio["animate"], "degrade": [{key: True}]}})
        with pytest.raises(ValueError):
            Profile.model_validate({**studio, "animate": {**studio["animate"], key: True}})
