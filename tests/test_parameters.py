"""The flows' parameter schemas as Prefect's run form reads them (no server): plain text boxes
(no `str`/`None` switch), the installed profiles as a drop-down, a description for every
parameter. The browser side is in tests/test_deployments.py."""

from __future__ import annotations

import typing

import pytest

from faceless.flows.parameters import ProfileName, flow_parameters
from faceless.tasks.settings import available


def _schema(flow) -> dict:
    return flow.parameters.model_dump_for_openapi()


@pytest.mark.parametrize("name", ["story_to_video", "story_batch"])
def test_run_form_schema(name):
    if name == "story_to_video":
        from faceless.flows.story_to_video import story_to_video as flow
    else:
        from faceless.flows.story_batch import story_batch as flow
    properties = _schema(flow)["properties"]
    for parameter, schema in properties.items():
        assert schema.get("description"), parameter
        assert "<" not in schema["description"], parameter  # the V1 form reads it as HTML
        if parameter in ("redo_degraded", "review"):  # a switch
            assert schema["type"] == "boolean" and schema["default"] is False, schema
        elif parameter != "stories":  # a folder or a list: the switch starts on str, its default's type
            assert "anyOf" not in schema and schema["type"] == "string", (parameter, schema)
    assert properties["profile"]["enum"] == available() and properties["profile"]["default"] == "offline"
    if name == "story_to_video":
        assert list(properties) == ["story", "story_file", "profile", "profile_file", "out", "size", "music", "voice",
                                    "redo_degraded", "review", "review_edits"]
        assert all(properties[p]["default"] == "" for p in ("story", "story_file", "profile_file", "size", "music",
                                                           "voice", "review_edits"))


def test_profile_names_are_the_installed_profiles():
    assert list(typing.get_args(ProfileName)) == available() and "offline" in available()


def test_story_input_takes_empty_as_not_given(tmp_path):
    from faceless.flows.preflight import story_input
    from faceless.tasks.stages.plan import StoryError

    story = tmp_path / "fox.txt"
    story.write_text("A fox ran.", encoding="utf-8")
    assert story_input("A fox ran.", "") == ("A fox ran.", None)
    assert story_input("", str(story))[0] == "A fox ran."
    assert story_input(None, str(story))[0] == "A fox ran."
    for both_or_neither in (("", ""), (None, None), ("A fox ran.", str(story))):
        with pytest.raises(StoryError, match="exactly one"):
            story_input(*both_or_neither)


def test_runs_made_before_resume_with_todays_parameters():
    assert flow_parameters({"story": None, "story_file": "/s/fox.txt", "profile": "/p/mine.yaml", "out": "/o",
                            "size": None, "music": None}) == {
        "story_file": "/s/fox.txt", "profile_file": "/p/mine.yaml", "out": "/o"}
    today = {"story": "A fox ran.", "profile": "tiny", "size": "1080x1920"}
    assert flow_parameters(today) == today


def test_the_flow_takes_what_the_cli_and_resume_pass():
    from prefect.exceptions import ParameterTypeError

    from faceless.flows.story_to_video import story_to_video

    cli = {"story_file": "/s/fox.txt", "profile_file": "/p/mine.yaml", "out": "/o", "size": "1080x1920"}
    assert story_to_video.validate_parameters(cli) == {**cli, "story": "", "profile": "offline", "music": "", "voice": "",
                                                        "redo_degraded": False, "review": False, "review_edits": ""}
    old_run = {"story": None, "story_file": "/s/fox.txt", "profile": "/p/mine.yaml", "size": None, "music": None}
    assert story_to_video.validate_parameters(flow_parameters(old_run))["profile_file"] == "/p/mine.yaml"
    with pytest.raises(ParameterTypeError):  # a path is not an installed profile's name
        story_to_video.validate_parameters({"story_file": "/s/fox.txt", "profile": "/p/mine.yaml"})
