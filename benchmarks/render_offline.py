"""Offline render timings: a cold render, a cached re-render and Prefect's own floor.

    .venv/bin/python benchmarks/render_offline.py [--story FILE] [--runs 3]

Each cold run uses a fresh artifact store (the tiny models are built once beforehand and
shared; their build time is printed on its own). Every render is the real CLI in its own
process, as a user runs it, with no PREFECT_API_URL (so it pays for a temporary server).
Prints medians; this machine is noisy, so compare medians, not single runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TRIVIAL_FLOW = "from prefect import flow\n@flow\ndef noop():\n    return 1\nnoop()\n"


def timed(command: list[str], env: dict) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{result.stderr[-3000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--story", default=str(ROOT / "benchmarks" / "stories" / "lighthouse.txt"))
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="faceless-bench-"))
    base_env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    base_env.update(PREFECT_HOME=str(work / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    models = work / "models"

    build_env = {**base_env, "FACELESS_HOME": str(work / "build")}
    started = time.perf_counter()
    subprocess.run([str(BIN / "python"), "-c",
                    "from faceless.tasks.models import ensure_tiny\nfor m in ('sdxl-base','sdxl-refiner','svd'): ensure_tiny(m)"],
                   env=build_env, check=True, cwd=ROOT)
    build_s = time.perf_counter() - started
    os.rename(work / "build" / "models", models)

    words = len(Path(args.story).read_text(encoding="utf-8").split())
    cold, cached, floor = [], [], []
    stages: dict[str, list[float]] = defaultdict(list)
    narration = 0.0
    for run in range(args.runs):
        home = work / f"home-{run}"
        home.mkdir()
        (home / "models").symlink_to(models, target_is_directory=True)
        env = {**base_env, "FACELESS_HOME": str(home)}
        out = work / f"out-{run}"
        command = [str(BIN / "faceless"), "render", args.story, "--out", str(out)]
        cold.append(timed(command, env))
        manifest = json.loads(next(out.glob("*/manifest.json")).read_text())
        narration = manifest["narration"]["duration"]
        per_stage: dict[str, float] = defaultdict(float)
        for stage in manifest["stages"]:
            per_stage[stage["stage"]] += stage["seconds"]
        for name, seconds in per_stage.items():
            stages[name].append(seconds)
        cached.append(timed(command, env))
        manifest = json.loads(next(out.glob("*/manifest.json")).read_text())
        assert all(s["cached"] for s in manifest["stages"]), "re-render was not fully cached"
        floor.append(timed([str(BIN / "python"), "-c", TRIVIAL_FLOW], env))

    median = statistics.median
    print(f"story: {Path(args.story).name}, {words} words, {narration:.1f} s of narration; "
          f"{args.runs} runs, {os.cpu_count()} cores")
    print(f"tiny model build (once per FACELESS_HOME): {build_s:.1f} s")
    print(f"{'measure':<42}{'median s':>10}{'min s':>8}{'max s':>8}")
    rows = [("cold render (fresh store)", cold), ("re-render, every stage cached", cached),
            ("Prefect floor: empty flow, temporary server", floor)]
    rows += [(f"  stage {name} (sum over scenes, wall)", values) for name, values in stages.items()]
    for label, values in rows:
        print(f"{label:<42}{median(values):>10.1f}{min(values):>8.1f}{max(values):>8.1f}")
    print(f"cold render / narration length: {median(cold) / narration:.2f}x; "
          f"cached re-render / Prefect floor: {median(cached) / median(floor):.2f}x")


if __name__ == "__main__":
    main()
