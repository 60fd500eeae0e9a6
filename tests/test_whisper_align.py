"""Known story text mapped onto the words a recogniser heard: the story's words, the audio's times."""

from __future__ import annotations

import json
import wave

import numpy as np
import pytest
import srt

from faceless.tasks.stages.align import align
from faceless.tasks.settings import section
from faceless.tasks.backends.whisper_align import (Heard, fill_between, fit_words, match_words, normal_form, number_words, recognise,
                                 settle)


def heard(*items) -> list[Heard]:
    """Heard words one after another, 0.5 s each, from t=0."""
    return [Heard(text, i * 0.5, i * 0.5 + 0.4) for i, text in enumerate(items)]


def test_numbers_and_punctuation_have_one_normal_form():
    assert number_words(1984) == ["one", "thousand", "nine", "hundred", "eighty", "four"]
    assert normal_form('"Hello,') == ["hello"] == normal_form(" hello")
    assert normal_form("40") == normal_form("forty") == ["forty"]
    assert normal_form("1,000") == ["one", "thousand"]
    assert normal_form("twenty-one") == normal_form("21") == ["twenty", "one"]
    assert normal_form("—") == []
    assert normal_form("$300") == ["three", "hundred", "dollars"] == normal_form("300") + normal_form("dollars")


def test_exact_match_takes_every_heard_time():
    spans = match_words(["The", "fox", "ran."], heard(" the", " Fox", " ran"))
    assert spans == [(0.0, 0.4), (0.5, 0.9), (1.0, 1.4)]


def test_insertions_in_the_audio_are_skipped():
    spans = match_words(["The", "fox", "ran."], heard("the", "um", "uh", "fox", "ran"))
    assert spans == [(0.0, 0.4), (1.5, 1.9), (2.0, 2.4)]


def test_words_the_recogniser_dropped_are_left_to_fill():
    spans = match_words(["The", "quick", "fox", "ran."], heard("the", "fox", "ran"))
    assert spans[1] is None and spans[2] == (0.5, 0.9)
    filled = fill_between(spans, 0.0, 2.0)
    assert filled[1][0] >= filled[0][1] and filled[1][1] <= filled[2][0]


def test_numbers_written_either_way_match():
    # Story says "40", recogniser writes "forty"; story says "twenty-one", recogniser writes "21".
    spans = match_words(["He", "wrote", "40", "lines,", "twenty-one", "pages."],
                        heard("he", "wrote", "forty", "lines", "21", "pages."))
    assert all(span is not None for span in spans)
    assert spans[2] == (1.0, 1.4) and spans[4] == (2.0, 2.4)


def test_a_number_spoken_as_several_words_spans_them_all():
    spans = match_words(["In", "1984", "she", "left."],
                        heard("in", "one", "thousand", "nine", "hundred", "eighty", "four", "she", "left"))
    assert spans[1] == (0.5, 3.4)


def test_fill_between_is_monotonic_and_clamped():
    filled = fill_between([(0.5, 0.6), (0.2, 0.3), None, (5.0, 9.0)], 0.0, 4.0)
    starts = [s for s, _ in filled]
    assert starts == sorted(starts)
    assert all(0.0 <= s <= e <= 4.0 for s, e in filled)


def narration_timing():
    words = [{"sentence": 0, "index": i, "text": t, "start": i * 0.3, "end": i * 0.3 + 0.3, "estimated": True}
             for i, t in enumerate(["A", "fox", "ran."])]
    words += [{"sentence": 1, "index": 3 + i, "text": t, "start": 2 + i * 0.3, "end": 2.3 + i * 0.3, "estimated": True}
              for i, t in enumerate(["It", "was", "1984."])]
    return {"duration": 3.0, "sentences": [{"index": 0, "start": 0.0, "end": 0.9}, {"index": 1, "start": 2.0, "end": 2.9}],
            "words": words}


def test_sentences_heard_well_are_aligned_and_garbled_ones_keep_their_estimate():
    timing = narration_timing()
    recognised = [Heard("a", 0.05, 0.2), Heard("fox", 0.25, 0.5), Heard("ran", 0.55, 0.85),
                  Heard("xqz", 2.1, 2.5)]  # the second sentence came out as noise
    words, counts = fit_words(timing, recognised)
    assert [w["text"] for w in words] == ["A", "fox", "ran.", "It", "was", "1984."]
    assert counts == {"aligned_words": 3, "estimated_words": 3, "estimated_sentences": 1}
    assert [(w["start"], w["end"]) for w in words[:3]] == [(0.05, 0.2), (0.25, 0.5), (0.55, 0.85)]
    assert words[3:] == [{**w, "estimated": True} for w in timing["words"][3:]]


def test_heard_words_only_count_in_their_own_sentence():
    timing = narration_timing()
    # "fox" heard during the second sentence's audio must not time the first sentence's fox.
    words, counts = fit_words(timing, [Heard("it", 2.0, 2.2), Heard("was", 2.3, 2.5), Heard("fox", 2.6, 2.7),
                                       Heard("1984", 2.6, 2.9)])
    assert counts["aligned_words"] == 3 and counts["estimated_sentences"] == 1
    assert words[1]["start"] == timing["words"][1]["start"]


def write_wav(path, pieces, rate=16_000):
    """A tone where a piece is True and silence where False; each piece lasts 0.1 s."""
    t = np.arange(rate // 10) / rate
    tone = (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2")
    audio = np.concatenate([tone if loud else np.zeros_like(tone) for loud in pieces])
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(audio.tobytes())


def test_settle_moves_running_boundaries_and_keeps_starts_after_a_gap(tmp_path):
    write_wav(tmp_path / "a.wav", [True] * 20)  # 2 s of sound, no silence
    words = settle([Heard("a", 0.1, 0.5), Heard("b", 0.5, 0.9), Heard("c", 1.2, 1.5)], tmp_path / "a.wav", 0.1)
    assert [(w.start, w.end) for w in words] == [(0.1, 0.6), (0.6, 1.0), (1.2, 1.6)]


def test_a_word_never_starts_in_silence_nor_before_a_pause_it_swallowed(tmp_path):
    # sound 0-0.5 s, silence 0.5-0.8 s, sound 0.8-1.5 s
    write_wav(tmp_path / "a.wav", [True] * 5 + [False] * 3 + [True] * 7)
    words = settle([Heard("one", 0.0, 0.4), Heard("two", 0.4, 1.1), Heard("three", 1.2, 1.4)], tmp_path / "a.wav", 0.0)
    assert words[1].start == pytest.approx(0.8) and words[1].end == 1.1  # "two" took in the pause
    words = settle([Heard("one", 0.0, 0.4), Heard("two", 0.6, 1.1)], tmp_path / "a.wav", 0.0)
    assert words[1].start == pytest.approx(0.8)  # started inside the silence
    words = settle([Heard("one", 0.0, 0.4), Heard("two", 0.6, 0.7)], tmp_path / "a.wav", 0.0)
    assert words[1].start == 0.6  # all silence: nothing to go by, keep the recogniser's time


SETTINGS = section("align", backend="faster-whisper", model="tiny:whisper", language="en", beam_size=1,
                   temperature=0.0, max_new_tokens=12)


def test_tiny_whisper_runs_and_the_subtitles_keep_the_story_words(tiny_home, tmp_path):
    timing = narration_timing()
    rate = 24_000
    noise = (np.random.default_rng(0).standard_normal(int(timing["duration"] * rate)) * 0.1 * 32767).astype("<i2")
    with wave.open(str(tmp_path / "narration.wav"), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(noise.tobytes())
    (tmp_path / "words.json").write_text(json.dumps(timing))
    recognised = recognise(tmp_path / "narration.wav", SETTINGS)
    assert all(isinstance(w, Heard) and w.start <= w.end for w in recognised)
    out = tmp_path / "align"
    out.mkdir()
    meta = align(tmp_path / "words.json", out, SETTINGS)
    assert meta["aligner"] == "faster-whisper"
    assert meta["aligned_words"] + meta["estimated_words"] == 6
    cues = list(srt.parse((out / "subtitles.srt").read_text(encoding="utf-8")))
    assert " ".join(c.content for c in cues).split() == ["A", "fox", "ran.", "It", "was", "1984."]
