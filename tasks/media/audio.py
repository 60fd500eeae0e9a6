"""Audio in and out: decoding any file FFmpeg reads to mono samples (PyAV), writing 16-bit WAV,
and the narration's word times (words.json), which every voice writes in the same shape."""

from __future__ import annotations

import wave
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from faceless.tasks.runtime import store


def decode_mono(path: Path, rate: int) -> np.ndarray:
    """Every audio frame of the file's first audio stream as mono float32 samples at `rate`."""
    import av

    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    pieces = []
    with av.open(str(path)) as source:
        for frame in source.decode(audio=0):
            frame.pts = None  # let the resampler count samples; some files' timestamps jump
            pieces.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
    pieces.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    return np.concatenate(pieces).astype(np.float32) if pieces else np.zeros(0, np.float32)


def write_wav(path: Path, audio: np.ndarray, rate: int) -> None:
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(pcm.tobytes())


@dataclass
class WordTime:
    sentence: int
    index: int  # position in the story's word list
    text: str
    start: float
    end: float
    estimated: bool = False  # True when spread over its chunk by length, not heard or reported


def write_narration(directory: Path, audio: np.ndarray, rate: int, sentences: list[dict],
                    words: list[WordTime], timed_by: str, **extra) -> float:
    """narration.wav and words.json, the narrate stage's two files; returns the duration.
    `timed_by` says where the word times come from: "voice" (the engine reports them) or
    "estimate" (to be corrected by the align stage's recogniser)."""
    write_wav(directory / "narration.wav", audio, rate)
    duration = len(audio) / rate
    store.write_json(directory / "words.json", {
        "duration": duration,
        "sample_rate": rate,
        "timed_by": timed_by,
        "sentences": sentences,
        **extra,
        "words": [asdict(w) for w in words],
    })
    return duration
