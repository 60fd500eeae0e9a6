"""Time each step of the local stack and a deployment run end to end; prints medians.

    .venv/bin/python benchmarks/deploy_stack.py [--repeat 3] [--story benchmarks/stories/...]

Each repeat uses a fresh PREFECT_HOME (SQLite database) and a fresh artifact store, so the run
is a cold render; the tiny models are built once and shared. The worker polls at Prefect's
default (every 10 s), as in `make stack`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "deployments"))
import stack  # noqa: E402  (deployments/stack.py: the steps `make stack` runs)

STORY = "A small fox found a golden key under the old oak tree. She opened the door in the hill."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(step) -> float:
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


def flow_run(env: dict, run_id: str) -> dict:
    with urllib.request.urlopen(f"{env['PREFECT_API_URL']}/flow_runs/{run_id}", timeout=10) as response:
        return json.load(response)


def once(work: Path, models: Path, story: Path) -> dict:
    home = Path(tempfile.mkdtemp(dir=work))
    (home / "faceless").mkdir()
    (home / "faceless" / "models").symlink_to(models, target_is_directory=True)
    port = free_port()
    base = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env = stack.stack_env(port, {**base, "PREFECT_HOME": str(home / "prefect"), "FACELESS_HOME": str(home / "faceless"),
                                 "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false"})
    processes = []
    times: dict[str, float] = {}
    try:
        times["server start"] = timed(lambda: processes.append(stack.start_server(env, port, home / "server.log")))
        times["work pool create"] = timed(lambda: stack.create_pool(env))
        times["gpu limit create"] = timed(lambda: stack.create_gpu_limit(env))
        times["prefect deploy --all"] = timed(lambda: stack.deploy(env))
        times["worker online"] = timed(lambda: processes.append(stack.start_worker(env, home / "worker.log")))
        started = time.perf_counter()
        result = subprocess.run(
            [str(stack.BIN / "prefect"), "deployment", "run", "story-to-video/offline", "--param",
             f"story_file={story}", "--param", f"out={home / 'out'}", "--watch"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
        times["deployment run --watch (cold render)"] = time.perf_counter() - started
        if result.returncode != 0:
            raise RuntimeError(result.stdout[-3000:] + result.stderr[-2000:])
        run_id = next(line.split("UUID:")[1].strip() for line in result.stdout.splitlines() if "UUID:" in line)
        run = flow_run(env, run_id)
        created, start, end = (dt.datetime.fromisoformat(run[k]) for k in ("created", "start_time", "end_time"))
        times["worker pick-up (created -> flow running)"] = (start - created).total_seconds()
        times["flow run (running -> completed)"] = (end - start).total_seconds()
    finally:
        for process in reversed(processes):
            stack.stop(process)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="faceless-deploy-bench-"))
    story = work / "fox.txt"
    story.write_text(STORY, encoding="utf-8")
    models = work / "models"
    models.mkdir()
    rows = []
    for i in range(args.repeat):
        rows.append(once(work, models, story))
        print(f"run {i + 1}: " + ", ".join(f"{k} {v:.1f} s" for k, v in rows[-1].items()), flush=True)
    print(f"\nmedians of {len(rows)} (first run also builds the tiny models):")
    for key in rows[0]:
        values = [r[key] for r in rows]
        print(f"  {key:45s} {statistics.median(values):6.1f} s   (min {min(values):.1f}, max {max(values):.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
