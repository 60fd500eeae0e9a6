"""Word times heard by faster-whisper, mapped onto the story's own words.

The recogniser's words are only a clock: subtitles keep the story's spelling and punctuation.
Story words and heard words are compared in a normal form (lower case, no punctuation,
numbers spelled out, so "40" meets "forty" and "Hello," meets "hello"), matched with a
sequence diff that tolerates inserted and dropped words, and each story word takes the time
of the heard words it matched. Words between matches get the time between their matched
neighbours. A sentence where too little was matched (mumbled, garbled, a random model) keeps
the narration's own estimate for all its words. Counts of aligned and estimated words go to
the manifest.

Whisper's word times come from cross-attention (dynamic time warping over 20 ms frames), and
where speech runs on, the boundary between two words comes out early: measured against Piper's
own phoneme clock (tests/test_whisper_real.py, Whisper base), word starts were a median 88-96 ms
early over three narrations at two speaking rates, while words after a pause started on time. So `settle` moves every boundary between running words, and every word
end, `boundary_lag_s` later (0.1 s by default). Whisper also lets a word swallow the pause
before it; the audio shows the pause, and the word starts after it.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from faceless.tasks import models
from faceless.tasks.profile_sections import Section


# The backend interface (tasks/backends/base.py).
NAME = "faster-whisper"
STAGE = "align"
FAMILY = "whisper"
LABEL = "faster-whisper"
MODELS = {"model": "ctranslate2"}  # its model setting: the kind of folder it is


@dataclass
class Heard:
    """One recognised word (faster-whisper's Word, without what we do not use)."""
    text: str
    start: float
    end: float


_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
         "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = [(10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred")]
_CURRENCY = {"$": "dollars", "£": "pounds", "€": "euros"}


def number_words(n: int) -> list[str]:
    """An integer in English words, e.g. 1984 -> one thousand nine hundred eighty four."""
    if n < 20:
        return [_ONES[n]]
    if n < 100:
        return [_TENS[n // 10]] + (number_words(n % 10) if n % 10 else [])
    for value, name in _SCALES:
        if n >= value:
            rest = n % value
            return number_words(n // value) + [name] + (number_words(rest) if rest else [])
    return [str(n)]


def normal_form(word: str) -> list[str]:
    """The comparable pieces of one written or heard word (possibly none, e.g. a dash)."""
    text = unicodedata.normalize("NFKC", word).lower()
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)  # 1,000 -> 1000
    # Whisper writes "300 dollars" as "$300": the sign is a spoken word after the number.
    text = re.sub(r"([$£€])(\d+(?:\.\d+)?)", lambda m: f"{m[2]} {_CURRENCY[m[1]]}", text)
    text = text.replace("%", " percent ").replace("&", " and ")
    text = re.sub(r"(?<=\d)\.(?=\d)", " point ", text)
    pieces = []
    for token in re.findall(r"\w+", text):
        if token.isdigit() and len(token) <= 12:
            pieces.extend(number_words(int(token)))
        else:
            pieces.append(token.replace("_", ""))
    return [p for p in pieces if p]


def match_words(story_words: list[str], heard: list[Heard]) -> list[tuple[float, float] | None]:
    """For each story word, the time span of the heard words it matched, or None."""
    story_seq, story_owner = [], []
    for i, word in enumerate(story_words):
        for piece in normal_form(word):
            story_seq.append(piece)
            story_owner.append(i)
    heard_seq, heard_owner = [], []
    for j, word in enumerate(heard):
        for piece in normal_form(word.text):
            heard_seq.append(piece)
            heard_owner.append(j)
    spans: list[tuple[float, float] | None] = [None] * len(story_words)
    matcher = difflib.SequenceMatcher(None, story_seq, heard_seq, autojunk=False)
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            i, word = story_owner[block.a + k], heard[heard_owner[block.b + k]]
            current = spans[i]
            spans[i] = (word.start, word.end) if current is None else (min(current[0], word.start), max(current[1], word.end))
    return spans


def fill_between(spans: list[tuple[float, float] | None], begin: float, finish: float) -> list[tuple[float, float]]:
    """Unmatched words share the time between their matched neighbours; all times are
    clamped to [begin, finish] and made monotonic (no word starts before the last ended)."""
    filled: list[tuple[float, float]] = []
    i = 0
    while i < len(spans):
        floor = filled[-1][1] if filled else begin
        if spans[i] is not None:
            start = min(max(spans[i][0], floor), finish)
            filled.append((start, min(max(start, spans[i][1]), finish)))
            i += 1
            continue
        j = i
        while j < len(spans) and spans[j] is None:
            j += 1
        right = min(max(floor, spans[j][0] if j < len(spans) else finish), finish)
        step = (right - floor) / (j - i)
        filled.extend((floor + k * step, floor + (k + 1) * step) for k in range(j - i))
        i = j
    return filled


def _sentence_of(word: Heard, sentences: list[dict]) -> int | None:
    """The sentence whose audio holds the heard word's middle (or the nearest one)."""
    middle = (word.start + word.end) / 2
    best, distance = None, float("inf")
    for position, span in enumerate(sentences):
        gap = 0.0 if span["start"] <= middle <= span["end"] else min(abs(middle - span["start"]), abs(middle - span["end"]))
        if gap < distance:
            best, distance = position, gap
    return best


def fit_words(timing: dict, heard: list[Heard], min_matched: float = 0.5) -> tuple[list[dict], dict]:
    """The narration's words with heard times where the sentence matched well enough.
    Returns (words, counts) with counts of aligned (heard) and estimated words."""
    sentences = timing["sentences"]
    by_sentence: dict[int, list[Heard]] = {}
    for word in heard:
        position = _sentence_of(word, sentences)
        if position is not None:
            by_sentence.setdefault(position, []).append(word)
    words_of: dict[int, list[dict]] = {}
    for word in timing["words"]:
        words_of.setdefault(word["sentence"], []).append(word)

    out: list[dict] = []
    aligned = estimated = fallback_sentences = 0
    for position, span in enumerate(sentences):
        own = words_of.get(span["index"], [])
        spans = match_words([w["text"] for w in own], by_sentence.get(position, []))
        matched = sum(s is not None for s in spans)
        if own and matched / len(own) >= min_matched:
            times = fill_between(spans, span["start"], span["end"])
            for word, (start, end), hit in zip(own, times, spans):
                out.append({**word, "start": start, "end": end, "estimated": hit is None})
            aligned += matched
            estimated += len(own) - matched
        else:  # the recogniser did not hear this sentence well: keep the narration's estimate
            out.extend({**word, "estimated": True} for word in own)
            estimated += len(own)
            fallback_sentences += bool(own)
    return out, {"aligned_words": aligned, "estimated_words": estimated, "estimated_sentences": fallback_sentences}


def load_cached(spec: str, compute_type: str = "default"):
    """A faster-whisper model, loaded once per process, on its device."""
    return models.registry.load_once(FAMILY, (spec, compute_type), lambda: _load(spec, compute_type))


def _load(spec: str, compute_type: str):
    from faster_whisper import WhisperModel

    device, _ = models.device_and_dtype()
    if compute_type == "default":  # fp16 on a GPU, fp32 on a CPU (int8 would change the times)
        compute_type = "float16" if device == "cuda" else "float32"
    return WhisperModel(str(models.resolve(spec, "ctranslate2")), device=device, compute_type=compute_type,
                        local_files_only=True)


def recognise(wav: Path, settings: dict) -> list[Heard]:
    """Every word faster-whisper hears in the narration, with its start and end."""
    model = load_cached(settings["model"], settings["compute_type"])
    temperature = settings["temperature"]
    with models.MODEL_LOCK:
        segments, _ = model.transcribe(
            str(wav), language=settings["language"], word_timestamps=True,
            beam_size=settings["beam_size"], temperature=temperature,
            condition_on_previous_text=False,  # a misheard sentence must not derail the next
            max_new_tokens=settings["max_new_tokens"], vad_filter=False,
        )
        heard = [Heard(w.word.strip(), float(w.start), float(w.end))
                 for segment in segments for w in (segment.words or []) if w.word.strip()]
    return settle(heard, wav, settings["boundary_lag_s"])


JOINED_S = 0.02  # a word starting this close to the previous one's end runs on from it
FRAME_S = 0.01
SILENCE_DB = 35.0  # this far below the narration's loud frames is silence
PAUSE_S = 0.15  # longer than a stop consonant's closure: a pause between words


def frame_levels(wav: Path) -> np.ndarray:
    """The narration's loudness in dB, one value per 10 ms frame."""
    from faster_whisper import decode_audio

    audio = decode_audio(str(wav), sampling_rate=16000)
    hop = int(16000 * FRAME_S)
    frames = audio[: len(audio) // hop * hop].reshape(-1, hop)
    return 20 * np.log10(np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1)) + 1e-9)


def settle(heard: list[Heard], wav: Path, lag: float) -> list[Heard]:
    """Heard words with Whisper's early boundaries moved `lag` later, and each start moved
    past silence: the silence it starts in, or a pause inside its span."""
    if not heard:
        return heard
    levels = frame_levels(wav)
    silent = levels < np.percentile(levels, 95) - SILENCE_DB
    starts = [w.start + lag if k and w.start - heard[k - 1].end < JOINED_S else w.start
              for k, w in enumerate(heard)]
    out = []
    for k, (word, start) in enumerate(zip(heard, starts)):
        end = word.end + lag
        if k + 1 < len(heard):
            end = min(end, max(starts[k + 1], word.end))  # never into the next word
        start = _after_silence(silent, start, end)
        out.append(Heard(word.text, start, max(start, end)))
    return out


def _after_silence(silent: np.ndarray, start: float, end: float) -> float:
    """Where the word's sound begins: past silence at its start and past any pause (a stop
    consonant's closure is shorter) inside [start, end)."""
    first, last = int(start / FRAME_S), min(len(silent), int(end / FRAME_S))
    frame, run = first, 0
    while frame < last and silent[frame]:  # starts in silence: move to the sound
        frame += 1
    begin = frame
    for i in range(frame, last):  # a pause inside the span: the word is after it
        run = run + 1 if silent[i] else 0
        if run * FRAME_S >= PAUSE_S:
            begin = i + 1
            while begin < last and silent[begin]:
                begin += 1
    return start if begin == first or begin >= last else begin * FRAME_S

# -- the profile's section (tasks/profile_schema.py builds the stage's union from the registry) --

class WhisperAlign(Section):
    backend: Literal["faster-whisper"]
    model: str = "hf:Systran/faster-whisper-large-v3"
    language: str | None = None  # None: the story's language (front matter or detected)
    beam_size: int = 5
    temperature: float | list[float] = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]  # faster-whisper's fallback ladder
    max_new_tokens: int | None = None
    compute_type: str = "default"  # float16 on a GPU, float32 on a CPU
    min_matched: float = 0.5  # a sentence with fewer of its words heard keeps estimated times
    boundary_lag_s: float = 0.1  # Whisper places boundaries between running words early (measured, base)


SETTINGS = WhisperAlign


# -- memory facts (tasks/runtime/memory_plan.py) -------------------------------------------------

def activations(settings: dict) -> dict[str, float]:
    """Activation peak (bytes) of the one-piece model at work."""
    from faceless.tasks.runtime.memory_plan import MIB

    return {"model": 1024 * MIB}  # large-v3, 30 s window, beam 5, fp16 in CTranslate2


def components() -> dict[str, tuple]:
    """For benchmarks/memory_table.py: {component: (module at its published size on the meta
    device, bytes per parameter as the loader puts it on a GPU, role)}. large-v3's
    sizes in fp16, one piece (CTranslate2 allocates its own memory)."""
    import torch
    from transformers import WhisperForConditionalGeneration

    from faceless.tasks.models.tiny_voice import whisper_config

    with torch.device("meta"):
        return {"model": (WhisperForConditionalGeneration(whisper_config("large-v3")[0]), 2, "model")}


# -- the tiny twin (tasks/models/tiny.py: `tiny:whisper` in a profile) -----------------------------

def _build_tiny(directory) -> None:
    from faceless.tasks.models.tiny_voice import build_tiny_whisper
    from faceless.tasks.models.registry import quiet_libraries

    quiet_libraries()
    build_tiny_whisper(directory)


TINY_MODELS = {"whisper": (_build_tiny, "model.bin", 2)}  # 2: as when tiny.py kept it
