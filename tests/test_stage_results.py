"""Typed stage results (tasks/stages/results.py): they round-trip through Prefect's record
serializers and the store, and they enter downstream cache keys exactly as the plain artifact
references they replace."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from faceless.tasks.runtime import caching, store
from faceless.tasks.stages import results
from faceless.tasks.stages.results import (AlignmentResult, ArtifactRef, ClipResult, KeyframeResult, MusicResult,
                                           NarrationResult, PlanResult, StageResult, Storyboard, VideoResult)



def _ref(stage: str, files: dict[str, str], **meta) -> dict:
    return {"kind": "artifact", "stage": stage, "key": "k" * 32, "files": files, "meta": meta, "seconds": 1.5,
            "attempts": 2, "degraded": {"decode_chunk_size": 4}, "rendered_by": "here", "cached": False}


def examples() -> list[StageResult]:
    shot = {"index": 0, "sentences": [0], "words": (0, 3), "text": "A fox ran.", "start": 0.0, "end": 1.25,
            "cast": ["Fox"], "prompt": "a fox", "prompt_2": "a fox, night", "prompt_tokens": 5,
            "description": "a fox running, night", "negative_prompt": "blurry", "seed": 7}
    return [
        PlanResult.of(_ref("plan", {"plan.json": "a"}, sentences=1), title="Fox", slug="fox", style="ink",
                      setting="", cast={"Fox": "a red fox"}, seed=3, negative_prompt="blurry",
                      sentences=[{"index": 0, "text": "A fox ran.", "words": ["A", "fox", "ran."]}]),
        NarrationResult.of(_ref("narrate", {"narration.wav": "b", "words.json": "c"}, duration=1.25), duration=1.25),
        AlignmentResult.of(_ref("align", {"words.json": "d", "subtitles.srt": "e", "subtitles.vtt": "f"}, cues=1)),
        Storyboard.of(_ref("storyboard", {"shots.json": "g"}, shots=1), shots=[shot]),
        KeyframeResult.of(_ref("keyframe", {"keyframe.png": "h"}, seed=7)),
        ClipResult.of(_ref("animate", {"clip.mp4": "i", "frames/0000.png": "j"}, windows=1,
                           fps_conditioning=None, interpolation=None)),
        VideoResult.of(_ref("compose", {"video.mp4": "l"}, frames=30, loudness={"music": None})),
        MusicResult.of(_ref("music", {"music.m4a": "m"}, source="song.m4a", sha256="m")),
    ]


@pytest.mark.parametrize("result", examples(), ids=lambda r: type(r).__name__)
def test_results_round_trip_through_json_and_pickle(result):
    assert type(result).model_validate_json(result.model_dump_json()) == result
    assert json.loads(result.model_dump_json())  # plain JSON all through
    assert pickle.loads(pickle.dumps(result)) == result
    assert type(result).__module__.startswith("faceless.tasks.stages.")


@pytest.mark.parametrize("result", examples(), ids=lambda r: type(r).__name__)
def test_results_round_trip_through_prefect_serializers(result):
    from prefect.serializers import JSONSerializer, PickleSerializer

    for serializer in (PickleSerializer(), JSONSerializer()):
        back = serializer.loads(serializer.dumps(result))
        assert type(back) is type(result) and back == result


def test_every_result_model_lives_in_a_stages_module():
    """A JSON record reader rebuilds only pydantic models from faceless.tasks.stages modules."""
    from pydantic import BaseModel

    models = [v for v in vars(results).values() if isinstance(v, type) and issubclass(v, BaseModel)]
    assert len(models) >= 11
    for model in models:
        if model is BaseModel:
            continue
        assert model.__module__ == "faceless.tasks.stages.results"
        for field in model.model_fields.values():  # nested models only, no dataclasses
            assert not hasattr(field.annotation, "__dataclass_fields__")


def test_a_result_enters_a_key_as_its_reference_did():
    """Downstream keys stay those of the plain references: no artifact is remade for this."""
    for result in examples():
        plain = result.ref.model_dump()
        assert store.artifact_key("next", 1, {"x": result}) == store.artifact_key("next", 1, {"x": plain})
        assert store.artifact_key("next", 1, {"x": [result]}) == store.artifact_key("next", 1, {"x": [plain]})
        # Where it came from (cached, seconds, machine) does not enter the key.
        moved = result.model_copy(update={"ref": result.ref.model_copy(update={"cached": True, "seconds": 9.0})})
        assert store.artifact_key("next", 1, {"x": moved}) == store.artifact_key("next", 1, {"x": result})
    board = examples()[3]
    assert store.artifact_key("keyframe", 3, {"shot": board.keyframe_inputs()[0]}) == store.artifact_key(
        "keyframe", 3, {"shot": {k: getattr(board.shots[0], k) for k in results.KEYFRAME_INPUTS}})


def test_prefect_records_of_dict_results_are_not_reused():
    assert caching.prefect_key("plan", "abc") == "plan-r2-abc"


def test_results_reach_their_files_and_round_trip_through_the_store(tmp_path, monkeypatch):
    monkeypatch.setenv("FACELESS_HOME", str(tmp_path))
    monkeypatch.delenv("FACELESS_SCRATCH", raising=False)

    def build(directory: Path) -> dict:
        store.write_json(directory / "shots.json", {"shots": [examples()[3].shots[0].model_dump(mode="json")]})
        return {"shots": 1}

    ref = store.produce("storyboard", "s" * 32, build)
    board = Storyboard.of(ref, **store.read_json(store.path_of(ref, "shots.json")))
    assert board.key == "s" * 32 and board.meta == {"shots": 1} and not board.ref.cached
    assert board.path("shots.json") == store.artifact_dir("storyboard", "s" * 32) / "shots.json"
    assert board.shots == examples()[3].shots and board.indexes == [0] and board.seeds == [7]
    assert board.starts == [0.0] and board.descriptions == ["a fox running, night"]
    assert store.as_ref(board) == ref
    again = Storyboard.of(store.load("storyboard", "s" * 32), shots=board.shots)
    assert again.ref.cached and store.artifact_key("x", 1, {"b": again}) == store.artifact_key("x", 1, {"b": board})
    with pytest.raises(KeyError):
        board.path("missing.json")


def test_plan_and_music_helpers():
    plan, *_, music = examples()
    assert plan.voice_lines() == [{"index": 0, "text": "A fox ran.", "words": ["A", "fox", "ran."]}]
    assert plan.word_count == 3 and music.file == "music.m4a"
    with pytest.raises(ValueError):
        ArtifactRef.model_validate({"kind": "other", "stage": "x", "key": "y", "files": {}})

