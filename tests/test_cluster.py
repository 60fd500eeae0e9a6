"""`make cluster` for real: PostgreSQL, SeaweedFS S3, the Prefect server on PostgreSQL and two
workers with their own scratch folders and GPU slots, all on 127.0.0.1 (deployments/cluster.py).
A batch of stories runs on both workers with every artifact in the bucket; a worker killed
while animating has its story finished by the other one, the finished stages Cached."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BIN, QUICK_STACK_ENV, ROOT, _free_port
from test_deployments import api, run_id_of, task_runs, write_story
from test_stack_faults import descendants, wait_for

pytestmark = pytest.mark.slow  # PostgreSQL, SeaweedFS, a Prefect server and two workers, rendering batches

BUCKET = "faceless"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, models_home):
    folder = tmp_path_factory.mktemp("cluster")
    for worker in ("worker-1", "worker-2"):  # the tiny models, built once per test session
        (folder / worker).mkdir()
        (folder / worker / "models").symlink_to(models_home, target_is_directory=True)
    env = {**os.environ, **QUICK_STACK_ENV}
    started = time.monotonic()
    process = subprocess.Popen([str(BIN / "python"), "deployments/cluster.py", "--dir", str(folder),
                                # One run per worker at a time: runs spread over both workers
                                # deterministically (a worker with free slots takes every waiting run).
                                "--port", str(_free_port()), "--runs-per-worker", "1"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    output = []
    for line in process.stdout:
        output.append(line)
        if line.startswith("cluster: ready") or time.monotonic() - started > 300:
            break
    if not output or not output[-1].startswith("cluster: ready"):
        process.kill()
        raise RuntimeError("cluster did not come up:\n" + "".join(output)[-4000:])
    exports = dict(line[len("export "):].strip().split("=", 1) for line in output if line.startswith("export "))
    client_env = {**os.environ, **exports, "PREFECT_HOME": str(folder / "client")}
    yield {"process": process, "output": output, "folder": folder, "exports": exports, "env": client_env,
           "url": exports["PREFECT_API_URL"], "timings": {"cluster start": time.monotonic() - started}}
    process.send_signal(signal.SIGINT)  # what Ctrl-C sends
    rest, _ = process.communicate(timeout=180)
    assert "cluster: stopped" in rest


def s3(cluster):
    import boto3

    e = cluster["exports"]
    return boto3.client("s3", endpoint_url=e["AWS_ENDPOINT_URL"], aws_access_key_id=e["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=e["AWS_SECRET_ACCESS_KEY"], region_name=e["AWS_REGION"])


def listed(cluster, prefix: str) -> list[str]:
    found, token = [], None
    while True:
        page = s3(cluster).list_objects_v2(Bucket=BUCKET, Prefix=prefix, **({"ContinuationToken": token} if token else {}))
        found += [o["Key"] for o in page.get("Contents", [])]
        if not page.get("IsTruncated"):
            return found
        token = page["NextContinuationToken"]


def start_run(cluster, story: Path, out: str, *extra: str) -> str:
    result = subprocess.run([str(BIN / "prefect"), "deployment", "run", "story-to-video/offline", "--param",
                             f"story_file={story}", "--param", f"out={out}", *extra], cwd=ROOT, env=cluster["env"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return run_id_of(result.stdout)


def finished(cluster, run_id: str, timeout: float = 900) -> dict:
    return wait_for(lambda: (r := api(cluster, f"/flow_runs/{run_id}"))["state_type"] in ("COMPLETED", "FAILED", "CRASHED",
                                                                                          "CANCELLED") and r,
                    timeout, f"run {run_id}")


def test_cluster_prints_exports_and_runs_on_postgres(cluster):
    text = "".join(cluster["output"])
    for name in ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
                 "AWS_SECRET_ACCESS_KEY", "FACELESS_HOME"):
        assert f"export {name}=" in text, text
    assert cluster["exports"]["FACELESS_HOME"] == f"s3://{BUCKET}/home"
    assert "prefect server on postgres" in text
    workers = {w["name"]: w["status"] for w in api(cluster, "/work_pools/faceless/workers/filter", {})}
    assert workers == {"worker-1": "ONLINE", "worker-2": "ONLINE"}, workers
    limits = {limit["name"]: limit["limit"] for limit in api(cluster, "/v2/concurrency_limits/filter", {})}
    assert limits.get("gpu-worker-1") == 1 and limits.get("gpu-worker-2") == 1, limits
    server_log = (cluster["folder"] / "server.log").read_text()
    assert "sqlite" not in server_log.lower() or "postgresql" in server_log.lower()


def test_the_server_wants_its_auth_string_and_the_pool_keeps_its_roots(cluster, tmp_path):
    """Issue 20: `make cluster`'s server answers 401 without the auth string (and `faceless`
    says so in one line), and a run whose job variables set FACELESS_ROOTS is refused."""
    import urllib.error
    import urllib.request
    import uuid

    request = urllib.request.Request(f"{cluster['url']}/flow_runs/filter", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 401
    assert api(cluster, "/flow_runs/filter", {"limit": 1}) is not None  # with it: answered

    without = {k: v for k, v in cluster["env"].items() if k != "PREFECT_API_AUTH_STRING"}
    result = subprocess.run([str(BIN / "faceless"), "resume", str(uuid.uuid4())], cwd=ROOT, env=without,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr[-3000:]
    assert "401 Unauthorized" in result.stderr and "PREFECT_API_AUTH_STRING" in result.stderr
    story = write_story(tmp_path, "fox")
    result = subprocess.run([str(BIN / "faceless"), "render", str(story), "--out", str(tmp_path / "out")], cwd=ROOT,
                            env={**without, "FACELESS_HOME": str(tmp_path / "home")}, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.splitlines()[-1].startswith("faceless: error: ") and "401" in result.stderr.splitlines()[-1]

    # The pool's locked job template: the server refuses the run when it is created.
    before = len(api(cluster, "/flow_runs/filter", {}))
    result = subprocess.run([str(BIN / "prefect"), "deployment", "run", "story-to-video/offline", "--param",
                             f"story_file={story}", "--param", f"out=s3://{BUCKET}/roots", "--job-variable",
                             'env={"FACELESS_ROOTS": ""}'], cwd=ROOT, env=cluster["env"], capture_output=True,
                            text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "FACELESS_ROOTS" in output, output[-3000:]
    assert len(api(cluster, "/flow_runs/filter", {})) == before


def test_batch_of_four_runs_on_both_workers_with_every_artifact_in_the_bucket(cluster, tmp_path):
    out = f"s3://{BUCKET}/batch"
    started = time.monotonic()
    ids = {name: start_run(cluster, write_story(tmp_path, name), out) for name in ("fox", "heron", "baker", "kite")}
    runs = {name: finished(cluster, run_id) for name, run_id in ids.items()}
    cluster["timings"]["batch of four"] = time.monotonic() - started
    assert {name: r["state_type"] for name, r in runs.items()} == dict.fromkeys(ids, "COMPLETED"), {
        name: (r["state_name"], r["state"].get("message")) for name, r in runs.items()}
    rendered_by = {}
    for name in ids:
        manifest = json.loads(s3(cluster).get_object(Bucket=BUCKET, Key=f"batch/{name}/manifest.json")["Body"].read())
        rendered_by[name] = manifest["rendered_by"]
        assert f"batch/{name}/video.mp4" in listed(cluster, f"batch/{name}/")
        # Every stage's artifact is in the bucket (listed through the S3 API).
        keys = set(listed(cluster, "home/artifacts/"))
        for stage in manifest["stages"]:
            assert f"home/artifacts/{stage['stage']}/{stage['key']}/manifest.json" in keys, stage
    assert set(rendered_by.values()) == {"worker-1", "worker-2"}, rendered_by
    print("timings:", {k: round(v, 1) for k, v in cluster["timings"].items()}, rendered_by)


def test_two_workers_rendering_the_same_story_at_once_end_with_one_artifact_per_stage(cluster, tmp_path):
    story = write_story(tmp_path, "baker")
    story.write_text(story.read_text() + " The street woke up to the smell.", encoding="utf-8")  # new keys
    # Each worker takes one of the two runs (one run per worker at a time).
    ids = [start_run(cluster, story, f"s3://{BUCKET}/same-{i}") for i in (1, 2)]
    runs = [finished(cluster, run_id) for run_id in ids]
    assert [r["state_type"] for r in runs] == ["COMPLETED", "COMPLETED"], [r["state"] for r in runs]
    manifests = [json.loads(s3(cluster).get_object(Bucket=BUCKET, Key=f"same-{i}/baker/manifest.json")["Body"].read())
                 for i in (1, 2)]
    videos = [s3(cluster).get_object(Bucket=BUCKET, Key=f"same-{i}/baker/video.mp4")["Body"].read() for i in (1, 2)]
    assert videos[0] == videos[1]
    assert [s["key"] for s in manifests[0]["stages"]] == [s["key"] for s in manifests[1]["stages"]]
    for stage in manifests[0]["stages"]:  # one manifest, and only the files it names, per key
        prefix = f"home/artifacts/{stage['stage']}/{stage['key']}/"
        manifest = json.loads(s3(cluster).get_object(Bucket=BUCKET, Key=prefix + "manifest.json")["Body"].read())
        named = {f"{prefix}{digest}/{name}" for name, digest in manifest["files"].items()}
        assert set(listed(cluster, prefix)) == named | {prefix + "manifest.json"}, stage
    print("same story on", sorted(m["rendered_by"] for m in manifests),
          "computed twice:", [(s["stage"], s["scene"]) for s in manifests[0]["stages"]
                              if not s["cached"] and not manifests[1]["stages"][manifests[0]["stages"].index(s)]["cached"]])


def test_worker_killed_while_animating_has_its_story_finished_by_the_other(cluster, tmp_path):
    story = write_story(tmp_path, "lamp")
    killed = start_run(cluster, story, f"s3://{BUCKET}/recovery", "--job-variable",
                       'env={"FACELESS_FAULT": "animate:hang:900"}')

    def animating():
        states = {t["name"].rsplit("-", 1)[0]: t["state_name"] for t in task_runs(cluster, killed)}
        return states.get("gpu animate[0]") == "Running" and states
    before = wait_for(animating, 600, "the animate stage to hold its worker's gpu slot")
    # The machine that runs it goes away: its worker and the flow run's process, kill -9.
    pid_of = {}
    for pid in descendants(cluster["process"].pid):
        try:
            cmdline = open(f"/proc/{pid}/cmdline").read().split("\0")
        except OSError:
            continue
        if "worker" in cmdline and "--name" in cmdline:
            pid_of[cmdline[cmdline.index("--name") + 1]] = pid
    holder = next(name for name, pid in pid_of.items() if str(killed) in " ".join(
        open(f"/proc/{child}/environ", errors="replace").read() for child in descendants(pid)
        if os.path.exists(f"/proc/{child}/environ")))
    victims = [pid_of[holder], *descendants(pid_of[holder])]
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()

    def resumed():
        return api(cluster, "/flow_runs/filter", {"flow_runs": {"tags": {"all_": [f"resumes:{killed}"]}}})
    resume = wait_for(resumed, 400, "the automatic resume")[0]
    done = finished(cluster, resume["id"])
    cluster["timings"]["worker kill to finished video"] = time.monotonic() - killed_at
    assert done["state_type"] == "COMPLETED", done["state"]
    assert api(cluster, f"/flow_runs/{killed}")["state_type"] == "CRASHED"
    manifest = json.loads(s3(cluster).get_object(Bucket=BUCKET, Key="recovery/lamp/manifest.json")["Body"].read())
    other = ({"worker-1", "worker-2"} - {holder}).pop()
    assert manifest["rendered_by"] == other, (manifest["rendered_by"], holder)
    after = {t["name"].rsplit("-", 1)[0]: t["state_name"] for t in task_runs(cluster, resume["id"])}
    for stage in ("plan", "narrate", "align", "keyframe"):
        assert after[stage] == "Cached", (stage, before, after)
    assert after["animate"] == "Completed" and after["compose"] == "Completed", after
    print("timings:", {k: round(v, 1) for k, v in cluster["timings"].items()}, "killed:", holder)
