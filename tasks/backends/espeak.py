"""eSpeak NG: the offline voice for every language the Piper voice does not speak (about a
hundred), robotic but clear, with word times from the voice itself.

The library and its language data come from the package index (`espeakng-loader`, already
installed for Kokoro's G2P). It is driven through ctypes in synchronous mode: espeak_Synth
calls back with the audio and an event list, and each word's espeakEVENT_WORD carries its
character position in the text and the sample where its sound starts. A word ends where the
next word (or the clause's end) starts, less the silence before it. No recogniser involved.

The library keeps one voice and one callback per process, so every use goes through one lock.
Kokoro's G2P loads its own copy of the library (phonemizer copies it to a temporary folder),
so the two never share state.
"""

from __future__ import annotations

import ctypes
import functools
import threading
from pathlib import Path
from typing import Literal

import numpy as np

from faceless.tasks.backends.voice_tables import ESPEAK_RATES, ESPEAK_VOICES, ESPEAK_WORD_GAPS
from faceless.tasks.media.audio import WordTime, write_narration
from faceless.tasks.profile_sections import Section, Voices
from faceless.tasks.text.language import primary

# The backend interface (tasks/backends/base.py).
NAME = "espeak"
STAGE = "narrate"
FAMILY = "espeak"
LABEL = "eSpeak NG"

# eSpeak NG's Japanese reads kana only; the kanji every Japanese story is written with come
# out as the names of characters, not words. It is not offered as a Japanese voice.
NOT_READABLE = {"ja"}
SILENCE = 0.01  # a sample quieter than this (of full scale) is silence at a word's end

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EVENT_LIST_TERMINATED, _EVENT_WORD, _EVENT_END, _EVENT_MSG_TERMINATED = 0, 1, 5, 6
_RATE, _WORDGAP = 1, 7  # espeakRATE (words a minute), espeakWORDGAP (units of 10 ms)
_LOCK = threading.Lock()


class EspeakError(RuntimeError):
    """The library failed, or has no voice for a language."""


class _Event(ctypes.Structure):
    """espeak_EVENT (speak_lib.h)."""
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", ctypes.c_char * 8)]


class _Voice(ctypes.Structure):
    """espeak_VOICE (speak_lib.h)."""
    _fields_ = [("name", ctypes.c_char_p), ("languages", ctypes.c_void_p), ("identifier", ctypes.c_char_p),
                ("gender", ctypes.c_ubyte), ("age", ctypes.c_ubyte), ("variant", ctypes.c_ubyte),
                ("xx1", ctypes.c_ubyte), ("score", ctypes.c_int), ("spare", ctypes.c_void_p)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


class _Library:
    """libespeak-ng, initialised once, with the callback collecting into `self.audio`/`events`."""

    def __init__(self) -> None:
        import espeakng_loader

        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
        self.rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0,
                                               espeakng_loader.get_data_path().encode(), _INITIALIZE_DONT_EXIT)
        if self.rate <= 0:
            raise EspeakError(f"libespeak-ng did not start (espeak_Initialize returned {self.rate})")
        self.audio: list[np.ndarray] = []
        self.events: list[tuple[int, int, int]] = []  # (type, text position, sample)
        self._callback = _CALLBACK(self._collect)  # kept: ctypes must not free it
        self.lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, count, events) -> int:
        if count > 0:
            self.audio.append(np.ctypeslib.as_array(wav, shape=(count,)).astype(np.float32) / 32768.0)
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            event = events[i]
            self.events.append((event.type, event.text_position, event.sample))
            i += 1
        return 0

    def languages(self) -> dict[str, str]:
        """language -> voice identifier, from the installed data."""
        found: dict[str, str] = {}
        voices = self.lib.espeak_ListVoices(None)
        i = 0
        while voices[i]:
            voice = voices[i].contents
            # A list of (priority byte, NUL-terminated name), ended by a zero priority.
            address = voice.languages
            while ctypes.string_at(address, 1) != b"\0":
                name = ctypes.string_at(address + 1)
                found.setdefault(name.decode("ascii", "replace"), voice.identifier.decode())
                address += len(name) + 2
            i += 1
        return found

    def synthesize(self, voice: str, text: str, words_per_minute: int,
                   word_gap_ms: int = 0) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise EspeakError(f"eSpeak NG has no voice {voice!r}")
        self.lib.espeak_SetParameter(_RATE, int(words_per_minute), 0)
        self.lib.espeak_SetParameter(_WORDGAP, round(word_gap_ms / 10), 0)
        self.audio, self.events = [], []
        data = text.encode("utf-8")
        status = self.lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if status != 0:
            raise EspeakError(f"espeak_Synth failed ({status}) on {text[:40]!r}")
        audio = np.concatenate(self.audio) if self.audio else np.zeros(0, dtype=np.float32)
        return audio, self.events


@functools.lru_cache(maxsize=1)
def _library() -> _Library:
    return _Library()


@functools.lru_cache(maxsize=1)
def languages() -> tuple[str, ...]:
    """The languages eSpeak NG speaks here (BCP 47 as eSpeak writes them, e.g. `pt-br`),
    less those it cannot read in their usual script (NOT_READABLE)."""
    with _LOCK:
        found = _library().languages()
    return tuple(sorted(tag for tag in found if primary(tag) not in NOT_READABLE and not tag.startswith("mb-")))


def voice_for(language: str) -> str | None:
    """eSpeak NG's voice name for a BCP 47 tag: the tag itself (`pt-BR` -> `pt-br`), else its
    language alone (`de-AT` -> `de`); None when eSpeak NG does not speak it."""
    spoken = set(languages())
    for candidate in (language.lower(), primary(language)):
        if candidate in spoken:
            return candidate
    return None


def sample_rate() -> int:
    with _LOCK:
        return _library().rate


def word_spans(words: list[str], events: list[tuple[int, int, int]], audio: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) sample of each of `words` (joined by single spaces, as they were spoken).

    A word starts at the first WORD event inside its characters (eSpeak may say "1984" as
    three words: the first counts); it ends where the next word or clause starts, pulled back
    over the silence before that. A word with no event (a lone dash) takes no time, at the
    start of the next word.
    """
    offsets, cursor = [], 0
    for word in words:
        offsets.append((cursor, cursor + len(word)))
        cursor += len(word) + 1
    starts: list[int | None] = [None] * len(words)
    boundaries: list[int] = []  # where a clause ends or a story word starts
    for kind, position, sample in events:
        if kind in (_EVENT_END, _EVENT_MSG_TERMINATED):
            boundaries.append(sample)
        if kind != _EVENT_WORD:
            continue
        index = position - 1  # eSpeak counts characters from 1
        for i, (begin, finish) in enumerate(offsets):
            if begin <= index < finish:
                if starts[i] is None:  # later events inside a word ("984" of "1984") are the same word
                    starts[i] = sample
                    boundaries.append(sample)
                break
    boundaries.append(len(audio))
    boundaries = sorted(set(boundaries))
    spans: list[tuple[int, int]] = []
    for i, start in enumerate(starts):
        floor = spans[-1][1] if spans else 0
        if start is None:
            following = next((s for s in starts[i + 1:] if s is not None), len(audio))
            spans.append((max(floor, following), max(floor, following)))
            continue
        start = max(start, floor)
        end = next((b for b in boundaries if b > start), len(audio))
        spans.append((start, max(start + 1, _trim_silence(audio, start, end))))
    return spans


def _trim_silence(audio: np.ndarray, start: int, end: int) -> int:
    loud = np.flatnonzero(np.abs(audio[start:end]) > SILENCE)
    return start + int(loud[-1]) + 1 if loud.size else end


def narrate(sentences: list[dict], settings: dict, directory: Path) -> dict:
    """Write narration.wav and words.json into `directory`, as the other voices do."""
    voice = settings["voice"]
    with _LOCK:
        library = _library()
        rate = library.rate
        pause = np.zeros(int(settings["sentence_pause_s"] * rate), dtype=np.float32)
        pieces: list[np.ndarray] = []
        words: list[WordTime] = []
        spans: list[dict] = []
        cursor = word_index = 0
        for n, sentence in enumerate(sentences):
            if n > 0:
                pieces.append(pause)
                cursor += len(pause)
            audio, events = library.synthesize(voice, " ".join(sentence["words"]), settings["words_per_minute"],
                                               settings.get("word_gap_ms", 0))
            for text, (start, end) in zip(sentence["words"], word_spans(sentence["words"], events, audio)):
                words.append(WordTime(sentence["index"], word_index, text, (cursor + start) / rate, (cursor + end) / rate))
                word_index += 1
            spans.append({"index": sentence["index"], "start": cursor / rate, "end": (cursor + len(audio)) / rate})
            pieces.append(audio)
            cursor += len(audio)
    audio = np.concatenate(pieces) if pieces else np.zeros(rate, dtype=np.float32)
    duration = write_narration(Path(directory), audio, rate, spans, words, timed_by="voice")
    return {"backend": "espeak", "voice": f"eSpeak NG {voice}", "language": settings.get("language"),
            "duration": duration, "words": len(words)}

# -- the profile's section (tasks/profile_schema.py builds the stage's union from the registry) --

class EspeakNarrate(Section):
    """eSpeak NG: about a hundred languages, robotic, word times from its own word events
    (tasks/backends/espeak.py). The fallback voice of the other backends' tables."""
    backend: Literal["espeak"]
    voice: str | None = None  # an eSpeak NG voice (es, pt-br, ...) for every language
    voices: Voices = ESPEAK_VOICES
    # eSpeak's own 175 is hurried: at 120 Whisper base heard 94 % of a Spanish story, not 50 %.
    words_per_minute: int = 120
    # The pace by language where 120 is not the best (German: 100), words a minute.
    rates_wpm: dict[str, int] = ESPEAK_RATES
    # A pause between words (ms), by language: without one, Whisper base heard eSpeak's German
    # as English (its words run together); with 80 ms, at 100 words a minute, it heard about 90 % of them.
    word_gaps_ms: dict[str, int] = ESPEAK_WORD_GAPS
    sentence_pause_s: float = 0.3


SETTINGS = EspeakNarrate
