"""OOM machinery without a GPU: fault specs, degrade ladders, retry condition, memory hygiene."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch

from faceless.tasks.runtime import gpu

LADDER = {"decode_chunk_size": 8, "degrade": [{"decode_chunk_size": 4}, {"decode_chunk_size": 2}, {"model_cpu_offload": True}]}


def test_fault_spec_parses_stage_scene_and_count():
    assert gpu.parse_faults("animate:oom:2, keyframe[3]:oom:1, animate[1]:oom:99@1") == [
        ("animate", None, 2, None), ("keyframe", 3, 1, None), ("animate", 1, 99, 1)]
    with pytest.raises(gpu.FaultSpecError):
        gpu.parse_faults("animate:boom:1")


def test_injected_fault_is_a_real_oom_for_the_named_scene_only(monkeypatch):
    monkeypatch.setenv("FACELESS_FAULT", "animate[2]:oom:1")
    gpu.inject_fault("animate", 1)
    gpu.inject_fault("keyframe", 2)
    with pytest.raises(torch.OutOfMemoryError):
        gpu.inject_fault("animate", 2)
    assert issubclass(torch.OutOfMemoryError, RuntimeError)


def test_each_attempt_adds_one_rung():
    assert gpu.degrade(LADDER, 1) == (LADDER, None)
    settings, degraded = gpu.degrade(LADDER, 3)
    assert degraded == {"decode_chunk_size": 2} and settings["decode_chunk_size"] == 2
    settings, degraded = gpu.degrade(LADDER, 4)
    assert degraded == {"decode_chunk_size": 2, "model_cpu_offload": True}
    assert gpu.retries_for(LADDER) == 3


class _State:
    def __init__(self, error):
        self.error = error

    def result(self):
        raise self.error


def test_only_out_of_memory_is_retried():
    assert gpu.retry_on_oom(None, None, _State(torch.OutOfMemoryError("CUDA out of memory")))
    assert not gpu.retry_on_oom(None, None, _State(ValueError("bad prompt")))
    assert not gpu.retry_on_oom(None, None, _State(RuntimeError("CUDA error: illegal address")))


def test_failed_attempt_keeps_no_tensor_alive(monkeypatch):
    monkeypatch.setenv("FACELESS_FAULT", "animate:oom:1")
    monkeypatch.setattr(gpu, "run_stage", lambda stage, build, degraded=None: build("unused-dir"))
    probe: list[weakref.ref] = []

    def build(directory, settings):
        activations = torch.ones(256, 256)  # what a real model would hold when memory runs out
        probe.append(weakref.ref(activations))
        gpu.inject_fault("animate", 0)

    with pytest.raises(torch.OutOfMemoryError) as caught:
        gpu.run_gpu_stage("animate", 0, LADDER, build)
    error = caught.value
    assert "animate[0] ran out of memory on attempt 1 of 4" in str(error) and "faceless resume" in str(error)
    assert error.__context__ is None and error.__cause__ is None
    gc.collect()
    assert probe[0]() is None, "the failed attempt's tensor is still referenced"
    frame_locals = []
    tb = error.__traceback__
    while tb is not None:
        frame_locals.extend(tb.tb_frame.f_locals.values())
        tb = tb.tb_next
    assert not any(isinstance(value, torch.Tensor) for value in frame_locals)
