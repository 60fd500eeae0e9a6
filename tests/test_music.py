"""Background music: looped under the narration at a level relative to it, ducked while the
voice speaks, and refused up front when the file is not audio."""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import write_music
from faceless.tasks.media import loudness
from faceless.tasks.media.music import MusicError, check_music, ducking_gain, mix, read_music

RATE = 48000
SETTINGS = {"level_db": -12.0, "duck_db": -10.0, "attack_s": 0.1, "release_s": 0.5}


def speech_and_pauses(seconds: float = 12.0) -> np.ndarray:
    """A stand-in voice: 2 s of modulated tone, then 2 s of silence, repeated."""
    t = np.arange(int(seconds * RATE)) / RATE
    voice = 0.3 * np.sin(2 * np.pi * 180 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    voice[(t % 4) >= 2] = 0
    return voice.astype(np.float32)


def level_db(samples: np.ndarray) -> float:
    return 20 * math.log10(float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))))


def test_music_dips_by_duck_db_under_speech_and_sits_at_its_level_in_pauses():
    voice = speech_and_pauses()
    rng = np.random.default_rng(0)
    music = (0.05 * rng.standard_normal(5 * RATE)).astype(np.float32)  # shorter than the voice: loops
    mixed, report = mix(voice, music, RATE, SETTINGS)
    assert report["loops"] == 3
    bed = mixed - voice
    # Middles of speech (0.5-1.5 s) and of pauses (2.8-3.8 s, after the release), away from fades.
    speech = np.concatenate([bed[int((4 * k + 0.5) * RATE):int((4 * k + 1.5) * RATE)] for k in (1, 2)])
    pause = np.concatenate([bed[int((4 * k + 2.8) * RATE):int((4 * k + 3.8) * RATE)] for k in (0, 1)])
    assert level_db(speech) - level_db(pause) == pytest.approx(-10.0, abs=1.0)
    # Between sentences the music is level_db under the voice's loudness.
    voice_lufs, _ = loudness.measure(voice, RATE)
    pause_lufs, _ = loudness.measure(np.tile(pause, 2), RATE)
    assert pause_lufs - voice_lufs == pytest.approx(-12.0, abs=1.5)


def test_the_dip_starts_before_the_voice_and_recovers_after_it():
    voice = speech_and_pauses(8.0)
    gain_db = 20 * np.log10(ducking_gain(voice, RATE, -10.0, attack_s=0.1, release_s=0.5))
    onset = int(4.0 * RATE)  # the voice comes back at 4 s
    assert gain_db[onset] < -6, "not ducked yet when the voice starts"
    assert gain_db[int(3.5 * RATE)] > -1, "ducked too early"
    assert gain_db[int(2.05 * RATE)] < -6 < gain_db[int(3.2 * RATE)], "no smooth release after speech"


def test_music_files_are_decoded_by_ffmpeg_and_bad_ones_refused(tmp_path):
    song = tmp_path / "song.m4a"
    write_music(song, seconds=2.0)
    samples = read_music(check_music(song), RATE)
    assert samples.ndim == 1 and abs(samples.size - 2 * RATE) < 0.05 * RATE
    not_audio = tmp_path / "notes.mp3"
    not_audio.write_text("not audio at all")
    with pytest.raises(MusicError, match="not audio FFmpeg can read"):
        check_music(not_audio)
    with pytest.raises(MusicError, match="music file not found"):
        check_music(tmp_path / "missing.mp3")
