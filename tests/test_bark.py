"""Bark narration: long sentences cut at clause boundaries, one voice, 24 kHz, estimated word times."""

from __future__ import annotations

import json
import wave

import pytest

from faceless.tasks import models
from faceless.tasks.backends import bark
from faceless.tasks.backends.bark import chunk_sentences, chunk_words, estimate_word_times
from faceless.tasks.stages.narrate import narrate
from faceless.tasks.settings import section

LONG = ("The lighthouse keeper climbed the narrow stairs at dusk, counting every step as his father had, "
        "while the storm that had chased the fishing boats home all afternoon threw salt against the glass; "
        "below him, the harbour lights went out one by one.")


def test_short_sentence_is_one_chunk():
    words = "It was 1984.".split()
    assert chunk_words(words, 180) == [words]


def test_long_sentence_is_cut_at_clause_boundaries():
    words = LONG.split()
    chunks = chunk_words(words, 120)
    assert len(chunks) > 1
    assert [w for chunk in chunks for w in chunk] == words, "the pieces are exactly the sentence's words"
    assert all(len(" ".join(chunk)) <= 120 for chunk in chunks)
    # Every cut falls after a clause mark (, ;), never in the middle of a clause.
    assert all(chunk[-1].endswith((",", ";")) for chunk in chunks[:-1])


def test_clause_too_long_alone_is_split_evenly_between_words():
    words = ("word " * 60).split()  # 299 characters and no punctuation at all
    chunks = chunk_words(words, 100)
    assert [w for chunk in chunks for w in chunk] == words
    assert all(len(" ".join(chunk)) <= 100 for chunk in chunks)
    sizes = [len(chunk) for chunk in chunks]
    assert len(chunks) == 3 and max(sizes) - min(sizes) <= 1


def test_spaced_dash_starts_a_clause():
    words = "She waited for the tide to turn and for the gulls to settle — then she ran down to the water".split()
    chunks = chunk_words(words, 60)
    assert chunks[1][0] == "—"
    assert [w for chunk in chunks for w in chunk] == words


def test_a_comma_inside_closing_quotes_ends_a_clause():
    words = '"I am here," she said, "and I will stay until the boats come home."'.split()
    chunks = chunk_words(words, 40)
    assert chunks[0] == ['"I', "am", 'here,"', "she", "said,"]
    assert [w for chunk in chunks for w in chunk] == words


def test_chunks_keep_story_word_positions():
    sentences = [{"index": 0, "text": "Short one.", "words": ["Short", "one."]},
                 {"index": 1, "text": LONG, "words": LONG.split()}]
    chunks = chunk_sentences(sentences, 120)
    assert chunks[0].first_word == 0 and chunks[1].first_word == 2
    for before, after in zip(chunks, chunks[1:]):
        assert after.first_word == before.first_word + len(before.words)


def test_estimated_word_times_tile_the_span():
    times = estimate_word_times(["a", "longer", "word"], 1.0, 3.0)
    assert times[0][0] == 1.0 and times[-1][1] == pytest.approx(3.0)
    assert all(a[1] == pytest.approx(b[0]) for a, b in zip(times, times[1:]))
    assert times[1][1] - times[1][0] > times[0][1] - times[0][0]


SETTINGS = section("narrate", backend="bark", model="tiny:bark", voice_preset="v2/en_speaker_6", max_chunk_chars=120,
                   clause_pause_s=0.1, sentence_pause_s=0.3, semantic_max_new_tokens=30, seed=7)


def test_tiny_bark_narrates_sentence_by_sentence_at_24_khz(tiny_home, tmp_path):
    sentences = [{"index": 0, "text": "It was 1984.", "words": ["It", "was", "1984."]},
                 {"index": 1, "text": LONG, "words": LONG.split()}]
    meta = narrate(sentences, SETTINGS, tmp_path)
    timing = json.loads((tmp_path / "words.json").read_text())
    with wave.open(str(tmp_path / "narration.wav")) as wav:
        assert wav.getframerate() == 24_000
        assert wav.getnframes() / 24_000 == pytest.approx(timing["duration"])
    assert meta["backend"] == "bark" and meta["chunks"] == len(timing["chunks"]) >= 3
    assert [w["text"] for w in timing["words"]] == ["It", "was", "1984."] + LONG.split()
    assert [w["index"] for w in timing["words"]] == list(range(len(timing["words"])))
    assert all(w["estimated"] for w in timing["words"])
    # Silences: a short one between the pieces of a sentence, a longer one between sentences.
    chunks = timing["chunks"]
    assert chunks[1]["start"] - chunks[0]["end"] == pytest.approx(0.3, abs=1e-3)
    assert chunks[2]["start"] - chunks[1]["end"] == pytest.approx(0.1, abs=1e-3)
    spans = timing["sentences"]
    assert spans[0]["end"] == chunks[0]["end"] and spans[1]["start"] == chunks[1]["start"]
    assert spans[1]["end"] == pytest.approx(timing["duration"])


def test_the_same_sentence_sounds_the_same_wherever_it_is(tiny_home, tmp_path):
    # Seeded by the text: editing another sentence leaves this one's audio and length alone.
    one = [{"index": 0, "text": "It was 1984.", "words": ["It", "was", "1984."]}]
    two = [{"index": 0, "text": "Hello there.", "words": ["Hello", "there."]},
           {"index": 1, "text": "It was 1984.", "words": ["It", "was", "1984."]}]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    narrate(one, SETTINGS, tmp_path / "a")
    narrate(two, SETTINGS, tmp_path / "b")
    a = json.loads((tmp_path / "a" / "words.json").read_text())["chunks"][0]
    b = json.loads((tmp_path / "b" / "words.json").read_text())["chunks"][1]
    assert a["end"] - a["start"] == pytest.approx(b["end"] - b["start"])


def test_bark_is_loaded_once_for_many_sentences(tiny_home, tmp_path):
    bark.load_cached("tiny:bark")
    before = models.LOADS["bark"]
    sentences = [{"index": i, "text": f"Sentence {i}.", "words": ["Sentence", f"{i}."]} for i in range(3)]
    narrate(sentences, SETTINGS, tmp_path)
    assert models.LOADS["bark"] == before
