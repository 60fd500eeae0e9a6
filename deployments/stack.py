"""The local Prefect stack for Faceless, in one command; Ctrl-C (or SIGTERM) stops all of it.

    .venv/bin/python deployments/stack.py [--port 4200]      (or: make stack)

brings up, in this order:
  1. `prefect server start` on 127.0.0.1 (UI and API at http://127.0.0.1:PORT)
  2. the process work pool `faceless`
  3. the global concurrency limit `gpu` (1 slot: model stages take it inside their tasks)
  4. every deployment in prefect.yaml (`prefect deploy --all`)
  5. two automations: runs whose heartbeats stop are marked Crashed, and a crashed
     story-to-video run is resumed from its artifacts (at most twice, flows/resume.py)
  6. a worker on the pool; deployment runs start in their own processes from this clone

State lives in $PREFECT_HOME (default ~/.prefect), artifacts in $FACELESS_HOME. Other shells
reach the stack with PREFECT_API_URL=http://127.0.0.1:PORT/api (printed when it is up).

It survives its own faults: concurrency leases are kept on disk (in $PREFECT_HOME), so a slot
held by a run that was killed with the server comes free when its lease runs out (60 s) after
the next `make stack`; flow runs send a heartbeat every PREFECT_FLOWS_HEARTBEAT_FREQUENCY
seconds (30 here), and a run silent for three heartbeats is marked Crashed, then resumed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
POOL = "faceless"
GPU_LIMIT = "gpu"
ZOMBIE_AUTOMATION = "faceless: crash runs whose heartbeats stopped"
RESUME_AUTOMATION = "faceless: resume crashed story runs"
RESUME_DEPLOYMENT = "resume-crashed/auto"
# A run silent for this many heartbeats lost its process (Prefect's documented window is three;
# the tests use two, through FACELESS_ZOMBIE_HEARTBEATS, to wait less for a killed run).
HEARTBEATS_PER_WINDOW = int(os.environ.get("FACELESS_ZOMBIE_HEARTBEATS") or 3)


def stack_env(port: int, base: dict | None = None) -> dict:
    env = dict(os.environ if base is None else base)
    env.update({
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api",  # what the UI in the browser calls
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",  # no phoning home (there may be no network)
        "DO_NOT_TRACK": "1",
    })
    # A stage waiting for the GPU asks again after at most this long (Prefect's default, 30 s,
    # would leave the GPU idle between short stages).
    env.setdefault("PREFECT_SERVER_CONCURRENCY_MAXIMUM_CONCURRENCY_SLOT_WAIT_SECONDS", "2")
    # Leases of concurrency slots on disk ($PREFECT_HOME/concurrency_leases), not in the server's
    # memory: after a crash and restart the server still knows them and frees them when they expire.
    env.setdefault("PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE", "prefect.server.concurrency.lease_storage.filesystem")
    # Deployment runs (started by the worker, which passes its environment on) send a heartbeat
    # this often; the zombie automation's window is three of them. 30 s is Prefect's minimum.
    env.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", "30")
    return env


def _prefect(*args: str, env: dict) -> None:
    result = subprocess.run([str(BIN / "prefect"), "--no-prompt", *args], cwd=ROOT, env=env,
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"prefect {' '.join(args)} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")


def start_server(env: dict, port: int, log: Path, timeout: float = 120) -> subprocess.Popen:
    with socket.socket() as probe:  # else the health check below would find the other server
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            raise RuntimeError(f"port {port} is already in use; pick another with --port")
    server = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, env={k: v for k, v in env.items() if k != "PREFECT_API_URL"},
        stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{env['PREFECT_API_URL']}/health", timeout=2) as response:
                if response.status == 200:
                    return server
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            stop(server)
            raise RuntimeError(f"prefect server did not start; see {log}")
        time.sleep(0.25)


def create_pool(env: dict, base_job_template: Path | None = None) -> None:
    extra = ["--base-job-template", str(base_job_template)] if base_job_template else []
    _prefect("work-pool", "create", POOL, "--type", "process", *extra, "--overwrite", env=env)


def create_gpu_limit(env: dict, slots: int = 1) -> None:
    code = ("import sys; from prefect.client.orchestration import get_client\n"
            "with get_client(sync_client=True) as c: c.upsert_global_concurrency_limit_by_name(sys.argv[1], int(sys.argv[2]))")
    subprocess.run([sys.executable, "-c", code, GPU_LIMIT, str(slots)], cwd=ROOT, env=env, check=True)


def deploy(env: dict) -> None:
    _prefect("deploy", "--all", env=env)


def create_automations(env: dict, max_resumes: int | None = None) -> None:
    """The zombie-run automation (Prefect's documented one, its window three heartbeats) and the
    one that resumes a crashed story-to-video run; both replaced by name, so a restart keeps one."""
    code = """
import sys
from datetime import timedelta
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState, RunDeployment
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification

zombie_name, resume_name, resume_deployment, window = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
max_resumes = None if sys.argv[5] == "-" else int(sys.argv[5])
zombie = AutomationCore(
    name=zombie_name,
    description="A flow run with no heartbeat for three heartbeat periods lost its process: mark it Crashed.",
    trigger=EventTrigger(
        after={"prefect.flow-run.heartbeat"},
        # A suspended run (the storyboard review, flows/review.py) has no process and sends no
        # heartbeat until it is resumed: suspension ends the watch as finishing does.
        expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Completed", "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled", "prefect.flow-run.Crashed", "prefect.flow-run.Suspended",
                "prefect.flow-run.Paused"},
        match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
        for_each={"prefect.resource.id"}, posture=Posture.Proactive, threshold=1,
        within=timedelta(seconds=window)),
    actions=[ChangeFlowRunState(state=StateType.CRASHED,
                                message=f"No heartbeat for {window} s: the run's process is gone.")])
with get_client(sync_client=True) as client:
    deployment = client.read_deployment_by_name(resume_deployment)
    # Resume from here too: after a server restart the Crashed event below waits 15 minutes
    # for the run's earlier events (seen only by the old server) before automations see it.
    zombie.actions.append(RunDeployment(
        source="selected", deployment_id=deployment.id,
        # A proactive firing has no triggering event to template from, only its labels. `| string`:
        # Prefect renders a lone {{ expression }} through `tojson`, which a label object fails.
        parameters={"flow_run_id": "{{ labels.prefect.resource.id | string }}",
                    **({} if max_resumes is None else {"max_resumes": max_resumes})}))
    resume = AutomationCore(
        name=resume_name,
        description="A crashed story-to-video run starts again from its artifacts (flows/resume.py).",
        trigger=EventTrigger(
            expect={"prefect.flow-run.Crashed"},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            match_related=ResourceSpecification({"prefect.resource.role": "flow",
                                                 "prefect.resource.name": "story-to-video"}),
            posture=Posture.Reactive, threshold=1, within=timedelta(0)),
        actions=[RunDeployment(source="selected", deployment_id=deployment.id,
                               parameters={"flow_run_id": "{{ event.resource.id | string }}",
                                           **({} if max_resumes is None else {"max_resumes": max_resumes})})])
    for automation in (zombie, resume):
        # Kept as they are when unchanged: deleting an automation drops its open buckets, and
        # a run killed with the last stack would then never be marked Crashed.
        automation.description += f" [v5, {window} s, {deployment.id}, {max_resumes}]"
        existing = client.read_automations_by_name(automation.name)
        if len(existing) == 1 and existing[0].description == automation.description:
            continue
        for old in existing:
            client.delete_automation(old.id)
        client.create_automation(automation)
"""
    window = HEARTBEATS_PER_WINDOW * int(env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"])
    subprocess.run([sys.executable, "-c", code, ZOMBIE_AUTOMATION, RESUME_AUTOMATION, RESUME_DEPLOYMENT,
                    str(window), "-" if max_resumes is None else str(max_resumes)], cwd=ROOT, env=env, check=True)


def auth_headers(env: dict) -> dict:
    """The HTTP header a server started with an auth string wants (none without one)."""
    import base64

    auth = env.get("PREFECT_API_AUTH_STRING")
    return {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()} if auth else {}


def online_workers(env: dict) -> list[str]:
    request = urllib.request.Request(f"{env['PREFECT_API_URL']}/work_pools/{POOL}/workers/filter", data=b"{}",
                                     headers={"Content-Type": "application/json", **auth_headers(env)}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return [w["name"] for w in json.load(response) if w.get("status") == "ONLINE"]


def start_worker(env: dict, log: Path, timeout: float = 120) -> subprocess.Popen:
    """A worker on the pool, returned once the server has its first heartbeat (it is polling)."""
    before = set(online_workers(env))
    worker = subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", POOL], cwd=ROOT, env=env,
                              stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while not set(online_workers(env)) - before:
        if worker.poll() is not None or time.monotonic() > deadline:
            stop(worker)
            raise RuntimeError(f"the worker did not come online; see {log}")
        time.sleep(0.25)
    return worker


def stop(process: subprocess.Popen, timeout: float = 30, second_term_after: float | None = None) -> None:
    """SIGTERM to the process's group (a worker's flow runs, the server's services), then SIGKILL.
    With `second_term_after`, a second SIGTERM after that many seconds (an idle worker ignores
    the first for a while)."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        if second_term_after is not None:
            try:
                process.wait(timeout=second_term_after)
                return
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def stop_requested() -> threading.Event:
    """Set by SIGTERM or SIGINT (Ctrl-C): the foreground loop then stops its processes in order."""
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    return stopping


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=4200)
    parser.add_argument("--logs", type=Path, default=None, help="folder for server.log and worker.log "
                        "(default: $PREFECT_HOME, else ~/.prefect)")
    args = parser.parse_args(argv)
    env = stack_env(args.port)
    logs = args.logs or Path(env.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    logs.mkdir(parents=True, exist_ok=True)

    stopping = stop_requested()

    processes: list[subprocess.Popen] = []
    try:
        for label, step in (
            (f"server on http://127.0.0.1:{args.port}", lambda: processes.append(
                start_server(env, args.port, logs / "server.log"))),
            (f"work pool {POOL!r}", lambda: create_pool(env)),
            (f"global concurrency limit {GPU_LIMIT!r} (1 slot)", lambda: create_gpu_limit(env)),
            ("deployments from prefect.yaml", lambda: deploy(env)),
            (f"automations: crash runs silent for {HEARTBEATS_PER_WINDOW} heartbeats "
             f"({env['PREFECT_FLOWS_HEARTBEAT_FREQUENCY']} s each), resume crashed story runs",
             lambda: create_automations(env)),
            (f"worker on {POOL!r}", lambda: processes.append(start_worker(env, logs / "worker.log"))),
        ):
            started = time.perf_counter()
            step()
            print(f"stack: {label}: {time.perf_counter() - started:.1f} s", flush=True)
            if stopping.is_set():
                return 130
        print(f"stack: ready. UI http://127.0.0.1:{args.port}; in another shell:\n"
              f"  export PREFECT_API_URL={env['PREFECT_API_URL']}\n"
              f"  prefect deployment run 'story-to-video/offline' --param story_file=deployments/stories/"
              f"alin-learns-to-code.txt --watch\n"
              f"stack: logs in {logs}; Ctrl-C stops the worker and the server", flush=True)
        while not stopping.is_set():
            for process in processes:
                if process.poll() is not None:
                    print(f"stack: the {process.args[1]} exited ({process.returncode}); "
                          f"stopping; see {logs}", file=sys.stderr, flush=True)
                    return 1
            time.sleep(0.5)
        return 0
    except RuntimeError as error:
        print(f"stack: error: {error}", file=sys.stderr, flush=True)
        return 1
    finally:
        for process in reversed(processes):  # the worker first, so its runs end while the server is up
            stop(process)
        print("stack: stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
