"""The artifact store: atomic writes, content-addressed keys, corrupt or missing = miss."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from faceless.tasks.runtime import store


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("FACELESS_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def write_hello(directory: Path) -> dict:
    (directory / "hello.txt").write_text("hello")
    return {"greeting": "hello"}


def test_produce_writes_files_and_manifest_last(home):
    ref = store.produce("demo", "k1", write_hello)
    folder = home / "artifacts" / "demo" / "k1"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["files"] == {"hello.txt": store.file_sha256(folder / "hello.txt")}
    assert ref["cached"] is False and ref["meta"] == {"greeting": "hello"}
    assert store.path_of(ref, "hello.txt").read_text() == "hello"
    assert not list((home / "artifacts" / "demo").glob(".tmp-*"))


def test_second_produce_is_a_hit_and_does_not_build(home):
    store.produce("demo", "k1", write_hello)
    again = store.produce("demo", "k1", lambda d: pytest.fail("rebuilt a good artifact"))
    assert again["cached"] is True


@pytest.mark.parametrize("damage", ["delete_file", "change_byte", "delete_manifest", "garble_manifest"])
def test_damaged_artifact_is_a_miss_and_is_rebuilt(home, damage):
    store.produce("demo", "k1", write_hello)
    folder = home / "artifacts" / "demo" / "k1"
    if damage == "delete_file":
        (folder / "hello.txt").unlink()
    elif damage == "change_byte":
        (folder / "hello.txt").write_text("jello")
    elif damage == "delete_manifest":
        (folder / "manifest.json").unlink()
    else:
        (folder / "manifest.json").write_text("{not json")
    assert store.load("demo", "k1") is None
    rebuilt = store.produce("demo", "k1", write_hello)
    assert rebuilt["cached"] is False
    assert (folder / "hello.txt").read_text() == "hello"


def test_failed_build_leaves_nothing(home):
    def broken(directory: Path) -> dict:
        (directory / "half.txt").write_text("half")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.produce("demo", "k2", broken)
    assert not (home / "artifacts" / "demo" / "k2").exists()
    assert not list((home / "artifacts" / "demo").glob(".tmp-*"))


def test_keys_follow_content_not_location():
    ref_a = {"kind": "artifact", "stage": "narrate", "key": "x", "files": {"a.wav": "1" * 64},
             "meta": {}, "cached": True}
    ref_b = {**ref_a, "key": "y", "cached": False, "meta": {"seconds": 3}}
    ref_c = {**ref_a, "files": {"a.wav": "2" * 64}}
    key = store.artifact_key("align", 1, {"narration": ref_a})
    assert key == store.artifact_key("align", 1, {"narration": ref_b})
    assert key != store.artifact_key("align", 1, {"narration": ref_c})
    assert key != store.artifact_key("align", 2, {"narration": ref_a})
    assert key != store.artifact_key("compose", 1, {"narration": ref_a})


def test_settings_change_the_key_in_any_order():
    a = store.artifact_key("keyframe", 1, {"settings": {"steps": 10, "size": [360, 640]}})
    b = store.artifact_key("keyframe", 1, {"settings": {"size": [360, 640], "steps": 10}})
    c = store.artifact_key("keyframe", 1, {"settings": {"size": [360, 640], "steps": 11}})
    assert a == b != c
