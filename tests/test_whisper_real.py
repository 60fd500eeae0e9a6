"""The faster-whisper alignment path with a real recogniser (Whisper base) on a real voice.

Piper knows when it spoke each word (from its phoneme durations), so its word starts are a
reference clock: the times the align stage hears must land close to them. This is what the
studio profile does with Bark (which has no word times of its own), checked where the truth
is known.
"""

from __future__ import annotations

import json
import statistics
import time

import pytest

from faceless.tasks.stages.align import align
from faceless.tasks.backends import piper
from faceless.tasks.stages.plan import split_sentences
from faceless.tasks.settings import section

pytestmark = pytest.mark.slow  # real Whisper base recognising a real narration

STORY = (
    "Mira found the old radio in her grandfather's attic on a rainy Sunday. "
    "It was covered in dust, and one of its knobs was missing. "
    "She carried it downstairs, cleaned it carefully, and plugged it in. "
    "At first there was only static; then, very faintly, a voice began to count: "
    "one, two, three. "
    "The broadcast said it came from 1952, more than seventy years ago! "
    "Mira held her breath and listened until the batteries died."
)
VOICE = section("narrate", backend="piper", voice="en_US-joe-medium", noise_w_scale=0.0, sentence_pause_s=0.3)


def align_settings(model) -> dict:
    # The studio profile's align section (tasks/profiles/studio.yaml), with Whisper base.
    return section("align", backend="faster-whisper", model=str(model), language="en", beam_size=5,
                   compute_type="default", min_matched=0.5)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def test_heard_word_starts_match_the_voice_own_clock(whisper_base, tmp_path):
    sentences = [{"index": i, "text": s, "words": s.split()} for i, s in enumerate(split_sentences(STORY))]
    assert len(sentences) >= 5 and 60 <= len(STORY.split()) <= 100
    narration = tmp_path / "narrate"
    narration.mkdir()
    piper.narrate(sentences, VOICE, narration)
    voice = json.loads((narration / "words.json").read_text())

    out = tmp_path / "align"
    out.mkdir()
    began = time.monotonic()
    meta = align(narration / "words.json", out, align_settings(whisper_base), narration / "narration.wav")
    seconds = time.monotonic() - began
    aligned = json.loads((out / "words.json").read_text())["words"]

    assert [w["text"] for w in aligned] == [w["text"] for w in voice["words"]]
    # Every word counts, heard or estimated: the subtitles show them all.
    errors_ms = [abs(a["start"] - v["start"]) * 1000 for a, v in zip(aligned, voice["words"])]
    heard_ms = [e for e, a in zip(errors_ms, aligned) if not a["estimated"]]
    median, p90, worst = statistics.median(errors_ms), percentile(errors_ms, 0.9), max(errors_ms)
    signed = statistics.median((a["start"] - v["start"]) * 1000 for a, v in zip(aligned, voice["words"]))
    print(f"\nwhisper base vs piper word starts, {len(errors_ms)} words: median {median:.0f} ms, p90 {p90:.0f} ms, "
          f"max {worst:.0f} ms, median signed {signed:+.0f} ms (heard words only: p90 {percentile(heard_ms, 0.9):.0f} ms); "
          f"aligned {meta['aligned_words']}, estimated {meta['estimated_words']}, "
          f"recognised {meta['heard_words']}; align took {seconds:.1f} s for {voice['duration']:.1f} s of audio")

    assert meta["aligned_words"] + meta["estimated_words"] == len(voice["words"])
    assert meta["aligned_words"] >= 0.85 * len(voice["words"])  # heard, not estimated
    assert p90 < 150, f"p90 start error {p90:.0f} ms"
