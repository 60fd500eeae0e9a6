"""The GPU benchmark script runs (at toy size on a CPU) and reports every stage."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT


def test_studio_benchmark_runs_at_toy_size(models_home, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(models_home, target_is_directory=True)
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "studio_gpu.py"), "--story-seconds", "3"],
        env={**os.environ, "FACELESS_HOME": str(home)}, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "size: toy" in out
    for stage in ("load sdxl base + refiner", "keyframe scene 0", "load svd-xt", "animate scene 0"):
        assert stage in out
    assert "one scene (3 s, 2 SVD windows)" in out
    assert "3-second story (1 scenes" in out


def test_full_size_architectures_match_the_published_parameter_counts():
    # Built on the meta device (shapes, no memory): what the benchmark builds on a GPU.
    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from studio_gpu import build_full_size

    sdxl, svd = build_full_size(ROOT / "tasks" / "model_configs", "meta", torch.float16)
    base, refiner = sdxl()
    pipe = svd()

    def millions(module):
        return round(sum(p.numel() for p in module.parameters()) / 1e6, 1)

    assert millions(base.unet) == 2567.5
    assert millions(refiner.unet) == 2259.5
    assert millions(base.text_encoder_2) == 694.7
    assert millions(pipe.unet) == 1524.6
    assert refiner.text_encoder_2 is base.text_encoder_2 and refiner.vae is base.vae
    assert base.vae.config.force_upcast and base.unet.dtype == torch.float16
