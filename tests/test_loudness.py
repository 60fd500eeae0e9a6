"""Loudness normalisation, measured with FFmpeg's EBU R128 meter."""

from __future__ import annotations

import numpy as np

from faceless.tasks.media.loudness import measure, normalise

RATE = 48000


def speech_like(seconds: float = 8.0, level: float = 0.05) -> np.ndarray:
    """Bursts of a harmonic tone with sharp onsets: quiet on average, peaky like speech."""
    t = np.arange(int(seconds * RATE)) / RATE
    tone = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((180, 360, 540, 1200), 1))
    envelope = (np.sin(2 * np.pi * 2.5 * t) > 0.2).astype(np.float32)
    clicks = np.zeros_like(t)
    clicks[::RATE // 3] = 12.0  # transients far above the average level
    return ((tone * envelope + clicks) * level).astype(np.float32)


def test_quiet_peaky_audio_reaches_the_target_under_the_ceiling():
    samples = speech_like()
    before, _ = measure(samples, RATE)
    assert before < -25
    output, report = normalise(samples, RATE, target_lufs=-14.0, ceiling_db=-1.0)
    loudness, peak = measure(output, RATE)
    assert abs(loudness + 14.0) <= 0.5
    assert peak <= -1.0
    assert report["output_lufs"] == round(loudness, 2)
    assert len(output) == len(samples)


def test_timing_is_kept():
    samples = np.zeros(RATE * 2, np.float32)
    samples[RATE:RATE + 4800] = 0.5 * np.sin(2 * np.pi * 440 * np.arange(4800) / RATE)
    output, _ = normalise(samples, RATE)
    onset = np.argmax(np.abs(output) > 0.01)
    assert abs(onset - RATE) < RATE * 0.002  # within 2 ms: the limiter's look-ahead is compensated


def test_silence_is_left_alone():
    output, report = normalise(np.zeros(RATE, np.float32), RATE)
    assert not output.any() and report["output_lufs"] is None
