"""A story in its own language: found from front matter or detected, split by that language's
rules, read by a voice of the profile that speaks it (or refused in one line naming the
languages the profile speaks), timed by that voice, and subtitled in its own script."""

from __future__ import annotations

import json

import numpy as np
import pytest

from test_bad_input import run_cli
from faceless.flows.preflight import for_language, preflight
from faceless.tasks.backends import espeak, voices
from faceless.tasks.models import ModelMissingError
from faceless.tasks.settings import load_profile
from faceless.tasks.stages.align import wrap
from faceless.tasks.stages.plan import StoryError, language_of, plan_story, split_front_matter
from faceless.tasks.text.language import StoryLanguage, canonical
from faceless.tasks.text.sentences import pysbd_language, split_sentences

STORIES = {
    "es": "La abuela guardaba una llave antigua en el bolsillo. Una tarde de lluvia, su nieto encontró la puerta.",
    "fr": "Le vieux boulanger ouvrait sa boutique avant le lever du soleil. Une petite fille attendait devant la porte.",
    "de": "Am Rand des Dorfes stand eine alte Mühle. Eines Morgens hörte der Junge, wie sich die Flügel drehten.",
    "ja": "猫は窓のそばで眠っていた。朝になると、小さな鳥が庭に来た。",
    "ar": "كان الولد يحب البحر كثيرا. في كل صباح يذهب إلى الشاطئ مع جده.",
    "en": "The fox ran across the frozen river. Nobody saw where it went.",
}
PLAN_SETTINGS = {"style": "", "seed": 0, "negative_prompt": ""}


@pytest.mark.parametrize("language", sorted(STORIES))
def test_language_is_detected_from_the_story(language):
    found = language_of(STORIES[language])
    assert (found.tag, found.source) == (language, "detected")


def test_a_story_too_short_to_tell_is_taken_as_english():
    assert language_of("The end.") == language_of("Hello.") == StoryLanguage("en", "default")
    assert language_of("Bonjour.").tag == "fr"


def test_front_matter_language_wins_and_is_canonical():
    story = "---\nlanguage: pt_br\n---\n" + STORIES["es"]  # told, so not detected as Spanish
    assert language_of(story).tag == "pt-BR" and language_of(story).source == "front matter"
    assert [canonical(t) for t in ("ES", "zh-hans", "sr-latn-rs", "es-419")] == ["es", "zh-Hans", "sr-Latn-RS", "es-419"]
    plan = plan_story(story, PLAN_SETTINGS)
    assert (plan.language, plan.language_source) == ("pt-BR", "front matter")


@pytest.mark.parametrize("bad", ["spanish please", "e", "12", "es!"])
def test_a_bad_language_tag_is_one_line(bad):
    with pytest.raises(StoryError, match="not a language tag") as error:
        split_front_matter(f"---\nlanguage: {bad}\n---\nHola.")
    assert "\n" not in str(error.value)


def test_sentences_are_split_by_the_language_rules():
    assert pysbd_language("es-MX") == "es" and pysbd_language("pt-BR") == "en" and pysbd_language("ja") == "ja"
    # Spanish: ¿...? and ¡...! are sentences; German: "Dr." and ordinals ("3. Mai") are not ends.
    assert split_sentences("¿Vienes mañana? ¡Claro que sí! Nos vemos a las tres.", "es") == [
        "¿Vienes mañana?", "¡Claro que sí!", "Nos vemos a las tres."]
    assert split_sentences("Am 3. Mai kam Dr. Weber nach Hause. Er war müde.", "de") == [
        "Am 3. Mai kam Dr. Weber nach Hause.", "Er war müde."]
    assert split_sentences("هل أنت هنا؟ نعم، أنا هنا.", "ar") == ["هل أنت هنا؟", "نعم، أنا هنا."]
    assert split_sentences(STORIES["ja"], "ja") == ["猫は窓のそばで眠っていた。", "朝になると、小さな鳥が庭に来た。"]


# -- the voice for the language ------------------------------------------------------------------

def _voice(profile: str, language: str, voice: str = "") -> dict:
    return for_language(load_profile(profile), language, voice)["narrate"]


def test_each_profile_chooses_its_voice_for_the_language():
    assert _voice("offline", "en")["backend"] == "piper" and _voice("offline", "en")["voice"] == "en_US-joe-medium"
    for language, voice, gap, pace in (("es", "es+klatt", 0, 120), ("fr", "fr+klatt6", 0, 120),
                                       ("de", "de+m1", 80, 100), ("ar", "ar", 0, 120)):
        chosen = _voice("offline", language)
        assert (chosen["backend"], chosen["voice"], chosen["word_gap_ms"], chosen["words_per_minute"],
                chosen["language"]) == ("espeak", voice, gap, pace, language)
        assert "rates_wpm" not in chosen and "word_gaps_ms" not in chosen  # the one pace and gap used
    assert _voice("offline", "pt-BR")["voice"] == "pt-br" and _voice("offline", "de-AT")["voice"] == "de+m1"
    assert _voice("modern", "es")["voice"] == "ef_dora" and _voice("modern", "fr")["voice"] == "ff_siwis"
    assert _voice("modern", "pt")["voice"] == "pf_dora"  # the only Portuguese voice Kokoro has
    assert _voice("modern", "de") == {**_voice("offline", "de"), "sentence_pause_s": 0.3}  # eSpeak NG, named
    assert _voice("studio", "ja")["voice_preset"] == "v2/ja_speaker_1" and _voice("studio", "ja")["backend"] == "bark"
    assert "voices" not in _voice("modern", "es")  # narrate's cache key holds the one voice used


def test_whisper_is_told_the_story_language():
    assert for_language(load_profile("studio"), "es")["align"]["language"] == "es"
    assert for_language(load_profile("studio"), "pt-BR")["align"]["language"] == "pt"


def test_a_language_no_voice_speaks_is_refused_in_one_line_naming_those_it_speaks():
    with pytest.raises(voices.VoiceError) as error:
        _voice("offline", "ja")
    message = str(error.value)
    assert "\n" not in message and "'offline' cannot narrate a story in ja" in message
    spoken = message.split("speak ")[1].split(";")[0].split(", ")
    assert spoken[0] == "en" and {"es", "fr", "de", "ar", "hi", "zh"} <= set(spoken) and "ja" not in spoken
    with pytest.raises(voices.VoiceError, match=r"'tiny' cannot narrate a story in es: its voices speak en;"):
        _voice("tiny", "es")
    with pytest.raises(voices.VoiceError, match="ko, pl, pt, ru, tr, zh; name a voice with --voice"):
        _voice("studio", "sv")


def test_voice_overrides_the_table():
    assert _voice("offline", "ja", "en_US-joe-medium")["backend"] == "piper"
    assert _voice("offline", "ja", "espeak:ja")["voice"] == "ja"
    assert _voice("tiny", "es", "v2/en_speaker_6")["voice_preset"] == "v2/en_speaker_6"
    assert _voice("modern", "it", "ef_dora")["voice"] == "ef_dora"


def test_cli_refuses_an_unspoken_language_before_any_work(tmp_path):
    story = tmp_path / "neko.txt"
    story.write_text(STORIES["ja"], encoding="utf-8")
    result = run_cli(tmp_path, "render", str(story))
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "cannot narrate a story in ja" in result.stderr and "--voice" in result.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "home").exists()


def test_modern_without_weights_names_kokoro_and_the_spanish_voice(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-cache"))
    with pytest.raises(ModelMissingError) as error:
        preflight(story=STORIES["es"], profile="modern")
    message = str(error.value)
    assert "\n" not in message and "hexgrad/Kokoro-82M" in message
    assert message.endswith("this story is in es (detected), read by Kokoro-82M voice ef_dora")


# -- eSpeak NG's own word times ------------------------------------------------------------------

def test_espeak_times_every_word_from_its_word_events(tmp_path):
    words = "El perro, señor García, corrió 1984 veces — ¿rápido?".split()
    summary = espeak.narrate([{"index": 0, "text": " ".join(words), "words": words}],
                             {"voice": "es", "words_per_minute": 150, "sentence_pause_s": 0.3}, tmp_path)
    timed = json.loads((tmp_path / "words.json").read_text(encoding="utf-8"))
    assert summary["voice"] == "eSpeak NG es" and timed["timed_by"] == "voice"
    assert [w["text"] for w in timed["words"]] == words
    starts = [w["start"] for w in timed["words"]]
    assert starts == sorted(starts) and timed["words"][-1]["end"] <= timed["duration"]
    spoken = [w for w in timed["words"] if w["text"] != "—"]
    assert all(w["end"] - w["start"] >= 0.05 for w in spoken)
    assert timed["words"][5]["end"] - timed["words"][5]["start"] > 1.0  # "1984" is said as three words


def test_espeak_word_ends_leave_out_the_pause_after_a_comma():
    audio = np.concatenate([np.full(1000, 0.5), np.zeros(3000), np.full(1000, 0.5)]).astype(np.float32)
    events = [(1, 1, 0), (5, 4, 4000), (1, 5, 4000)]  # word "ab," at 0, clause end, word "cd" at 4000
    assert espeak.word_spans(["ab,", "cd"], events, audio) == [(0, 1000), (4000, 5000)]


def test_espeak_languages_leave_out_japanese():
    assert {"es", "fr", "de", "ar", "pt-br", "zh"} <= set(espeak.languages()) and espeak.voice_for("ja") is None


# -- subtitles in the story's own script -------------------------------------------------------

def test_a_sentence_without_spaces_is_wrapped_between_characters():
    sentence = "猫は窓のそばで眠っていたが、朝になると小さな鳥が庭に来て、静かに歌い始めたので目を覚ました。"
    lines = wrap([sentence])
    assert len(lines) == 2 and "".join(lines) == sentence and all(len(line) <= 42 for line in lines)
    assert wrap(["短い文。"]) == ["短い文。"]
