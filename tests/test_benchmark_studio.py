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
