"""Loudness: narration normalised to a streaming target (-14 LUFS integrated, peaks <= -1 dBTP).

Measurement is FFmpeg's own EBU R128 meter (the `ebur128` filter, ITU-R BS.1770) run through
PyAV; the gain is linear (no pumping), and a look-ahead limiter keeps the peaks under the
ceiling. Limiting lowers the loudness a little, so gain and limiter are run again with the
gain corrected until the integrated loudness is on target.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

# The limiter works on sample peaks; true (inter-sample) peaks and AAC's own overshoot sit
# above them, so it aims this far below the true-peak ceiling.
_LIMITER_MARGIN_DB = 1.5
_ROUNDS = 8
_SILENCE_LUFS = -69.0  # the meter reports -70 for silence


def audio_frames(samples: np.ndarray, rate: int, size: int = 4096, channels: int = 1):
    """Mono float samples as PyAV frames, timestamped in samples; with channels=2 the same
    signal on both sides (planar stereo)."""
    import av

    layout, fmt = ("mono", "flt") if channels == 1 else ("stereo", "fltp")
    for start in range(0, len(samples), size):
        piece = np.repeat(samples[None, start:start + size], channels, axis=0)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(piece), format=fmt, layout=layout)
        frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
        yield frame


def filter_audio(samples: np.ndarray, rate: int, chain: list[tuple[str, str]]) -> tuple[np.ndarray, dict]:
    """Run mono float samples through an FFmpeg filter chain; returns the output samples and
    the metadata of the last output frame (where meters such as ebur128 report)."""
    import av
    import av.filter

    graph = av.filter.Graph()
    nodes = [graph.add_abuffer(format="flt", sample_rate=rate, layout="mono", time_base=f"1/{rate}")]
    nodes += [graph.add(name, args) for name, args in chain]
    nodes.append(graph.add("abuffersink"))
    for upstream, downstream in zip(nodes, nodes[1:]):
        upstream.link_to(downstream)
    graph.configure()

    pieces: list[np.ndarray] = []
    metadata: dict = {}

    def drain() -> None:
        nonlocal metadata
        while True:
            try:
                frame = graph.pull()
            except (av.BlockingIOError, av.EOFError):
                return
            pieces.append(frame.to_ndarray().reshape(-1).astype(np.float32))
            if frame.metadata:
                metadata = dict(frame.metadata)

    for frame in audio_frames(samples, rate):
        graph.push(frame)
        drain()
    graph.push(None)
    drain()
    return (np.concatenate(pieces) if pieces else np.zeros(0, np.float32)), metadata


def measure(samples: np.ndarray, rate: int) -> tuple[float, float]:
    """Integrated loudness (LUFS) and true peak (dBTP)."""
    _, metadata = filter_audio(samples, rate, [("ebur128", "metadata=1:peak=true")])
    integrated = float(metadata.get("lavfi.r128.I", "-inf"))
    peak = float(metadata.get("lavfi.r128.true_peak", "0"))
    return integrated, (20 * math.log10(peak) if peak > 0 else -math.inf)


def normalise(samples: np.ndarray, rate: int, target_lufs: float = -14.0, ceiling_db: float = -1.0,
              margin_db: float = _LIMITER_MARGIN_DB) -> tuple[np.ndarray, dict]:
    before, before_peak = measure(samples, rate)
    if not math.isfinite(before) or before <= _SILENCE_LUFS:  # nothing to normalise
        return samples, {"input_lufs": None, "output_lufs": None, "true_peak_db": None}
    limit = 10 ** ((ceiling_db - margin_db) / 20)
    gain_db = target_lufs - before
    for _ in range(_ROUNDS):
        output, _ = filter_audio(samples, rate, [
            ("volume", f"{gain_db:.3f}dB"),
            # level=disabled: no make-up gain; 5 ms look-ahead whose delay is compensated
            # (latency=1), so the words stay on their times; 50 ms release.
            ("alimiter", f"limit={limit:.5f}:attack=5:release=50:level=disabled:latency=1"),
        ])
        loudness, peak = measure(output, rate)
        if abs(loudness - target_lufs) <= 0.3:
            break
        gain_db += target_lufs - loudness
    return output, {
        "input_lufs": round(before, 2), "input_true_peak_db": round(before_peak, 2),
        "gain_db": round(gain_db, 2), "output_lufs": round(loudness, 2), "true_peak_db": round(peak, 2),
        "target_lufs": target_lufs, "ceiling_db": ceiling_db, "limiter_db": round(ceiling_db - margin_db, 2),
    }
