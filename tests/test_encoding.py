"""Per-profile encoding: the x264 settings reach the encoder (read back from the SEI message
x264 writes into the stream), and a bitrate cap holds on content that would exceed it."""

from __future__ import annotations

import re
from fractions import Fraction

import av
import numpy as np

from faceless.tasks.stages.compose import video_options
from faceless.tasks.settings import load_profile

# What the studio profile asks for (the original pipeline's settings).
STUDIO = {"preset": "slower", "crf": 18, "maxrate": "12M", "bufsize": "24M"}


def encode(path, options: dict, frames: int = 48, size=(720, 1280)) -> None:
    rng = np.random.default_rng(1)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(24))
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.options = options
        for i in range(frames):
            # Noise is the worst case for a bitrate cap: uncapped CRF 18 needs far more.
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 24)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def x264_settings(path) -> str:
    data = path.read_bytes()
    return re.search(rb"x264 - core .*? options: ([^\x00]*)", data).group(1).decode()


def video_bits(path) -> int:
    with av.open(str(path)) as container:
        return sum(p.size for p in container.demux(container.streams.video[0]) if p.size) * 8


def test_studio_settings_reach_x264(tmp_path):
    capped = tmp_path / "studio.mp4"
    encode(capped, video_options(STUDIO), frames=4, size=(320, 568))
    settings = x264_settings(capped)
    assert "crf=18.0" in settings and "vbv_maxrate=12000" in settings and "vbv_bufsize=24000" in settings
    assert "subme=9" in settings and "ref=8" in settings, "not the slower preset"  # slower's own choices


def test_a_bitrate_cap_holds_where_crf_alone_would_exceed_it(tmp_path):
    free, capped = tmp_path / "free.mp4", tmp_path / "capped.mp4"
    base = {"preset": "veryfast", "crf": 18, "maxrate": None, "bufsize": None}
    encode(free, video_options(base), size=(320, 568))
    encode(capped, video_options({**base, "maxrate": "2M", "bufsize": "2M"}), size=(320, 568))
    seconds = 48 / 24
    limit = 2e6 * seconds + 2e6  # the cap over the clip, plus one full buffer
    assert video_bits(free) > 3 * limit, "the test content is too easy to show a cap"
    assert video_bits(capped) <= 1.05 * limit


def test_offline_profile_has_no_cap_and_its_preset():
    compose = load_profile("offline")["compose"]
    options = video_options(compose)
    assert options == {"preset": "ultrafast", "crf": "23"}


def test_studio_profile_encodes_with_the_original_pipelines_settings():
    compose = load_profile("studio")["compose"]
    assert video_options(compose) == {"preset": "slower", "crf": "18", "maxrate": "12M", "bufsize": "24M"}
    assert compose["audio_bitrate"] == "320k" and compose["audio_channels"] == 2
