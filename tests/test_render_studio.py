"""The studio code path end to end on tiny models (`--profile tiny`), cast references included
(one member's picture given, one drawn), and `--profile studio` refusing at once on a machine
without the weights."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
import wave

import av
import pytest
import srt
import webvtt

from conftest import BIN, make_env, render
from faceless.tasks.settings import load_profile, profile_yaml

pytestmark = pytest.mark.slow  # renders through the studio backends on a real Prefect server
SMALL = ("--size", "360x640")  # what is checked here does not need the full frame

STORY = (
    "Mira kept 12 paper boats on the windowsill of the tower room. "
    "When the river rose, she set them sailing — one for every year her brother Tomas had been away, "
    "each carrying a note folded small.\n"
    "By morning, the boats had reached the sea."
)
# Who is in it and how it looks: the shot writer must keep both in every prompt. Mira's
# reference is her picture, given; Tomas's is drawn from his description.
FRONT_MATTER = ("---\nstyle: ink and watercolour, muted teal\ncast:\n"
                "  Mira: {{description: a girl of twelve in a yellow raincoat, image: pictures/mira.png}}\n"
                "  Tomas: {tomas}\n---\n")
TOMAS = "a thin young sailor with a blue cap"


def write_picture(path) -> None:
    from PIL import Image, ImageDraw

    path.parent.mkdir(parents=True, exist_ok=True)
    picture = Image.new("RGB", (96, 160), (230, 200, 40))
    ImageDraw.Draw(picture).ellipse((28, 10, 68, 50), fill=(240, 210, 180))
    picture.save(path)


@pytest.fixture(scope="module")
def tiny(prefect_server, models_home, tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-e2e")
    env = make_env(prefect_server, root / "home", models_home)
    story = root / "paper-boats.txt"
    story.write_text(FRONT_MATTER.format(tomas=TOMAS) + STORY, encoding="utf-8")
    write_picture(root / "pictures" / "mira.png")
    out = root / "out"
    # The tiny profile with shots of about 2 s: the tiny voice speaks this story in about 4 s,
    # and the review below needs more than one shot.
    profile = load_profile("tiny")
    profile["plan"]["shot_seconds"] = {"target": 2.0, "max": 2.5}
    (root / "tiny-short.yaml").write_text(profile_yaml({**profile, "name": "tiny-short"}), encoding="utf-8")
    started = time.monotonic()
    result = render(env, story, out, "--profile", str(root / "tiny-short.yaml"), *SMALL)
    folder = out / "paper-boats"
    return {"folder": folder, "result": result, "seconds": time.monotonic() - started, "home": root / "home",
            "env": env, "story": story, "root": root, "profile": str(root / "tiny-short.yaml"),
            "manifest": json.loads((folder / "manifest.json").read_text())}


def test_tiny_profile_renders_through_the_studio_backends(tiny):
    manifest = tiny["manifest"]
    assert tiny["result"].stdout.strip().splitlines()[-1] == str(tiny["folder"] / "video.mp4")
    assert manifest["backends"] == {"narrate": "bark", "align": "faster-whisper",
                                    "keyframe": "sdxl-ensemble", "animate": "svd"}
    assert manifest["models"]["narrate"].startswith("bark tiny:bark@")
    assert manifest["models"]["align"].startswith("tiny:whisper@")
    assert manifest["narration"]["backend"] == "bark" and manifest["narration"]["sample_rate"] == 24_000
    assert manifest["seeds"] == [s["seed"] for s in manifest["scenes"]]
    assert {s["stage"] for s in manifest["stages"]} == {"plan", "narrate", "align", "storyboard", "writer", "cast",
                                                        "keyframe", "animate", "compose"}
    # The tiny voice speaks about a second a sentence: short sentences join into shots of 2-6 s.
    for shot in manifest["scenes"]:
        assert shot["frames"] / 24 <= 6.0 + 1 / 24 and 1 <= shot["windows"] <= 2, shot
        assert shot["prompt_tokens"] <= 77
        assert shot["interpolation"].startswith("minterpolate"), shot  # motion-compensated, as studio


def test_each_model_is_loaded_once_for_all_shots(tiny):
    assert tiny["manifest"]["model_loads"] == {"bark": 1, "whisper": 1, "writer": 1, "sdxl": 1, "svd": 1}
    log = tiny["result"].stderr
    assert "released bark, whisper before the next model stage" in log
    assert "released writer before the next model stage" in log
    assert "released sdxl before the next model stage" in log


def test_the_llm_writer_describes_every_shot_within_77_tokens_keeping_cast_and_style(tiny):
    """The tiny random Qwen2 twin writes nonsense, but under the schema every shot's answer is a
    whole description; its prompts keep the story's style and the shot's cast, within 77 tokens."""
    manifest = tiny["manifest"]
    assert manifest["settings"]["storyboard"]["writer"] == "llm"
    assert manifest["models"]["storyboard"].startswith("tiny:shot-writer@")
    [written] = sorted(tiny["home"].glob("artifacts/writer/*/shots.json"))  # the writer's artifact
    assert [s["visual"] for s in json.loads(written.read_text())["shots"]] == [s["visual"] for s in manifest["scenes"]]
    style, mira = "ink and watercolour, muted teal", "Mira: a girl of twelve in a yellow raincoat"
    for shot in manifest["scenes"]:
        assert shot["writer"] == "llm" and shot["writer_note"] is None, shot
        assert set(shot["visual"]) == {"subject", "action", "setting", "camera", "motion", "prompt", "description"}
        assert all(value.strip() for value in shot["visual"].values())
        assert shot["prompt_tokens"] <= 77
        both = shot["prompt"] + " | " + shot["prompt_2"]
        assert style in both and style in shot["description"], shot
        if "Mira" in shot["cast"]:
            assert mira in both and mira in shot["description"], shot
        assert shot["visual"]["description"] in shot["description"]
        assert shot["edited"] is False
    assert any("Mira" in shot["cast"] for shot in manifest["scenes"])


def test_subtitles_are_exactly_the_story_words_with_alignment_counts(tiny):
    words = STORY.split()
    cues = list(srt.parse((tiny["folder"] / "subtitles.srt").read_text(encoding="utf-8")))
    assert " ".join(c.content for c in cues).split() == words
    assert " ".join(c.text for c in webvtt.read(str(tiny["folder"] / "subtitles.vtt"))).split() == words
    subtitles = tiny["manifest"]["subtitles"]
    assert subtitles["aligner"] == "faster-whisper"
    assert subtitles["aligned_words"] + subtitles["estimated_words"] == len(words)


def test_video_covers_the_bark_narration(tiny):
    with wave.open(str(tiny["folder"] / "narration.wav")) as wav:
        assert wav.getframerate() == 24_000
        narration = wav.getnframes() / wav.getframerate()
    with av.open(str(tiny["folder"] / "video.mp4")) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert abs(frames / 24 - narration) <= 1 / 24
    assert tiny["seconds"] < 240


def make_env_without_server(tmp_path):
    env = {**os.environ, "FACELESS_HOME": str(tmp_path / "home")}
    env.pop("PREFECT_API_URL", None)  # the refusal comes before Prefect would start
    env.pop("HF_HUB_CACHE", None)  # so HF_HOME alone says where the cache is
    return env


def test_studio_without_weights_refuses_within_a_minute_naming_every_model(tmp_path):
    story = tmp_path / "story.txt"
    story.write_text(STORY, encoding="utf-8")
    env = {**make_env_without_server(tmp_path), "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    started = time.monotonic()
    result = subprocess.run([str(BIN / "faceless"), "render", str(story), "--profile", "studio",
                             "--out", str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=120)
    seconds = time.monotonic() - started
    assert result.returncode == 2, result.stderr
    assert seconds < 60
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("faceless: error: ")
    assert "Traceback" not in result.stderr
    for repo in ("stabilityai/stable-diffusion-xl-base-1.0", "stabilityai/stable-diffusion-xl-refiner-1.0",
                 "stabilityai/stable-video-diffusion-img2vid-xt", "suno/bark-small", "Systran/faster-whisper-large-v3"):
        assert f"hf download {repo}" in lines[0]
    assert "hf download Qwen/Qwen2.5-3B-Instruct" in lines[0]  # the shot writer's model, named too
    assert "hf download h94/IP-Adapter sdxl_models/ip-adapter_sdxl.safetensors" in lines[0]  # and the IP-Adapter
    assert not (tmp_path / "out").exists(), "nothing is written before the check"


def test_terminal_review_prints_the_storyboard_then_takes_edits_from_a_file(tiny):
    """`--review` stops after the keyframes (all cached here: the same story and store as the
    render above) and prints the storyboard; `--review-edits FILE` changes the last shot's prompt:
    only its keyframe and clip are made again, and the manifest marks it edited."""
    env, story, out = tiny["env"], tiny["story"], tiny["root"] / "reviewed"
    started = time.monotonic()
    shown = render(env, story, out, "--profile", tiny["profile"], *SMALL, "--review")
    stopped = time.monotonic() - started
    shots = tiny["manifest"]["scenes"]
    for shot in shots:
        assert f"shot {shot['index']}  " in shown.stdout and shot["prompt"] in shown.stdout
    pictures = [line.split("keyframe: ", 1)[1] for line in shown.stdout.splitlines() if "keyframe: " in line]
    assert len(pictures) == len(shots) and all(os.path.isfile(p) for p in pictures)
    # The cast sheet above the shots, each with its reference picture; each shot names its cast.
    sheet = shown.stdout.split("\nshot ", 1)[0]
    assert "  Mira: a girl of twelve in a yellow raincoat\n" in sheet and f"  Tomas: {TOMAS}\n" in sheet
    references = [line.split("reference: ", 1)[1].rsplit(" (", 1) for line in sheet.splitlines() if "reference: " in line]
    assert [how for _, how in references] == ["given)", "drawn)"] and all(os.path.isfile(p) for p, _ in references)
    assert [line.split("cast:", 1)[1].strip() for line in shown.stdout.splitlines() if line.startswith("  cast:")] \
        == [", ".join(shot["references"]) or "nobody" for shot in shots]
    assert "--review-edits FILE" in shown.stderr and not (out / "paper-boats" / "video.mp4").exists()

    assert len(shots) >= 2
    last = shots[-1]["index"]
    edits = tiny["root"] / "edits.yaml"
    edits.write_text(f"{last}:\n  prompt: a lighthouse at dusk, waves breaking, wide shot\n", encoding="utf-8")
    done = render(env, story, out, "--profile", tiny["profile"], *SMALL, "--review-edits", str(edits))
    print(f"review stop {stopped:.1f} s, edited render {time.monotonic() - started - stopped:.1f} s")
    assert done.stdout.strip().splitlines()[-1] == str(out / "paper-boats" / "video.mp4")
    manifest = json.loads((out / "paper-boats" / "manifest.json").read_text())
    assert [s["edited"] for s in manifest["scenes"]] == [s["index"] == last for s in shots]
    assert manifest["scenes"][-1]["prompt"] == "a lighthouse at dusk, waves breaking, wide shot"
    computed = {(r["stage"], r["scene"]) for r in manifest["stages"] if not r["cached"]}
    assert computed == {("keyframe", last), ("animate", last), ("compose", None)}, computed


def test_each_shot_is_conditioned_on_the_references_of_the_cast_it_shows(tiny):
    """One reference per member, made once: Mira's picture as given (its hash), Tomas's drawn;
    each keyframe conditioned on exactly the members its shot shows."""
    manifest = tiny["manifest"]
    runs = [r for r in manifest["stages"] if r["stage"] == "cast"]
    assert sorted(r["scene"] for r in runs) == [0, 1] and not any(r["cached"] for r in runs)
    picture = (tiny["root"] / "pictures" / "mira.png").read_bytes()
    assert manifest["cast"]["Mira"]["source"] == "given"
    assert manifest["cast"]["Mira"]["sha256"] == hashlib.sha256(picture).hexdigest()
    [given] = tiny["home"].glob(f"artifacts/cast/{manifest['cast']['Mira']['key']}/reference.png")
    assert given.read_bytes() == picture  # used as given, not redrawn or re-encoded
    assert manifest["cast"]["Tomas"]["source"] == "drawn" and manifest["cast"]["Tomas"]["description"] == TOMAS
    for shot in manifest["scenes"]:
        assert shot["references"] == shot["cast"], shot
    assert {name for shot in manifest["scenes"] for name in shot["references"]} == {"Mira", "Tomas"}
    assert manifest["models"]["keyframe"]["ip_adapter"].startswith("tiny:ip-adapter-sdxl@")


def test_the_run_page_shows_the_cast_sheet(tiny):
    """The run's `<slug>-cast` artifact: each member's reference picture (a JPEG data URI), their
    description, and whether it was given (with its hash) or drawn."""
    import httpx

    manifest = tiny["manifest"]
    found = httpx.post(f"{tiny['env']['PREFECT_API_URL']}/artifacts/filter",
                       json={"artifacts": {"flow_run_id": {"any_": [manifest["flow_run_id"]]}}}, timeout=30).json()
    keyed = {a["key"]: a for a in found if a["key"]}
    sheet = keyed["paper-boats-cast"]
    assert sheet["type"] == "markdown" and manifest["story"]["title"] in sheet["description"]
    assert sheet["data"].count("](data:image/jpeg;base64,") == 2
    assert f"| a girl of twelve in a yellow raincoat | given by the user, sha256 `{manifest['cast']['Mira']['sha256']}` |" \
        in sheet["data"]
    assert f"| {TOMAS} | drawn from the description, sha256 `{manifest['cast']['Tomas']['sha256']}` |" in sheet["data"]


def test_a_changed_description_remakes_only_that_reference_and_the_shots_showing_them(tiny):
    """Tomas described anew: his reference, and the keyframes and clips of his shots, are made
    again; the story's text changed, so plan, storyboard, writer and compose run; nothing else."""
    story = tiny["root"] / "changed" / "paper-boats.txt"
    story.parent.mkdir()
    story.write_text(FRONT_MATTER.format(tomas="an old sailor with a white beard") + STORY, encoding="utf-8")
    write_picture(story.parent / "pictures" / "mira.png")  # the same picture, elsewhere: still cached
    out = tiny["root"] / "changed-out"
    render(tiny["env"], story, out, "--profile", tiny["profile"], *SMALL)
    manifest = json.loads((out / "paper-boats" / "manifest.json").read_text())
    tomas = {s["index"] for s in manifest["scenes"] if "Tomas" in s["references"]}
    assert tomas and len(tomas) < len(manifest["scenes"]), manifest["scenes"]
    computed = {(r["stage"], r["scene"]) for r in manifest["stages"] if not r["cached"]}
    assert computed == {("plan", None), ("storyboard", None), ("writer", None), ("cast", 1), ("compose", None),
                        *{(stage, i) for i in tomas for stage in ("keyframe", "animate")}}, computed
    assert manifest["cast"]["Mira"] == tiny["manifest"]["cast"]["Mira"]
    assert manifest["cast"]["Tomas"]["key"] != tiny["manifest"]["cast"]["Tomas"]["key"]
