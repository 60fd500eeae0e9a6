"""Word times from the Piper voice, and the subtitle cues built on them."""

from __future__ import annotations

import json

import pytest
import srt
import webvtt

from faceless.tasks.stages.align import MAX_LINE, align, build_cues
from faceless.tasks.stages.narrate import narrate
from faceless.tasks.settings import section

SETTINGS = section("narrate", backend="piper", voice="en_US-joe-medium", noise_w_scale=0.0, sentence_pause_s=0.3)
SENTENCES = [
    'His first program printed "Hello, World" and he was thrilled.',
    "By 1984 he wrote 40 lines; café naïve 😀 — done!",
]


@pytest.fixture(scope="module")
def narrated(tmp_path_factory):
    directory = tmp_path_factory.mktemp("narrate")
    sentences = [{"index": i, "text": s, "words": s.split()} for i, s in enumerate(SENTENCES)]
    meta = narrate(sentences, SETTINGS, directory)
    return directory, meta, json.loads((directory / "words.json").read_text())


def test_every_story_word_gets_an_ordered_time_inside_its_sentence(narrated):
    _, meta, timing = narrated
    words = timing["words"]
    assert [w["text"] for w in words] == " ".join(SENTENCES).split()
    spans = {s["index"]: s for s in timing["sentences"]}
    for before, word in zip([None] + words, words):
        assert word["start"] <= word["end"]
        span = spans[word["sentence"]]
        assert span["start"] - 1e-6 <= word["start"] and word["end"] <= span["end"] + 1e-6
        if before:
            assert before["end"] <= word["start"] + 1e-6
    assert meta["duration"] == pytest.approx(timing["duration"]) and timing["duration"] > 3


def test_numbers_are_timed_as_spoken(narrated):
    _, _, timing = narrated
    times = {w["text"]: w["end"] - w["start"] for w in timing["words"]}
    # "1984" is spoken as "nineteen eighty-four": far longer than a short word.
    assert times["1984"] > 2 * times["By"]


def test_durations_are_deterministic(tmp_path, narrated):
    _, _, timing = narrated
    sentences = [{"index": i, "text": s, "words": s.split()} for i, s in enumerate(SENTENCES)]
    narrate(sentences, SETTINGS, tmp_path)
    again = json.loads((tmp_path / "words.json").read_text())
    assert again["sentences"] == timing["sentences"]


def test_align_writes_parseable_subtitles_of_the_story_words(narrated, tmp_path):
    directory, _, _ = narrated
    meta = align(directory / "words.json", tmp_path)
    cues = list(srt.parse((tmp_path / "subtitles.srt").read_text(encoding="utf-8")))
    assert " ".join(c.content for c in cues).split() == " ".join(SENTENCES).split()
    vtt = webvtt.read(str(tmp_path / "subtitles.vtt"))
    assert [c.text for c in vtt] == [c.content for c in cues]
    assert meta["cues"] == len(cues) and meta["chars_per_second"] > 0


def test_long_sentence_is_split_into_balanced_cues():
    words = [{"text": w, "sentence": 0, "index": i, "start": i * 0.3, "end": i * 0.3 + 0.25}
             for i, w in enumerate(("word " * 30).split())]
    cues = build_cues(words)
    assert len(cues) > 1
    assert all(len(c.lines) <= 2 and all(len(l) <= MAX_LINE for l in c.lines) for c in cues)
    sizes = [len(c.words) for c in cues]
    assert max(sizes) - min(sizes) <= 2
    assert all(a.end <= b.start for a, b in zip(cues, cues[1:]))
