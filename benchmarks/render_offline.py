"""How long `make render` takes, against the narration it makes and Prefect's own start.

    .venv/bin/python benchmarks/render_offline.py [--story FILE] [--profile offline]
        [--runs 3] [--cached-runs 3] [--fresh-models]

Every render is the real CLI in its own process, as `make render` runs it: no PREFECT_API_URL,
so each pays for a temporary Prefect server. Prints, as medians:

- cold: a render into an empty artifact store, the tiny models already built (they are built
  once beforehand and linked in; the build is timed on its own). With --fresh-models each cold
  run starts from an empty FACELESS_HOME and builds the models it needs itself, as on a fresh
  clone.
- cached: the same render again, every stage cached (checked).
- Prefect's own start: a no-op flow in a fresh process, the floor every render pays.

Seconds are wall time and CPU time (user + system of the whole process tree: the render, its
threads and the temporary server). On a shared machine the wall time moves with the load;
the CPU time much less. Verdicts: cold at most 1.5x the narration (2.5x with --fresh-models),
cached at most 5 s over Prefect's own start.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
NOOP_FLOW = "from prefect import flow\n@flow\ndef noop():\n    return 1\nnoop()\n"
COLD_LIMIT, FRESH_LIMIT, CACHED_OVER_PREFECT = 1.5, 2.5, 5.0
BUILD_MODELS = """
import sys
from faceless.tasks.models import ensure_tiny, profile_models
from faceless.tasks.settings import load_profile
for _, spec, _ in profile_models(load_profile(sys.argv[1])):
    if spec.startswith("tiny:"):
        ensure_tiny(spec.removeprefix("tiny:"))
"""


def timed(command: list[str], env: dict) -> tuple[float, float]:
    """Wall and CPU seconds (user + system of the process and everything it waited for)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{result.stderr[-3000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def stage_seconds(manifest: dict) -> dict[str, float]:
    per_stage: dict[str, float] = defaultdict(float)
    for stage in manifest["stages"]:
        per_stage[stage["stage"]] += stage["seconds"]
    return per_stage


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--story", default=str(ROOT / "deployments" / "stories" / "alin-learns-to-code.txt"),
                        help="story file (default: the sample story `make render` uses)")
    parser.add_argument("--profile", default="offline", help="profile name or .yaml file (default: offline)")
    parser.add_argument("--runs", type=int, default=3, help="cold renders (default: 3)")
    parser.add_argument("--cached-runs", type=int, default=3, help="cached re-renders (default: 3)")
    parser.add_argument("--fresh-models", action="store_true",
                        help="each cold run builds the tiny models itself, as on a fresh clone")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    story = Path(args.story).absolute()
    work = Path(tempfile.mkdtemp(prefix="faceless-bench-"))
    base_env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    base_env.update(PREFECT_HOME=str(work / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    # What the CLI sets for itself (flows/cli.py), so the no-op flow's temporary server gets
    # the same time to start on a busy machine.
    base_env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    median = statistics.median

    models = work / "models"
    build = None
    if not args.fresh_models:
        build = timed([str(BIN / "python"), "-c", BUILD_MODELS, args.profile],
                      {**base_env, "FACELESS_HOME": str(work / "build")})
        (work / "build" / "models").rename(models)

    rows: dict[str, list[tuple[float, float]]] = defaultdict(list)
    stages: dict[str, list[float]] = defaultdict(list)
    narration, load = 0.0, [os.getloadavg()[0]]
    for run in range(args.runs):
        home = work / f"home-{run}"
        home.mkdir()
        if not args.fresh_models:
            (home / "models").symlink_to(models, target_is_directory=True)
        env = {**base_env, "FACELESS_HOME": str(home)}
        out = work / f"out-{run}"
        command = [str(BIN / "faceless"), "render", str(story), "--profile", args.profile, "--out", str(out)]
        rows["cold"].append(timed(command, env))
        manifest = json.loads(next(out.glob("*/manifest.json")).read_text())
        narration = manifest["narration"]["duration"]
        for name, seconds in stage_seconds(manifest).items():
            stages[name].append(seconds)
        for _ in range(args.cached_runs if run == 0 else 0):
            rows["cached"].append(timed(command, env))
            manifest = json.loads(next(out.glob("*/manifest.json")).read_text())
            if not all(s["cached"] for s in manifest["stages"]):
                sys.exit("a re-render was not fully cached")
        rows["prefect"].append(timed([str(BIN / "python"), "-c", NOOP_FLOW], env))
        load.append(os.getloadavg()[0])
    for _ in range(max(0, args.cached_runs - len(rows["prefect"]))):
        rows["prefect"].append(timed([str(BIN / "python"), "-c", NOOP_FLOW], {**base_env, "FACELESS_HOME": str(work / "home-0")}))

    cold_label = "cold, building the tiny models" if args.fresh_models else "cold, tiny models built"
    labels = {"cold": cold_label, "cached": "cached, every stage", "prefect": "Prefect's own start (no-op flow)"}
    print(f"story: {story.name}, {narration:.1f} s of narration; profile {args.profile}; "
          f"{os.cpu_count()} cores, load average {min(load):.1f}-{max(load):.1f} over the runs")
    if build:
        print(f"tiny models built once beforehand: {build[0]:.1f} s wall, {build[1]:.1f} s CPU")
    print(f"{'measure':<36}{'runs':>5}{'wall s':>9}{'CPU s':>8}{'wall/narr':>11}{'CPU/narr':>10}")
    for key, label in labels.items():
        if rows[key]:
            wall, cpu = median(w for w, _ in rows[key]), median(c for _, c in rows[key])
            print(f"{label:<36}{len(rows[key]):>5}{wall:>9.1f}{cpu:>8.1f}{wall / narration:>10.2f}x{cpu / narration:>9.2f}x")
    for name, values in stages.items():
        print(f"  stage {name:<28}{len(values):>5}{median(values):>9.1f}   (wall, summed over shots)")

    limit = FRESH_LIMIT if args.fresh_models else COLD_LIMIT
    cold = median(w for w, _ in rows["cold"])
    print(f"cold: {cold / narration:.2f}x the narration (limit {limit}x): "
          f"{'PASS' if cold / narration <= limit else 'FAIL'}")
    if rows["cached"]:
        cached, prefect = median(w for w, _ in rows["cached"]), median(w for w, _ in rows["prefect"])
        print(f"cached: {cached - prefect:+.1f} s over Prefect's own start of {prefect:.1f} s "
              f"(limit +{CACHED_OVER_PREFECT:.0f} s): {'PASS' if cached - prefect <= CACHED_OVER_PREFECT else 'FAIL'}")


if __name__ == "__main__":
    main()
