"""Cast references without a render: the front matter's two forms of a cast member, what a
reference's cache key holds, which references a shot gets, and the IP-Adapter's weights named
when missing. The render with references is in test_render_studio.py."""

from __future__ import annotations

import pytest

from faceless.tasks.stages.cast import CastPolicy, cast_members, shot_references
from faceless.tasks.stages.plan import StoryError, split_front_matter

STORY = """---
cast:
  Mara: a girl of ten in a red wool coat
  Mr. Okafor:
    description: a tall conductor with a grey beard
    image: pictures/okafor.png
---
Mara could not sleep.
"""


def test_a_member_is_a_description_or_a_description_and_a_picture():
    front, body = split_front_matter(STORY)
    assert front.cast == {"Mara": "a girl of ten in a red wool coat", "Mr. Okafor": "a tall conductor with a grey beard"}
    assert front.cast_images == {"Mr. Okafor": "pictures/okafor.png"}
    assert body == "Mara could not sleep.\n"
    assert cast_members(front.cast, {"Mr. Okafor": "/abs/okafor.png"}) == [
        {"name": "Mara", "description": "a girl of ten in a red wool coat", "image": None},
        {"name": "Mr. Okafor", "description": "a tall conductor with a grey beard", "image": "/abs/okafor.png"}]


@pytest.mark.parametrize("cast, message", [
    ("{Mara: {description: a girl, image: ''}}", "image must be the path of a picture"),
    ("{Mara: {description: {colour: red}}}", "front matter cast Mara needs a description"),
    ("{Mara: {looks: a girl}}", "unknown field(s) looks"),
])
def test_a_malformed_member_is_refused_in_one_line(cast, message):
    with pytest.raises(StoryError, match=None) as error:
        split_front_matter(f"---\ncast: {cast}\n---\nMara ran.")
    assert message in str(error.value) and "\n" not in str(error.value)


def _inputs(description="a girl", image=None, name="Mara", **changes):
    inputs = {"member": {"name": name, "description": description, "image": image}, "index": 0,
              "settings": {"backend": "sdxl-ensemble", "width": 64, "references": {"ip_adapter": "tiny:x", "scale": 0.6}},
              "style": "ink", "seed": 1, "negative_prompt": "blurry",
              "models_used": {"base": "tiny:sdxl-base@v2", "ip_adapter": "tiny:ip-adapter-sdxl@v1"}}
    return {**inputs, **changes}


def test_a_reference_is_keyed_by_what_it_is_made_from_only(tmp_path):
    policy = CastPolicy(stage="cast")
    key = policy.content(_inputs())
    # Not the member's name or index, nor how strongly the keyframes use references.
    assert policy.content(_inputs(name="Tomas", index=3)) == key
    assert policy.content(_inputs(settings={**_inputs()["settings"], "references": {"ip_adapter": "y", "scale": 1}},
                                  models_used={"base": "tiny:sdxl-base@v2"})) == key
    for changed in (_inputs(description="a boy"), _inputs(style="oil"), _inputs(seed=2)):
        assert policy.content(changed) != key
    # A picture of one's own: its bytes, wherever the file is.
    first, second = tmp_path / "a.png", tmp_path / "b.png"
    first.write_bytes(b"same bytes")
    second.write_bytes(b"same bytes")
    assert policy.content(_inputs(image=str(first))) == policy.content(_inputs(image=str(second), description="x"))


def test_a_shot_gets_the_references_of_the_members_it_shows():
    references = {"Mara": "mara's", "Tomas": "tomas's"}
    assert shot_references(["Tomas", "Mara"], references) == ["tomas's", "mara's"]
    assert shot_references(["Mara", "Nobody"], references) == ["mara's"]
    assert shot_references([], references) == []


def test_missing_ip_adapter_weights_are_named_with_their_download(tmp_path):
    from faceless.tasks import models
    from faceless.tasks.models.specs import fetch_hint
    from faceless.tasks.settings import load_profile

    profile = load_profile("tiny")
    profile["keyframe"]["references"]["ip_adapter"] = str(tmp_path / "ip-adapter")
    with pytest.raises(models.ModelMissingError) as error:
        models.require(profile)
    assert f"keyframe.references.ip_adapter: {tmp_path / 'ip-adapter'} has no sdxl_models/ip-adapter_sdxl.safetensors" \
        in str(error.value)
    # Only the SDXL adapter and its image encoder, not the whole repository's variants.
    assert fetch_hint("h94/IP-Adapter") == (
        "`hf download h94/IP-Adapter sdxl_models/ip-adapter_sdxl.safetensors "
        "sdxl_models/image_encoder/config.json sdxl_models/image_encoder/model.safetensors`")


def test_the_live_view_names_a_cast_task_by_its_member():
    from faceless.tasks.runtime.live import _label
    from faceless.tasks.stages.cast import cast_task
    from faceless.tasks.stages.keyframe import keyframe_task

    assert _label(cast_task, _inputs(name="Mr. Okafor")) == "cast Mr. Okafor"
    assert _label(keyframe_task, {"shot": {}, "index": 2}) == "keyframe shot 2"
