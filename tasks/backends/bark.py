"""Bark narration: the story read sentence by sentence in one voice preset, at 24 kHz.

Bark stops after about 14 s of audio (768 semantic tokens), so each sentence is spoken on its
own, and a sentence too long for one generation is cut at clause boundaries (after , ; : or a
dash), or between words when a clause alone is too long. Short silences go between the
pieces of a sentence and longer ones between sentences.

Bark gives no word times. Each word gets an estimate inside the piece of audio that speaks
it (shared out by its length); the align stage replaces the estimates with times heard by a
recogniser where it can.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from faceless.tasks import models

from faceless.tasks.backends.voice_tables import BARK_VOICES
from faceless.tasks.media.audio import WordTime, write_narration
from faceless.tasks.profile_sections import Section, Voices


# The backend interface (tasks/backends/base.py).
NAME = "bark"
STAGE = "narrate"
FAMILY = "bark"
LABEL = "Bark"
MODELS = {"model": "transformers"}  # its model setting: the kind of folder it is

# Where a clause ends: the word carries the punctuation, or is a dash on its own.
_CLAUSE_END = (",", ";", ":", "—", "–", "…", ")")
_DASHES = {"-", "--", "—", "–"}


@dataclass
class Chunk:
    sentence: int
    words: list[str]  # the story's words, in order, exactly as written
    first_word: int   # index of words[0] in the story's word list

    @property
    def text(self) -> str:
        return " ".join(self.words)


def _length(words: list[str]) -> int:
    return len(" ".join(words))


def _even_split(words: list[str], max_chars: int) -> list[list[str]]:
    """Split a run of words with no clause break into the fewest pieces of similar length."""
    for count in range(math.ceil(_length(words) / max_chars), len(words) + 1):
        target = _length(words) / count
        pieces: list[list[str]] = [[]]
        for word in words:
            if pieces[-1] and _length(pieces[-1] + [word]) > target + 1 and len(pieces) < count:
                pieces.append([])
            pieces[-1].append(word)
        if all(_length(p) <= max_chars for p in pieces):
            return pieces
    return [[w] for w in words]  # single words longer than max_chars stay whole


def chunk_words(words: list[str], max_chars: int) -> list[list[str]]:
    """The sentence's words in pieces of at most `max_chars` characters, cut at clause
    boundaries where possible. Concatenated, the pieces are exactly `words`."""
    if _length(words) <= max_chars:
        return [list(words)]
    clauses: list[list[str]] = [[]]
    for word in words:
        if word in _DASHES and clauses[-1]:  # a spaced dash starts a new clause
            clauses.append([])
        clauses[-1].append(word)
        if word.rstrip("\"'”’»").endswith(_CLAUSE_END) and word not in _DASHES:  # 'said,"' ends one too
            clauses.append([])
    clauses = [c for c in clauses if c]
    pieces = [piece for clause in clauses
              for piece in ([clause] if _length(clause) <= max_chars else _even_split(clause, max_chars))]
    # Join neighbouring clauses while they fit: fewer generations, natural phrasing.
    chunks: list[list[str]] = []
    for piece in pieces:
        if chunks and _length(chunks[-1] + piece) <= max_chars:
            chunks[-1] = chunks[-1] + piece
        else:
            chunks.append(list(piece))
    return chunks


def chunk_sentences(sentences: list[dict], max_chars: int) -> list[Chunk]:
    chunks = []
    word_index = 0
    for sentence in sentences:
        for words in chunk_words(sentence["words"], max_chars):
            chunks.append(Chunk(sentence["index"], words, word_index))
            word_index += len(words)
    return chunks


def estimate_word_times(words: list[str], start: float, end: float) -> list[tuple[float, float]]:
    """Times for words spoken between start and end, each given a share by its length
    (plus one for the gap after it): a fair guess when nothing better is known."""
    weights = [len(w) + 1 for w in words]
    total = sum(weights) or 1
    times, cursor = [], start
    for weight in weights:
        step = (end - start) * weight / total
        times.append((cursor, cursor + step))
        cursor += step
    return times


def _chunk_seed(seed: int, text: str) -> int:
    # Seeded by the text itself: an edit elsewhere in the story leaves this sentence's audio
    # (and so its scene's length and clip) unchanged.
    return (int(seed) + zlib.crc32(text.encode("utf-8"))) % (2**31)


def speak(model, processor, text: str, settings: dict, seed: int) -> np.ndarray:
    """One Bark generation: float32 audio at the model's sample rate."""
    import torch

    inputs = processor(text, voice_preset=settings["voice_preset"])
    inputs = {k: (v.to(model.device) if hasattr(v, "to") else v) for k, v in inputs.items()}
    # A temperature left unset (None) is the checkpoint's own generation config.
    options = {f"{stage}_temperature": settings[f"{stage}_temperature"]
               for stage in ("semantic", "coarse", "fine") if settings[f"{stage}_temperature"] is not None}
    if settings["semantic_max_new_tokens"]:
        options["semantic_max_new_tokens"] = settings["semantic_max_new_tokens"]
    torch.manual_seed(_chunk_seed(settings["seed"], text))
    with torch.inference_mode(), models.cpu_threads(model.device, settings["cpu_threads"]):
        audio, lengths = model.generate(**inputs, do_sample=True, return_output_lengths=True, **options)
    samples = audio[0, : int(lengths[0])] if lengths is not None else audio[0]
    return samples.float().cpu().numpy().astype(np.float32)


def load_cached(spec: str):
    """Bark (model, processor), loaded once per process, on its device (one piece: the plan's
    placement is `gpu`)."""
    return models.registry.load_once(FAMILY, (spec,), lambda: _load(spec))


def _load(spec: str):
    from transformers import BarkModel, BarkProcessor

    device, dtype = models.device_and_dtype()
    directory = models.resolve(spec, "transformers")
    model = BarkModel.from_pretrained(str(directory), dtype=dtype).to(device).eval()
    processor = BarkProcessor.from_pretrained(str(directory))
    return model, processor


def narrate_bark(sentences: list[dict], settings: dict, directory: Path) -> dict:
    model, processor = load_cached(settings["model"])
    rate = int(model.generation_config.sample_rate)
    chunks = chunk_sentences(sentences, settings["max_chunk_chars"])
    sentence_pause = np.zeros(int(settings["sentence_pause_s"] * rate), dtype=np.float32)
    clause_pause = np.zeros(int(settings["clause_pause_s"] * rate), dtype=np.float32)

    pieces: list[np.ndarray] = []
    cursor = 0
    words: list[WordTime] = []
    spans: dict[int, dict] = {}
    chunk_rows = []
    with models.MODEL_LOCK:
        for i, chunk in enumerate(chunks):
            if i > 0:
                pause = clause_pause if chunks[i - 1].sentence == chunk.sentence else sentence_pause
                pieces.append(pause)
                cursor += len(pause)
            audio = speak(model, processor, chunk.text, settings, settings["seed"])
            start, end = cursor / rate, (cursor + len(audio)) / rate
            pieces.append(audio)
            cursor += len(audio)
            for offset, (text, (w_start, w_end)) in enumerate(zip(chunk.words, estimate_word_times(chunk.words, start, end))):
                words.append(WordTime(chunk.sentence, chunk.first_word + offset, text, w_start, w_end, estimated=True))
            span = spans.setdefault(chunk.sentence, {"index": chunk.sentence, "start": start, "end": end})
            span["end"] = end
            chunk_rows.append({"sentence": chunk.sentence, "text": chunk.text, "start": start, "end": end})

    audio = np.concatenate(pieces) if pieces else np.zeros(rate, dtype=np.float32)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak > 1.0:  # Bark can overshoot; compose normalises loudness later anyway
        audio = audio / peak
    duration = write_narration(directory, audio, rate, [spans[s["index"]] for s in sentences if s["index"] in spans],
                               words, timed_by="estimate", chunks=chunk_rows)
    return {"backend": "bark", "model": settings["model"], "voice_preset": settings["voice_preset"],
            "duration": duration, "words": len(words), "chunks": len(chunks), "sample_rate": rate}

# -- the profile's section (tasks/profile_schema.py builds the stage's union from the registry) --

class BarkNarrate(Section):
    backend: Literal["bark"]
    model: str = "hf:suno/bark-small"
    voice_preset: str | None = None  # one preset for every language, instead of `voices`
    voices: Voices = BARK_VOICES  # a v2 speaker preset for each of Bark's thirteen languages
    max_chunk_chars: int = 180  # Bark stops after ~14 s: longer sentences are cut at clauses
    clause_pause_s: float = 0.12
    sentence_pause_s: float = 0.35
    # None: the checkpoint's own generation config decides.
    semantic_temperature: float | None = None
    coarse_temperature: float | None = None
    fine_temperature: float | None = None
    semantic_max_new_tokens: int | None = None  # a random-weight model never stops by itself
    seed: int = 0
    cpu_threads: int = 1  # torch threads while generating on a CPU


SETTINGS = BarkNarrate


# -- memory facts (tasks/runtime/memory_plan.py) -------------------------------------------------

def activations(settings: dict) -> dict[str, float]:
    """Activation peak (bytes) of the one-piece model at work."""
    from faceless.tasks.runtime.memory_plan import MIB

    return {"model": 512 * MIB}


def components() -> dict[str, tuple]:
    """For benchmarks/memory_table.py: {component: (module at its published size on the meta
    device, bytes per parameter as the loader puts it on a GPU, role)}. bark-small's
    sizes in fp16, one piece."""
    import torch
    from transformers import BarkModel

    from faceless.tasks.models.tiny_voice import bark_config

    with torch.device("meta"):
        return {"model": (BarkModel(bark_config("small")), 2, "model")}


# -- the tiny twin (tasks/models/tiny.py: `tiny:bark` in a profile) --------------------------------

def _build_tiny(directory) -> None:
    from faceless.tasks.models.tiny_voice import build_tiny_bark
    from faceless.tasks.models.registry import quiet_libraries

    quiet_libraries()
    build_tiny_bark(directory)


TINY_MODELS = {"bark": (_build_tiny, "config.json", 2)}  # 2: as when tiny.py kept it
