"""A shared deployment nobody can turn against its workers (docs/security.md), the quick checks:
names from manifests and records, cache records that cannot run code, one normal form for every
location checked against the worker's roots, job variables that cannot widen them, and the
cluster's locked job template. The same against a real S3 server and a real Prefect server are
in test_store_s3.py and test_cluster.py."""

from __future__ import annotations

import asyncio
import json
import logging
import pickle
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from test_bad_input import OFFLINE, run_cli

from faceless.flows import deliver, roots
from faceless.tasks.runtime import caching, records, store


@pytest.fixture
def warnings_of():
    """Messages of a logger by name, each once (Prefect's logging set-up may or may not let
    them propagate to pytest's own capture)."""
    attached = []

    class Collect(logging.Handler):
        def __init__(self):
            super().__init__(logging.WARNING)
            self.messages = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    def attach(name: str):
        handler = Collect()
        logging.getLogger(name).addHandler(handler)
        attached.append((name, handler))
        return lambda: list(handler.messages)
    yield attach
    for name, handler in attached:
        logging.getLogger(name).removeHandler(handler)


class Planted:
    """What a planted pickle would do when loaded: create a file."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


# -- names from manifests and records ----------------------------------------------------------

@pytest.mark.parametrize("name", ["video.mp4", "frames/frame-0001.png", "music.m4a", "a_b-c.d"])
def test_plain_names_are_safe(name):
    assert store.safe_name(name)


@pytest.mark.parametrize("name", [
    "../x", "../../../home/u/.bashrc", "/etc/passwd", "a/../../x", "a/./b", "./x", ".bashrc", "C:\\x", "C:x",
    "a\\b", "", "a//b", "x\n", "a b", "é", "-rf", "x" * 201, "a/b/c/d/e", 7, None])
def test_names_that_could_lead_outside_are_refused(name):
    assert not store.safe_name(name)


def test_a_local_manifest_with_bad_names_is_refused_once_and_rebuilt(tmp_path, monkeypatch, warnings_of):
    monkeypatch.setenv("FACELESS_HOME", str(tmp_path / "home"))
    directory = store.artifact_dir("demo", "k1")
    directory.mkdir(parents=True)
    store.write_json(directory / "manifest.json", {"stage": "demo", "key": "k1", "files": {
        "../../../escaped.txt": "0" * 64, str(tmp_path / "absolute.txt"): "0" * 64}})
    messages = warnings_of("faceless.store")
    assert store.load("demo", "k1") is None
    assert store.load("demo", "k1") is None
    ref = store.produce("demo", "k1", lambda d: (d / "hello.txt").write_text("hello") and None)
    refused = [m for m in messages() if "refused the manifest" in m]
    assert len(refused) == 1 and "demo artifact k1" in refused[0], refused
    assert store.path_of(ref, "hello.txt").read_text() == "hello"
    assert not (tmp_path / "escaped.txt").exists() and not (tmp_path / "absolute.txt").exists()


def test_a_record_naming_an_unsafe_stage_key_or_file_is_never_followed(tmp_path, monkeypatch):
    monkeypatch.setenv("FACELESS_HOME", str(tmp_path / "home"))
    good = {"kind": "artifact", "stage": "plan", "key": "a" * 32, "files": {"plan.json": "0" * 64}}
    for bad in ({**good, "stage": "../.."}, {**good, "key": "/tmp"}, {**good, "files": {"../plan.json": "0" * 64}},
                {**good, "files": {"plan.json": "../../x"}}):
        with pytest.raises(store.UnsafeArtifactError):
            store.path_of(bad, "plan.json")
    with pytest.raises(store.UnsafeArtifactError):
        store.fetch("plan", "a" * 32, {"/etc/cron.d/x": "0" * 64})


def test_music_keeps_a_safe_file_name(tmp_path, monkeypatch):
    from conftest import write_music
    from faceless.tasks.stages.music import import_music

    odd = tmp_path / "song.m4a x"
    write_music(tmp_path / "song.m4a")
    (tmp_path / "song.m4a").rename(odd)
    artifact = tmp_path / "artifact"
    artifact.mkdir()
    import_music(odd, artifact)
    assert [p.name for p in artifact.iterdir()] == ["music.audio"]


# -- cache records --------------------------------------------------------------------------------

def record_bytes(result, serializer) -> bytes:
    from prefect._internal.result_records import ResultRecord, ResultRecordMetadata

    return ResultRecord(metadata=ResultRecordMetadata(serializer=serializer), result=result).serialize()


def test_records_are_json_and_read_back():
    ref = {"kind": "artifact", "stage": "plan", "key": "a" * 32, "files": {"plan.json": "0" * 64}, "meta": {"n": 1.5}}
    content = record_bytes(ref, records.RecordSerializer())
    assert records.unsafe_record(content) is None
    stored = json.loads(content)
    assert stored["metadata"]["serializer"] == {"type": "faceless-json"} and json.loads(stored["result"]) == ref
    from prefect._internal.result_records import ResultRecord

    assert ResultRecord.deserialize(content).result == ref


def test_a_failed_tasks_exception_is_recorded_by_name_and_message_only():
    content = record_bytes(MemoryError("out of memory at step 3"), records.RecordSerializer())
    assert records.unsafe_record(content) is None
    from prefect._internal.result_records import ResultRecord

    error = ResultRecord.deserialize(content).result
    assert isinstance(error, records.StoredError) and str(error) == "builtins.MemoryError: out of memory at step 3"


def test_records_rebuild_only_allowed_models():
    from pydantic import BaseModel

    class Elsewhere(BaseModel):
        x: int = 1

    with pytest.raises(TypeError):
        records.RecordSerializer().dumps({"model": Elsewhere()})
    with pytest.raises(TypeError):
        records.RecordSerializer().dumps({"path": Path("/x")})
    for name in ("os.system", "subprocess.Popen", "faceless.tasks.stages..x", "prefect.serializers.Serializer"):
        blob = json.dumps({"__faceless_model__": name, "data": {}}).encode()
        with pytest.raises(records.UnsafeRecordError):
            records.RecordSerializer().loads(blob)


def test_pickles_and_other_serializers_are_refused_unread(tmp_path):
    from prefect.serializers import JSONSerializer, PickleSerializer

    marker = tmp_path / "pwned"
    planted = record_bytes(Planted(marker), PickleSerializer())
    assert "pickle" in records.unsafe_record(planted)
    assert records.unsafe_record(pickle.dumps(Planted(marker))) == "not JSON (a pickle?)"
    assert "json" in records.unsafe_record(record_bytes({"a": 1}, JSONSerializer()))
    legacy = json.dumps({"data": "x", "serializer": {"type": "pickle"}}).encode()
    assert records.unsafe_record(legacy) is not None
    tampered = json.loads(record_bytes({"a": 1}, records.RecordSerializer()))
    tampered["metadata"]["serializer"]["picklelib"] = "os"
    assert records.unsafe_record(json.dumps(tampered).encode()) is not None
    assert not marker.exists()


def test_a_pickle_where_a_record_should_be_is_a_miss_deleted_unread(tmp_path, monkeypatch, warnings_of):
    from prefect.serializers import PickleSerializer

    monkeypatch.setenv("FACELESS_HOME", str(tmp_path / "home"))
    marker = tmp_path / "pwned"
    record = caching.records_dir() / caching.prefect_key("plan", "k1")
    record.parent.mkdir(parents=True)
    record.write_bytes(record_bytes(Planted(marker), PickleSerializer()))
    messages = warnings_of("faceless.records")
    caching.check_record("plan", "k1")
    assert not record.exists() and not marker.exists()
    assert any("refused the cache record" in m and "pickle" in m for m in messages())
    good = record_bytes({"a": 1}, records.RecordSerializer())
    record.write_bytes(good)
    caching.check_record("plan", "k1")
    assert record.read_bytes() == good


def test_stage_tasks_write_records_with_the_json_serializer(tmp_path, monkeypatch):
    from faceless.tasks.stages.plan import plan_task

    monkeypatch.setenv("FACELESS_HOME", str(tmp_path / "home"))
    task = caching.with_store(plan_task)
    assert isinstance(task.result_serializer, records.RecordSerializer) and task.persist_result


# -- locations and roots ---------------------------------------------------------------------------

@pytest.mark.parametrize("spelling", ["s3://other/x", "s3:/other/x", "S3://other/x", "s3:///other//x/", "S3:/other/x"])
def test_every_spelling_of_an_s3_location_has_one_normal_form(spelling):
    assert roots.normal(spelling) == "s3://other/x"


def test_local_locations_are_absolute_and_resolved(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "a")
    assert roots.normal("link/../b") == str(tmp_path / "b")
    assert roots.normal(tmp_path / "link" / "x") == str(tmp_path / "a" / "x")


def test_roots_split_on_colons_but_keep_s3_schemes(tmp_path, monkeypatch):
    monkeypatch.setenv("FACELESS_ROOTS", f"{tmp_path / 'a'}:s3:/bucket/stories:S3://videos:{tmp_path / 'b'}")
    assert roots.configured() == [str(tmp_path / "a"), "s3://bucket/stories", "s3://videos", str(tmp_path / "b")]


@pytest.mark.parametrize("out", ["s3:/other/x", "S3://other/x", "s3:///other/x", "s3://bucket/storiesX/x",
                                 "s3://bucket/stories/../other"])
def test_out_in_another_bucket_is_refused_whatever_its_spelling(tmp_path, monkeypatch, out):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FACELESS_ROOTS", f"{tmp_path}:s3://bucket/stories")
    with pytest.raises(roots.OutsideRootsError) as refused:
        deliver.output_folder(out)
    assert str(refused.value).count("\n") == 0 and str(refused.value).startswith("out ")


def test_s3_out_spellings_inside_the_roots_pass_and_upload_to_one_place(tmp_path, monkeypatch):
    monkeypatch.setenv("FACELESS_ROOTS", "s3://bucket/stories")
    for out in ("s3://bucket/stories/x", "S3://bucket/stories/x", "s3:/bucket/stories/x"):
        assert deliver.output_folder(out) == "s3://bucket/stories/x"
        assert deliver.s3_out(out) == ("bucket", "stories/x")


def test_s3_out_with_dot_parts_is_refused_even_without_roots(monkeypatch):
    monkeypatch.delenv("FACELESS_ROOTS", raising=False)
    for out in ("s3://b/../../home/u", "s3://../x", "S3://b/./x"):
        with pytest.raises(deliver.OutputError):
            deliver.output_folder(out)


def test_cli_refuses_out_in_another_bucket_in_one_line(tmp_path):
    story = tmp_path / "allowed" / "story.txt"
    story.parent.mkdir()
    story.write_text("One sentence.", encoding="utf-8")
    for out in ("s3:/other/x", "S3://other/x"):
        result = run_cli(tmp_path, "render", str(story), "--out", out,
                         env={"FACELESS_ROOTS": f"{tmp_path / 'allowed'}:s3://bucket/videos"})
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert f"out {out!r} is outside the folders this worker serves" in result.stderr


def profile_with(tmp_path: Path, **changes) -> Path:
    data = yaml.safe_load(OFFLINE.read_text(encoding="utf-8"))
    for dotted, value in changes.items():
        stage, setting = dotted.split("__")
        data[stage][setting] = value
    path = tmp_path / "allowed" / "mine.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def story_in(tmp_path: Path) -> Path:
    story = tmp_path / "allowed" / "story.txt"
    story.parent.mkdir(exist_ok=True)
    story.write_text("One sentence.", encoding="utf-8")
    return story


def test_profile_file_outside_the_roots_is_refused_in_one_line(tmp_path):
    story = story_in(tmp_path)
    elsewhere = tmp_path / "elsewhere.yaml"
    elsewhere.write_text(OFFLINE.read_text(encoding="utf-8"), encoding="utf-8")
    result = run_cli(tmp_path, "render", str(story), "--out", str(tmp_path / "allowed" / "out"), "--profile",
                     str(elsewhere), env={"FACELESS_ROOTS": str(tmp_path / "allowed")})
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "profile_file " in result.stderr and "is outside the folders this worker serves" in result.stderr


@pytest.mark.parametrize("change", [{"animate__model": "{elsewhere}/svd"}, {"keyframe__base": "{elsewhere}/sdxl"},
                                    {"compose__captions": {"fonts": ["{elsewhere}/font.ttf"]}}])
def test_a_profile_naming_a_model_folder_or_font_outside_the_roots_is_refused(tmp_path, change):
    from faceless.flows.preflight import preflight

    elsewhere = tmp_path / "elsewhere"
    (setting, value), = change.items()
    if isinstance(value, dict):  # captions: keep the profile's other caption settings
        data = yaml.safe_load(OFFLINE.read_text(encoding="utf-8"))["compose"]
        data["captions"]["fonts"] = [value["fonts"][0].format(elsewhere=elsewhere)]
        profile = profile_with(tmp_path, compose__captions=data["captions"])
    else:
        profile = profile_with(tmp_path, **{setting: value.format(elsewhere=elsewhere)})
    story = story_in(tmp_path)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FACELESS_ROOTS", str(tmp_path / "allowed"))
        patch.chdir(tmp_path)
        with pytest.raises(roots.OutsideRootsError) as refused:
            preflight(story_file=str(story), out=str(tmp_path / "allowed" / "out"), profile_file=str(profile))
    message = str(refused.value)
    assert message.count("\n") == 0 and message.startswith("profile_file's ") and str(elsewhere) in message
    assert not (tmp_path / "allowed" / "out").exists()


def test_a_kokoro_voice_is_a_name_not_a_path(tmp_path, monkeypatch):
    monkeypatch.setenv("FACELESS_ROOTS", str(tmp_path))
    with pytest.raises(roots.OutsideRootsError):
        roots.check_profile({"narrate": {"backend": "kokoro", "voice": "../../../tmp/evil", "model": "hf:x"},
                             "align": {"backend": "voice"}, "keyframe": {"backend": "flux", "model": "hf:y"},
                             "animate": {"model": "hf:z"}, "compose": {"captions": {"fonts": []}}})


def test_stories_outside_the_roots_are_refused(tmp_path, monkeypatch):
    from faceless.flows.story_batch import story_files

    (tmp_path / "allowed").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "a.txt").write_text("One.", encoding="utf-8")
    (tmp_path / "allowed" / "b.txt").symlink_to(tmp_path / "elsewhere" / "a.txt")
    monkeypatch.setenv("FACELESS_ROOTS", str(tmp_path / "allowed"))
    for stories in (str(tmp_path / "elsewhere"), str(tmp_path / "allowed")):
        with pytest.raises(roots.OutsideRootsError, match="^stories "):
            story_files(stories)


# -- job variables ---------------------------------------------------------------------------------

def test_job_variables_that_set_the_roots_are_refused_in_one_line_before_any_stage(tmp_path, monkeypatch):
    from faceless.flows.preflight import preflight

    story = story_in(tmp_path)
    monkeypatch.setenv("FACELESS_ROOTS", str(tmp_path / "allowed"))
    monkeypatch.setattr(roots, "current_job_variables", lambda: {"env": {"FACELESS_ROOTS": ""}})
    with pytest.raises(roots.JobVariableError) as refused:
        preflight(story_file=str(story), out=str(tmp_path / "allowed" / "out"))
    assert str(refused.value).count("\n") == 0 and "FACELESS_ROOTS" in str(refused.value)
    assert not (tmp_path / "allowed" / "out").exists()


@pytest.mark.parametrize("variables", [{"env": {"FACELESS_HOME": "/tmp/x"}}, {"env": {"AWS_ENDPOINT_URL": "http://x"}},
                                       {"env": {"PYTHONPATH": "/tmp"}}, {"command": "sh -c id"}, {"working_dir": "/"}])
def test_other_trust_deciding_job_variables_are_refused_by_name(variables):
    with pytest.raises(roots.JobVariableError) as refused:
        roots.refuse_job_variables(variables)
    name = next(iter(variables["env"])) if "env" in variables else next(iter(variables))
    assert name in str(refused.value)


def test_ordinary_job_variables_pass():
    roots.refuse_job_variables({"env": {"FACELESS_FAULT": "animate:oom:1"}, "stream_output": True})
    roots.refuse_job_variables({})


def test_the_batch_flow_refuses_such_job_variables_before_any_story_run(tmp_path, monkeypatch):
    from faceless.flows import story_batch

    monkeypatch.setattr(roots, "current_job_variables", lambda: {"env": {"FACELESS_ROOTS": "/"}})
    monkeypatch.setattr(story_batch, "arun_deployment", lambda *a, **k: pytest.fail("a story run started"))
    with pytest.raises(roots.JobVariableError, match="FACELESS_ROOTS"):
        asyncio.run(story_batch.story_batch.fn(stories=str(tmp_path)))


def test_the_cluster_pool_template_refuses_such_job_variables():
    """make cluster's work pool: the server validates a run's job variables against this schema."""
    import sys

    from prefect.utilities.schema_tools.validation import validate

    sys.path.insert(0, str(ROOT / "deployments"))
    from cluster import locked_job_template

    template = locked_job_template()
    schema = template["variables"]
    assert template["job_configuration"]["command"] is None and template["job_configuration"]["working_dir"] is None
    for refused in ({"env": {"FACELESS_ROOTS": ""}}, {"env": {"AWS_ACCESS_KEY_ID": "x"}}, {"command": "sh"},
                    {"working_dir": "/"}):
        assert validate(refused, schema), refused
    assert not validate({"env": {"FACELESS_FAULT": "animate:hang:900"}}, schema)


# -- the CLI and the server's auth string ----------------------------------------------------------

def test_a_401_is_one_line_not_a_traceback(monkeypatch, capsys):
    import httpx

    from faceless.flows import cli

    def unauthorized(argv):
        request = httpx.Request("POST", "http://127.0.0.1:1/api/flow_runs/")
        response = httpx.Response(401, request=request, json={"exception_message": "Unauthorized"})
        try:
            raise httpx.HTTPStatusError("401", request=request, response=response)
        except httpx.HTTPStatusError as error:
            raise RuntimeError("the engine wrapped it") from error

    monkeypatch.setattr(cli, "_main", unauthorized)
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:1/api")
    monkeypatch.delenv("PREFECT_API_AUTH_STRING", raising=False)
    assert cli.main(["resume", "x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "401" in err and "PREFECT_API_AUTH_STRING" in err
