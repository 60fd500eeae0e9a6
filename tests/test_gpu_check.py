"""benchmarks/gpu_check.py (one line without a GPU; the whole procedure at toy size with --toy),
benchmarks/gpu_work.py (TFLOP counted on the meta device, old vs new design), and the
full-size architectures it builds on a GPU (parameter counts, on the meta device)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_work  # noqa: E402
from faceless.tasks.settings import load_profile  # noqa: E402

SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
@pytest.mark.slow  # a fresh process importing torch, diffusers and prefect
def test_without_a_gpu_it_prints_one_line_and_exits_0():
    result = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu-check: no CUDA GPU here"), result.stdout
    assert "nothing measured" in lines[0] and not result.stderr.strip()


@pytest.mark.skipif(torch.cuda.is_available(), reason="--toy is the CPU check")
@pytest.mark.slow  # builds every model family and renders twice through the flow
def test_toy_run_goes_end_to_end_through_both_passes(tmp_path):
    started = time.monotonic()
    result = subprocess.run([sys.executable, str(SCRIPT), "--toy", "--scratch", str(tmp_path / "scratch")],
                            capture_output=True, text=True, timeout=900)
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    # The GPU work section: per-step counts and the before/after table for the 60 s story.
    assert "SDXL base" in out and "SVD-XT" in out and "published 160.0" in out
    assert "60-second story at studio settings" in out
    for row in ("BEFORE", "AFTER", "SVD-XT windows", "SVD-XT steps", "estimated PFLOP", "SVD steps after / before"):
        assert row in out
    # Both renders, their stage tables and windows (n/a until the manifest has them).
    assert out.count(": completed;") == 2, out
    for stage in ("plan", "narrate", "align", "keyframe", "animate", "compose"):
        assert f"\n{stage} " in out
    assert out.count("SVD windows per shot:") == 2
    assert "memory cap is CUDA-only" in out and "attempts  degraded" in out
    assert "pass 2 completed" in out and "total:" in out
    # The models were built in the scratch folder and the profile points at them.
    profile = (tmp_path / "scratch" / "profile.yaml").read_text()
    assert str(tmp_path / "scratch" / "models" / "svd") in profile and "tiny:" not in profile
    assert seconds < 600


@pytest.mark.slow  # counts FLOPs through full-size architectures
def test_meta_device_counts_match_the_published_tflop_per_step():
    for name, (counted, known) in gpu_work.known_tflop().items():
        assert abs(counted - known) / known < 0.15, (name, counted, known)
    per_step = gpu_work.step_tflop(load_profile("studio"))
    # Studio's 768x1344 keyframes have 1024x1024's pixel count: about the same work.
    assert 0.85 < per_step["sdxl_base"] / 13.4 < 1.15 and 0.85 < per_step["sdxl_refiner"] / 14.3 < 1.15
    assert 0.85 < per_step["svd"] / 160 < 1.15


def test_legacy_windows_chain_24_new_frames_a_window():
    assert gpu_work.legacy_windows(1.0) == 1  # 25 frames: one window
    assert gpu_work.legacy_windows(1.01) == 2
    assert gpu_work.legacy_windows(12.0) == 12  # a 12 s two-sentence scene
    assert gpu_work.legacy_windows(3.0, fps_conditioning=4, num_frames=8) == 2  # the tiny profile


@pytest.mark.slow  # counts FLOPs through full-size architectures on the meta device
def test_gpu_work_splits_the_sdxl_schedule_and_counts_svd_steps():
    studio = load_profile("studio")
    work = gpu_work.gpu_work(3, 5, studio)
    assert (work["sdxl_steps"], work["sdxl_base_steps"], work["sdxl_refiner_steps"]) == (300, 240, 60)
    assert (work["svd_windows"], work["svd_steps"]) == (5, 200)
    assert work["pflop"] == pytest.approx(work["sdxl_pflop"] + work["svd_pflop"])
    assert 30 < work["svd_pflop"] < 34  # 200 steps x ~160 TFLOP


@pytest.mark.slow  # narrates a 60 s story
def test_one_window_per_shot_needs_at_most_a_third_of_the_svd_steps_for_the_60_second_story():
    studio = load_profile("studio")
    plan, timing = gpu_work.piper_timing(gpu_work.NIGHT_TRAIN, studio)
    assert 55 < timing["duration"] < 66 and len(timing["sentences"]) == 14
    result = gpu_work.before_after(studio, plan, timing)
    before, after = result["before"], result["after"]
    assert before["keyframes"] == 7 and after["keyframes"] >= 12
    assert all(s["seconds"] <= 6.0 + 1e-9 and s["windows"] == 1 for s in result["shots"]), result["shots"]
    assert after["svd_steps"] * 3 <= before["svd_steps"], (before, after)
    assert after["pflop"] < before["pflop"]


@pytest.mark.slow  # builds every full-size architecture
def test_full_size_architectures_match_the_published_parameter_counts():
    # Built on the meta device (shapes, no memory): what gpu_check builds on a GPU.
    from gpu_check import full_size_pipelines, full_size_voice, millions

    sdxl, svd = full_size_pipelines("meta", torch.float16)
    base, refiner = sdxl()
    pipe = svd()
    assert round(millions(base.unet), 1) == 2567.5
    assert round(millions(refiner.unet), 1) == 2259.5
    assert round(millions(base.text_encoder_2), 1) == 694.7
    assert round(millions(pipe.unet), 1) == 1524.6
    assert refiner.text_encoder_2 is base.text_encoder_2 and refiner.vae is base.vae
    assert base.vae.config.force_upcast and base.unet.dtype == torch.float16

    bark, whisper = full_size_voice("meta")
    # suno/bark-small: three GPTs of 12 layers x 768 (85 M in their blocks each, the model
    # card's "80 M"), the real token-id vocabularies and the 24 kHz EnCodec; 404 M in all
    # (its fp16 checkpoint is 809 MB). Whisper large-v3: 1,543,490,560 parameters ("1.55 B").
    assert round(millions(bark), 1) == 404.4
    assert round(millions(bark.codec_model), 1) == 14.9
    for sub in (bark.semantic, bark.coarse_acoustics, bark.fine_acoustics):
        assert millions(sub.layers) == pytest.approx(85.0, abs=0.1)
    assert sum(p.numel() for p in whisper.parameters()) == 1_543_490_560
    assert whisper.config.vocab_size == 51866 and whisper.config.num_mel_bins == 128
