"""The local stack survives its own faults, for real: `kill -9` of the stack (server, worker and
the flow run's process) while a model stage holds the GPU slot, then `deployments/stack.py`
again (what `make stack` runs). No manual reset: a new story renders to the end, the killed run
is marked Crashed by the zombie-run automation and resumed from its artifacts automatically.
Then the `gpu` limit is deleted, as on a server set up by hand, and a deployment run still
completes (the run creates the limit and says so)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BIN, QUICK_STACK_ENV, ROOT, _free_port
from test_deployments import api, prefect, run_id_of, task_runs, write_story

pytestmark = pytest.mark.slow  # the local stack killed and restarted, waiting out leases and heartbeats


def start_stack(env: dict, port: int, logs: Path, timeout: float = 300) -> tuple[subprocess.Popen, list[str], float]:
    started = time.monotonic()
    process = subprocess.Popen([str(BIN / "python"), "deployments/stack.py", "--port", str(port), "--logs", str(logs)],
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = []
    deadline = time.monotonic() + timeout
    for line in process.stdout:
        output.append(line)
        if line.startswith("stack: ready") or time.monotonic() > deadline:
            break
    if not output or not output[-1].startswith("stack: ready"):
        process.kill()
        raise RuntimeError("stack did not come up:\n" + "".join(output)[-4000:])
    return process, output, time.monotonic() - started


def descendants(pid: int) -> list[int]:
    """Every process below pid (from /proc), children first found first."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def wait_for(check, timeout: float, what, every: float = 2):
    """`what`: text, or a function giving it (called on timeout, to show the state reached)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what() if callable(what) else what}"
        time.sleep(every)


def flow_run(stack: dict, run_id: str) -> dict:
    return api(stack, f"/flow_runs/{run_id}")


def states(stack: dict, run_id: str) -> dict[str, str]:
    return {t["name"].rsplit("-", 1)[0]: t["state_name"] for t in task_runs(stack, run_id)}


@pytest.fixture(scope="module")
def faulty_stack(tmp_path_factory, models_home):
    home = tmp_path_factory.mktemp("faulty-stack")
    faceless_home = home / "faceless"
    faceless_home.mkdir()
    (faceless_home / "models").symlink_to(models_home, target_is_directory=True)
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(home / "prefect"), "FACELESS_HOME": str(faceless_home), **QUICK_STACK_ENV}
    env.pop("PREFECT_API_URL", None)
    url = f"http://127.0.0.1:{port}/api"
    stack = {"env": {**env, "PREFECT_API_URL": url}, "url": url, "home": home, "port": port, "base_env": env,
             "timings": {}}
    stack["process"], stack["output"], stack["timings"]["first start"] = start_stack(env, port, home)
    yield stack
    process = stack["process"]
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
    print("timings:", {k: round(v, 1) for k, v in stack["timings"].items()})


def test_kill_9_of_everything_then_make_stack_renders_and_resumes_the_killed_run(faulty_stack, tmp_path):
    stack = faulty_stack
    steps = "".join(stack["output"])
    assert "stack: automations: crash runs silent for 2 heartbeats (30 s each)" in steps, steps

    # A story whose keyframe hangs inside the GPU slot (a stand-in for a long model stage).
    story, out = write_story(tmp_path, "fox"), tmp_path / "out"
    started = prefect(stack, "deployment", "run", "story-to-video/offline", "--param", f"story_file={story}",
                      "--param", f"out={out}", "--job-variable", 'env={"FACELESS_FAULT": "keyframe:hang:900"}')
    assert started.returncode == 0, started.stdout[-3000:] + started.stderr[-2000:]
    killed = run_id_of(started.stdout)

    def holding_the_slot():
        runs = states(stack, killed)
        done = all(runs.get(stage) == "Completed" for stage in ("plan", "narrate", "align"))
        # Whichever shot's keyframe took the slot first (the story has three).
        holding = any(name.startswith("gpu keyframe[") and state == "Running" for name, state in runs.items())
        return done and holding and runs
    before_kill = wait_for(holding_the_slot, 300,
                           lambda: f"the keyframe to hold the gpu slot; task runs: {states(stack, killed)}")
    assert api(stack, "/v2/concurrency_limits/gpu")["active_slots"] == 1

    # kill -9: the stack's process, the server, the worker and the flow run's process.
    victims = [stack["process"].pid, *descendants(stack["process"].pid)]
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    stack["process"].wait()
    for pid in victims:
        wait_for(lambda: not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split(") ")[1][0] == "Z",
                 30, f"process {pid} to die", every=0.2)
    killed_at = time.monotonic()

    # The same command again; nothing reset by hand.
    stack["process"], stack["output"], stack["timings"]["restart after kill -9"] = start_stack(
        stack["base_env"], stack["port"], stack["home"])

    # A new story renders to the end (the dead run's slot comes free when its lease runs out).
    new_story, new_out = write_story(tmp_path, "lamp"), tmp_path / "new-out"
    rendered = time.monotonic()
    result = prefect(stack, "deployment", "run", "story-to-video/offline", "--param", f"story_file={new_story}",
                     "--param", f"out={new_out}", "--watch")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert (new_out / "lamp" / "video.mp4").stat().st_size > 0
    stack["timings"]["new story after restart"] = time.monotonic() - rendered

    # The killed run is marked Crashed (no heartbeat for three periods) ...
    wait_for(lambda: flow_run(stack, killed)["state_type"] == "CRASHED", 300, "the killed run to be Crashed")
    stack["timings"]["kill to Crashed"] = time.monotonic() - killed_at

    # ... and resumed once, automatically, with the stages finished before the kill Cached.
    def resumes():
        return api(stack, "/flow_runs/filter", {"flow_runs": {"tags": {"all_": [f"resume-of:{killed}"]}}})
    resume = wait_for(resumes, 180, "the automatic resume")
    assert len(resume) == 1, resume
    resume_id = resume[0]["id"]
    finished = wait_for(lambda: (r := flow_run(stack, resume_id))["state_type"] in ("COMPLETED", "FAILED", "CRASHED") and r,
                        600, "the resume to finish")
    assert finished["state_type"] == "COMPLETED", finished["state"]
    stack["timings"]["kill to resumed video"] = time.monotonic() - killed_at
    assert finished["parameters"] == flow_run(stack, killed)["parameters"]
    assert (out / "fox" / "video.mp4").stat().st_size > 0
    after = states(stack, resume_id)
    assert {stage: after[stage] for stage in ("plan", "narrate", "align")} == {
        "plan": "Cached", "narrate": "Cached", "align": "Cached"}, (before_kill, after)
    assert after["keyframe"] == "Completed" and after["compose"] == "Completed", after
    assert flow_run(stack, killed)["state_type"] == "CRASHED"


def test_deployment_run_on_a_server_without_the_gpu_limit_creates_it(faulty_stack, tmp_path):
    stack = faulty_stack
    deleted = prefect(stack, "--no-prompt", "gcl", "delete", "gpu")
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    story, out = write_story(tmp_path, "kite"), tmp_path / "out"
    result = prefect(stack, "deployment", "run", "story-to-video/offline", "--param", f"story_file={story}",
                     "--param", f"out={out}", "--watch")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert (out / "kite" / "video.mp4").stat().st_size > 0
    limit = api(stack, "/v2/concurrency_limits/gpu")
    assert limit["limit"] == 1 and limit["active_slots"] == 0
    logs = api(stack, "/logs/filter", {"logs": {"flow_run_id": {"any_": [run_id_of(result.stdout)]}}})
    created = [log["message"] for log in logs if "created the global concurrency limit 'gpu'" in log["message"]]
    assert len(created) == 1, [log["message"] for log in logs]
