"""Cast references without a render: the front matter's two forms of a cast member, what a
reference's cache key holds, which references a shot gets, the IP-Adapter's weights named
when missing, and the cast sheet on the run page and in the storyboard review. The render with
references is in test_render_studio.py."""

from __future__ import annotations

import base64
import hashlib
import io

import pytest

from faceless.tasks.stages.cast import CastPolicy, cast_members, shot_references, take_image
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


# -- the cast sheet ----------------------------------------------------------------------------------

MARA, OKAFOR = "a girl of ten in a red wool coat", "a tall conductor with a grey beard"


@pytest.fixture
def cast(tmp_path, monkeypatch) -> dict:
    """Two members' references in a store of their own: Mara's drawn (red), Mr. Okafor's given (blue)."""
    from PIL import Image

    from faceless.tasks.runtime import store
    from faceless.tasks.stages.results import CastResult

    monkeypatch.setenv("FACELESS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FACELESS_SCRATCH", raising=False)
    given = tmp_path / "okafor.png"
    Image.new("RGB", (20, 40), (30, 60, 220)).save(given)

    def draw(directory):
        Image.new("RGB", (20, 40), (220, 40, 30)).save(directory / "reference.png")
        return {"source": "drawn", "file": "reference.png", "sha256": store.file_sha256(directory / "reference.png")}

    return {"Mara": CastResult.of(store.produce("cast", "m" * 32, draw), name="Mara", description=MARA),
            "Mr. Okafor": CastResult.of(store.produce("cast", "o" * 32, lambda d: take_image(str(given), d)),
                                        name="Mr. Okafor", description=OKAFOR),
            "given": given}


def _pictures(markdown: str) -> list:
    """Each data: URI picture in the markdown, opened."""
    from PIL import Image

    return [Image.open(io.BytesIO(base64.b64decode(part.split(")", 1)[0])))
            for part in markdown.split("](data:image/jpeg;base64,")[1:]]


def _colour(picture) -> tuple:
    return picture.convert("RGB").getpixel((picture.width // 2, picture.height // 2))


def test_the_run_page_shows_the_cast_sheet(cast):
    from faceless.flows.report import THUMB_WIDTH, cast_markdown

    given = cast.pop("given")
    manifest = {"story": {"title": "The Night Train", "slug": "the-night-train"},
                "scenes": [{"index": 0, "references": ["Mara"]}, {"index": 1, "references": []},
                           {"index": 2, "references": ["Mr. Okafor", "Mara"]}]}
    markdown = cast_markdown(manifest, cast)
    assert markdown.startswith("# Cast: The Night Train\n")
    rows = [line for line in markdown.splitlines() if line.startswith("| M")]
    assert len(rows) == 2 and rows[0].startswith("| Mara | ![Mara reference](data:image/jpeg;base64,")
    assert rows[0].endswith(f"| {MARA} | drawn from the description, sha256 `{cast['Mara'].meta['sha256']}` | 0, 2 |")
    # The user's picture, by the hash of its bytes, as the manifest records it.
    okafor = hashlib.sha256(given.read_bytes()).hexdigest()
    assert cast["Mr. Okafor"].summary()["sha256"] == okafor
    assert rows[1].startswith("| Mr. Okafor | ![Mr. Okafor reference](data:")
    assert rows[1].endswith(f"| {OKAFOR} | given by the user, sha256 `{okafor}` | 2 |")
    # Each member's own picture, small: red for Mara, blue for Mr. Okafor.
    mara, theirs = _pictures(markdown)
    assert mara.format == "JPEG" and mara.width == THUMB_WIDTH and mara.height == 2 * THUMB_WIDTH
    assert _colour(mara)[0] > 180 > _colour(mara)[2] and _colour(theirs)[2] > 180 > _colour(theirs)[0]


def test_the_cast_artifact_is_made_only_for_a_render_with_a_cast(cast, monkeypatch):
    from faceless.flows import report

    cast.pop("given")
    made = []
    monkeypatch.setattr(report, "create_markdown_artifact", lambda markdown, **kw: made.append((markdown, kw)))
    manifest = {"story": {"title": "The Night Train", "slug": "the-night-train"},
                "scenes": [{"index": 0, "references": ["Mara"]}]}
    report.publish_cast(manifest, {})
    assert made == []
    report.publish_cast(manifest, cast)
    [(markdown, kw)] = made
    assert kw["key"] == "the-night-train-cast" and "The Night Train" in kw["description"]
    assert markdown == report.cast_markdown(manifest, cast)


def _board():
    from faceless.tasks.stages.results import Storyboard

    shots = [{"index": i, "sentences": [i], "words": (i, i + 1), "text": f"Sentence {i}.", "start": float(i),
              "end": i + 1.0, "cast": cast, "prompt": f"prompt {i}", "prompt_2": "", "prompt_tokens": 2,
              "description": f"prompt {i}", "negative_prompt": "", "seed": i}
             for i, cast in enumerate([["Mara"], [], ["Mr. Okafor", "Mara"]])]
    return Storyboard.of({"stage": "storyboard", "key": "k", "files": {"shots.json": "h"}}, shots=shots)


def test_the_storyboard_review_shows_the_cast_above_the_shots(cast, tmp_path):
    from PIL import Image

    from faceless.flows.review import storyboard_markdown, storyboard_text

    cast.pop("given")
    keyframes = []
    for i in range(3):
        keyframes.append(tmp_path / f"k{i}.png")
        Image.new("RGB", (16, 32), (0, 200, 0)).save(keyframes[-1])
    text = storyboard_text(_board(), keyframes, cast)
    assert text.startswith(f"cast\n  Mara: {MARA}\n    reference: {cast['Mara'].picture} (drawn)\n"
                           f"  Mr. Okafor: {OKAFOR}\n    reference: {cast['Mr. Okafor'].picture} (given)\n\nshot 0")
    assert cast["Mara"].picture.is_file()
    sheet, *shots = text.split("\nshot ")
    assert len(shots) == 3 and "  cast:     Mara\n  keyframe: " in shots[0] and "  cast:     nobody\n" in shots[1]
    assert "  cast:     Mr. Okafor, Mara\n" in shots[2]
    plain = storyboard_text(_board(), keyframes)  # no references, no cast sheet
    assert plain.startswith("shot 0") and "reference:" not in plain and "  cast:" not in plain

    markdown = storyboard_markdown(_board(), keyframes, "The Night Train", 0, cast)
    assert markdown.index("## Cast") < markdown.index("| Mara | ![Mara reference]") < markdown.index("## Shots")
    assert "| 0, 2 |" in markdown  # the shots Mara is in
    assert [line.rsplit("|", 2)[1].strip() for line in markdown.splitlines() if line.startswith("| 2 | ![shot")] \
        == ["Mr. Okafor, Mara"]
    assert "| rules | nobody |" in markdown
    # Two references, then three keyframes: red, blue, then green.
    pictures = _pictures(markdown)
    assert len(pictures) == 5 and _colour(pictures[0])[0] > 180 and _colour(pictures[1])[2] > 180
    assert all(_colour(p)[1] > 150 for p in pictures[2:])
    plain = storyboard_markdown(_board(), keyframes, "The Night Train", 0)
    assert "## Cast" not in plain and "cast |" not in plain and len(_pictures(plain)) == 3
