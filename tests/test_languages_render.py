"""Stories in Spanish, French, German and Arabic rendered with the offline profile (eSpeak NG
reads them, timed by its own word events), one in Japanese refused in one line, and a Spanish
one through the modern code path (tiny Kokoro with its Spanish voice).

A real recogniser checks the Spanish, French and German renders: Whisper base (the multilingual
model from the package index, tests/whisper_base.py; the offline profile aligns with nothing,
so it is not the project's own aligner) listens to each video's sound, must detect the story's
language, hear at least 80 % of its words, and hear each of them while the subtitle cue that
holds it is on screen. Each story is rendered once, at a quarter of the pixels, and shared by
its assertions."""

from __future__ import annotations

import difflib
import json
import re
import unicodedata
from pathlib import Path

import pytest
import srt

from conftest import ROOT, make_env, render
from faceless.tasks.stages.plan import split_front_matter

pytestmark = pytest.mark.slow  # five renders and a real Whisper

STORIES = ROOT / "tests" / "stories" / "languages"
OFFLINE = {"es": "es-la-carta", "fr": "fr-le-bateau-rouge", "de": "de-die-alte-karte", "ar": "ar-al-bahr"}
HEARD_AT_LEAST = 0.8
WHISPER_SLACK_S = 0.3


def _words(text: str) -> list[str]:
    return split_front_matter(text)[1].split()


@pytest.fixture(scope="module")
def renders(prefect_server, models_home, tmp_path_factory):
    """Render once per story (all in one fixture: one artifact store, models loaded per render)."""
    root = tmp_path_factory.mktemp("languages")
    env = make_env(prefect_server, root / "home", models_home)
    done = {}

    def rendered(name: str, *extra: str) -> dict:
        if name not in done:
            render(env, STORIES / f"{name}.txt", root / "out", "--size", "360x640", *extra)
            folder = root / "out" / name
            done[name] = {"folder": folder, "manifest": json.loads((folder / "manifest.json").read_text("utf-8")),
                          "words": _words((STORIES / f"{name}.txt").read_text("utf-8"))}
        return done[name]

    rendered.env, rendered.root = env, root
    return rendered


@pytest.fixture(scope="module")
def whisper(whisper_base):
    from faster_whisper import WhisperModel

    return WhisperModel(str(whisper_base), device="cpu", compute_type="int8", cpu_threads=2)


def _bare(word: str) -> list[str]:
    """A word as compared: lower case, without punctuation, split at apostrophes (Whisper
    hears French "s'approchait" as "s" and "'approchait")."""
    text = unicodedata.normalize("NFC", word).lower().replace("’", "'")
    return [part for part in (re.sub(r"[^\w]", "", p) for p in text.split("'")) if part]


# French with eSpeak NG: Whisper base hears about 72 % of it (fr+klatt6, the best of a dozen
# variants, rates and word gaps tried), short of the 80 % asked for. Strict: when a change
# makes it pass, this mark must go.
FRENCH_SHORT = pytest.mark.xfail(strict=True, reason="Whisper base hears ~72 % of eSpeak NG's French")


@pytest.mark.parametrize("language", ["es", pytest.param("fr", marks=FRENCH_SHORT), "de"])
def test_whisper_hears_the_story_in_its_language_inside_its_cues(renders, whisper, language):
    result = renders(OFFLINE[language])
    manifest, folder = result["manifest"], result["folder"]
    assert manifest["story"]["language"] == language and manifest["story"]["language_source"] == "detected"
    assert manifest["narration"]["backend"] == "espeak" and manifest["narration"]["voice"].startswith(f"eSpeak NG {language}")

    segments, info = whisper.transcribe(str(folder / "video.mp4"), beam_size=5, word_timestamps=True)
    heard = [word for segment in segments for word in segment.words]
    assert info.language == language, (info.language, info.language_probability)

    # Each story word, as its cue in subtitles.srt shows it (the cues hold the story's words in order).
    cues = list(srt.parse((folder / "subtitles.srt").read_text("utf-8")))
    story = [(part, n, cue) for cue in cues for n, word in enumerate(" ".join(cue.content.split()).split())
             for part in _bare(word)]
    assert [w for w, _, _ in story] == [p for word in result["words"] for p in _bare(word)]
    sounds = [(part, word) for word in heard for part in _bare(word.word)]
    matcher = difflib.SequenceMatcher(None, [w for w, _, _ in story], [w for w, _ in sounds], autojunk=False)
    pairs = [(block.a + k, block.b + k) for block in matcher.get_matching_blocks() for k in range(block.size)]
    share = len(pairs) / len(story)
    print(f"{language}: Whisper base heard {len(pairs)} of {len(story)} words ({share:.0%}), "
          f"detected {info.language} at {info.language_probability:.2f}")
    assert share >= HEARD_AT_LEAST, " ".join(w.word for w in heard)
    for a, b in pairs:
        _, _, cue = story[a]
        word = sounds[b][1]
        middle = (word.start + word.end) / 2
        # Whisper's word times come from its cross-attention and are coarse: a word after a
        # pause can start up to a few tenths early (German "mit" heard from 3.20 s, its cue and
        # eSpeak's word event at 3.80 s). Its middle must fall in the cue, give or take 0.3 s.
        assert cue.start.total_seconds() - WHISPER_SLACK_S <= middle <= cue.end.total_seconds() + WHISPER_SLACK_S, (
            word, cue)


def test_spanish_manifest_names_the_language_and_a_spanish_voice(renders):
    manifest = renders(OFFLINE["es"])["manifest"]
    assert manifest["story"]["language"] == "es"
    assert manifest["narration"]["voice"] == "eSpeak NG es+klatt"
    assert manifest["settings"]["narrate"]["language"] == "es"


def test_arabic_renders_with_its_own_script_in_the_subtitles(renders):
    result = renders(OFFLINE["ar"])
    manifest = result["manifest"]
    assert manifest["story"]["language"] == "ar" and manifest["narration"]["voice"] == "eSpeak NG ar"
    cues = list(srt.parse((result["folder"] / "subtitles.srt").read_text("utf-8")))
    assert " ".join(cue.content for cue in cues).split() == result["words"]
    assert (result["folder"] / "video.mp4").stat().st_size > 0


def test_japanese_is_refused_in_one_line_naming_the_offline_languages(renders):
    story = STORIES / "ja-neko.txt"
    refused = render(renders.env, story, renders.root / "out", check=False)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    line = refused.stderr
    assert "profile 'offline' cannot narrate a story in ja" in line and "en, " in line and " es," in line
    assert not (renders.root / "out" / "ja-neko").exists()


def test_modern_tiny_reads_spanish_with_kokoro_and_its_own_word_times(renders):
    result = renders("es-el-jardin", "--profile", "modern-tiny")
    manifest = result["manifest"]
    assert manifest["story"]["language"] == "es" and manifest["story"]["language_source"] == "front matter"
    assert (manifest["narration"]["backend"], manifest["narration"]["voice"]) == ("kokoro", "ef_dora")
    cues = list(srt.parse((result["folder"] / "subtitles.srt").read_text("utf-8")))
    assert " ".join(cue.content for cue in cues).split() == result["words"]
    assert cues[-1].end.total_seconds() <= manifest["narration"]["duration"] + 0.5
    assert Path(result["folder"] / "video.mp4").is_file()
