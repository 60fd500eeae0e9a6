"""Background music: a file of the user's, looped under the narration and ducked while a
voice speaks.

The music is set relative to the narration's loudness (`level_db` under it between
sentences) rather than to an absolute level, so a loud and a quiet track sit the same way
under the voice; the mix is then normalised as a whole by compose. Ducking follows the
voice's own envelope: the gain drops by `duck_db` over `attack_s` just before speech and
comes back over `release_s` after it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from faceless.tasks.media import loudness
from faceless.tasks.media.audio import decode_mono

_WINDOW_S = 0.02        # envelope resolution
_VOICE_GATE_DB = -35.0  # a window this far under the voice's loudest is a pause
_FADE_S = (0.5, 1.5)    # fade the music in at the start and out at the end


class MusicError(ValueError):
    """The music file cannot be used."""


def read_music(path: Path, rate: int) -> np.ndarray:
    """Any audio file FFmpeg decodes, as mono float samples at `rate`."""
    import av

    try:
        with av.open(str(path)) as source:
            if not source.streams.audio:
                raise MusicError(f"music file {path} has no audio stream")
        samples = decode_mono(path, rate)
    except av.FFmpegError as error:
        raise MusicError(f"music file {path} is not audio FFmpeg can read ({error})") from None
    if samples.size < rate // 10 or not np.any(samples):
        raise MusicError(f"music file {path} is silent or shorter than 0.1 s")
    return samples


def check_music(path: str | Path) -> Path:
    """The music file, refused up front if it is missing or not decodable."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MusicError(f"music file not found: {path}")
    read_music(path, 8000)  # a cheap full decode at a low rate
    return path


def ducking_gain(voice: np.ndarray, rate: int, duck_db: float, attack_s: float, release_s: float) -> np.ndarray:
    """Per-sample gain (linear) for the music: 1 in pauses, duck_db down under speech, with
    the drop starting attack_s before each word so the voice never fights the music."""
    window = max(1, round(_WINDOW_S * rate))
    count = math.ceil(voice.size / window)
    padded = np.zeros(count * window, np.float32)
    padded[:voice.size] = voice
    rms = np.sqrt(np.mean(padded.reshape(count, window) ** 2, axis=1) + 1e-12)
    level_db = 20 * np.log10(rms)
    speaking = level_db > level_db.max() + _VOICE_GATE_DB
    # Look ahead: a window counts as speech if speech starts within attack_s after it.
    ahead = max(1, round(attack_s / _WINDOW_S))
    soon = np.convolve(speaking[::-1].astype(np.float32), np.ones(ahead + 1), mode="full")[:count][::-1] > 0
    target = np.where(soon, duck_db, 0.0)
    # Smooth the way back up (release) so the music does not pump between words.
    smoothed = np.empty(count)
    back = math.exp(-_WINDOW_S / max(release_s, 1e-3))
    down = math.exp(-_WINDOW_S / max(attack_s, 1e-3))
    current = 0.0
    for i, goal in enumerate(target):
        coefficient = down if goal < current else back
        current = goal + (current - goal) * coefficient
        smoothed[i] = current
    centres = (np.arange(count) + 0.5) * window
    gain_db = np.interp(np.arange(voice.size), centres, smoothed)
    return (10 ** (gain_db / 20)).astype(np.float32)


def mix(voice: np.ndarray, music: np.ndarray, rate: int, settings: dict) -> tuple[np.ndarray, dict]:
    """The narration with the music looped under it at the profile's level, ducked."""
    loops = math.ceil(voice.size / music.size)
    bed = np.tile(music, loops)[:voice.size].astype(np.float32)
    fade_in, fade_out = (min(round(s * rate), voice.size // 2) for s in _FADE_S)
    bed[:fade_in] *= np.linspace(0, 1, fade_in, dtype=np.float32)
    bed[voice.size - fade_out:] *= np.linspace(1, 0, fade_out, dtype=np.float32)
    voice_lufs, _ = loudness.measure(voice, rate)
    music_lufs, _ = loudness.measure(music, rate)
    level_db = settings["level_db"]
    gain_db = (voice_lufs + level_db) - music_lufs
    duck_db = settings["duck_db"]
    gain = ducking_gain(voice, rate, duck_db, settings["attack_s"], settings["release_s"])
    mixed = voice + bed * (10 ** (gain_db / 20)) * gain
    return mixed.astype(np.float32), {
        "level_db": level_db, "duck_db": duck_db, "music_lufs": round(music_lufs, 2),
        "gain_db": round(gain_db, 2), "loops": loops,
    }
