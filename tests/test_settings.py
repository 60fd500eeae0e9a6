"""Typed profiles: one line for an unknown or mistyped setting, defaults from the schema only,
`faceless profile show` round trips, and a changed default changes the cache keys."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from conftest import BIN, ROOT
from faceless.flows import cli
from faceless.tasks import profile_schema
from faceless.tasks.backends import sdxl
from faceless.tasks.runtime import store
from faceless.tasks.settings import ProfileError, available, load_profile, profile_yaml

TINY = ROOT / "tasks" / "profiles" / "tiny.yaml"
TYPO = "profile mine.yaml: unknown setting keyframe.guidance_scal (did you mean guidance_scale?)"


def edited(tmp_path: Path, edit, source: Path = TINY, name: str = "mine.yaml") -> Path:
    """A copy of a shipped profile with `edit` applied to its data."""
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    edit(data)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def refused(path: Path) -> str:
    with pytest.raises(ProfileError) as raised:
        load_profile(str(path))
    message = str(raised.value)
    assert "\n" not in message
    return message


def test_unknown_key_names_its_path_and_the_nearest_name(tmp_path):
    path = edited(tmp_path, lambda d: d["keyframe"].update(guidance_scal=7))
    assert refused(path) == TYPO


@pytest.mark.parametrize("edit, message", [
    # inside a backend's own section: the union's tag is not part of the path
    (lambda d: d["narrate"].update(voice_presett="x"), "unknown setting narrate.voice_presett (did you mean voice_preset?)"),
    (lambda d: d["compose"]["captions"].update(colour="#FFF"), "unknown setting compose.captions.colour (did you mean color?)"),
    (lambda d: d["animate"]["degrade"][0].update(decode_chunk=2), "unknown setting animate.degrade[0].decode_chunk (did you mean decode_chunk_size?)"),
    (lambda d: d.update(memmory={}), "unknown setting memmory (did you mean memory?)"),
    (lambda d: d["plan"].update(zzz=1), "unknown setting plan.zzz (valid here: shot_seconds, seed, style, negative_prompt)"),
    # a misspelt required key is also missing: the typo is what is reported
    (lambda d: d["keyframe"].update(widht=d["keyframe"].pop("width")), "unknown setting keyframe.widht (did you mean width?) (and 1 more problem)"),
    (lambda d: d["keyframe"].update(guidance_scale="high"), "keyframe.guidance_scale: Input should be a valid number"),
    (lambda d: d["compose"].update(crf=18.5), "compose.crf: Input should be a valid integer"),
    (lambda d: d["animate"].update(fps_range=[2]), "animate.fps_range: List should have at least 2 items"),
    (lambda d: d["narrate"].update(backend="festival"), "narrate.backend 'festival' is not one of 'piper', 'bark'"),
    (lambda d: d["keyframe"].pop("base"), "missing setting keyframe.base"),
    (lambda d: d.pop("compose"), "lacks settings for: compose"),
])
def test_bad_settings_are_one_line(tmp_path, edit, message):
    assert message in refused(edited(tmp_path, edit))


def test_defaults_are_filled_in_and_typed(tmp_path):
    offline = load_profile("offline")
    assert offline["align"] == {"backend": "voice"}  # offline has no align section
    assert offline["memory"] == {"release_between_stages": False}
    assert offline["keyframe"]["model_cpu_offload"] is False and offline["keyframe"]["degrade"][0] == {"vae_tiling": True}
    tiny = load_profile("tiny")
    assert tiny["align"]["boundary_lag_s"] == 0.1 and tiny["compose"]["maxrate"] is None
    minimal = edited(tmp_path, lambda d: d.update(narrate={"backend": "bark"}))
    assert load_profile(str(minimal))["narrate"]["cpu_threads"] == 1
    fonts = edited(tmp_path, lambda d: d["compose"]["captions"].update(fonts="DejaVuSans.ttf"))
    assert load_profile(str(fonts))["compose"]["captions"]["fonts"] == ["DejaVuSans.ttf"]


def key_of(profile: dict, stage: str) -> str:
    return store.artifact_key(stage, 1, {"settings": profile[stage]})


@pytest.mark.parametrize("name", available())
@pytest.mark.parametrize("size", [None, "1920x1080"])
def test_profile_show_round_trips(tmp_path, capsys, name, size):
    assert cli.main(["profile", "show", name, *(["--size", size] if size else [])]) == 0
    shown = capsys.readouterr().out
    path = tmp_path / "shown.yaml"
    path.write_text(shown, encoding="utf-8")
    again = load_profile(str(path))
    assert again == load_profile(name, size)
    for stage in ("plan", "narrate", "align", "keyframe", "animate", "compose"):
        assert key_of(again, stage) == key_of(load_profile(name, size), stage)
    assert profile_yaml(again) == shown  # a fixed point


def test_profile_show_refuses_with_one_line(tmp_path, capsys):
    path = edited(tmp_path, lambda d: d["keyframe"].update(guidance_scal=7))
    assert cli.main(["profile", "show", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "keyframe.guidance_scal" in err


@contextlib.contextmanager
def default(model: type, field: str, value):
    """The schema with one default changed (models that embed `model` rebuilt too)."""
    info = model.model_fields[field]
    old = info.default
    info.default = value
    try:
        model.model_rebuild(force=True)
        profile_schema.Profile.model_rebuild(force=True)
        yield
    finally:
        info.default = old
        model.model_rebuild(force=True)
        profile_schema.Profile.model_rebuild(force=True)


def test_a_changed_default_changes_the_cache_key():
    before = load_profile("offline")  # offline leaves keyframe.attention_slicing to its default
    with default(sdxl.SdxlKeyframe, "attention_slicing", True):
        after = load_profile("offline")
    assert after["keyframe"]["attention_slicing"] is True
    assert key_of(after, "keyframe") != key_of(before, "keyframe")
    assert key_of(after, "animate") == key_of(before, "animate")
    assert load_profile("offline") == before  # restored


def test_render_refuses_an_unknown_setting_before_writing(tmp_path):
    path = edited(tmp_path, lambda d: d["keyframe"].update(guidance_scal=7))
    story = tmp_path / "story.txt"
    story.write_text("One sentence.", encoding="utf-8")
    result = subprocess.run(
        [str(BIN / "faceless"), "render", str(story), "--profile", str(path), "--out", "out"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={"FACELESS_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2, result.stderr
    assert result.stderr == f"faceless: error: {TYPO}\n"
    assert not (tmp_path / "out").exists() and not (tmp_path / "home").exists()


DIRECT = """
import json, sys
from prefect.client.orchestration import get_client
from faceless.flows.story_to_video import story_to_video
story, profile, out, name = sys.argv[1:]
state = story_to_video.with_options(flow_run_name=name)(story_file=story, profile_file=profile, out=out, return_state=True)
try:
    state.result()
    error = None
except Exception as raised:
    error = str(raised)
with get_client(sync_client=True) as client:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
print(json.dumps({"state": state.type.value, "error": error, "task_runs": [t.name for t in tasks]}))
"""


def test_the_flow_itself_refuses_before_any_task(store_env, tmp_path):
    """A deployment run calls the flow without the CLI: same check, same line, no task run."""
    path = edited(tmp_path, lambda d: d["keyframe"].update(guidance_scal=7))
    story = tmp_path / "story.txt"
    story.write_text("One sentence.", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-c", DIRECT, str(story), str(path), str(tmp_path / "out"), f"bad-{uuid.uuid4().hex[:8]}"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env=store_env)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["state"] == "FAILED" and report["task_runs"] == []
    assert report["error"] == TYPO  # the CLI's line, word for word
    home = Path(store_env["FACELESS_HOME"])
    assert not (tmp_path / "out").exists()
    assert not (home / "artifacts").exists() and not (home / "prefect-results").exists()


def test_resume_runs_the_same_preflight(tmp_path, monkeypatch, capsys):
    """`faceless resume` checks the old run's parameters again: a profile file edited since
    is refused with the same line, before anything starts."""
    path = edited(tmp_path, lambda d: d["keyframe"].update(guidance_scal=7))
    story = tmp_path / "story.txt"
    story.write_text("One sentence.", encoding="utf-8")
    parameters = {"story_file": str(story), "profile": str(path), "out": str(tmp_path / "out")}
    monkeypatch.setattr(cli, "_run_parameters", lambda run_id: parameters)
    assert cli.main(["resume", "00000000-0000-0000-0000-000000000000"]) == 2
    assert capsys.readouterr().err == f"faceless: error: {TYPO}\n"
    assert not (tmp_path / "out").exists()
