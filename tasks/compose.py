"""Compose: scene clips + narration + captions -> the publishable MP4, with PyAV alone.

H.264 yuv420p at a constant frame rate, AAC audio, a soft mov_text subtitle track, captions
burned in with the spoken word highlighted, and the index moved to the front (+faststart)
so the video starts playing before it has fully downloaded.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
from prefect import task

from tasks import loudness, store
from tasks.caching import ArtifactPolicy, run_stage
from tasks.captions import CaptionRenderer, blend, phrases

STAGE_VERSION = 2  # 2: loudness-normalised audio

# mov_text needs an ASS-style header on the stream; the muxer turns it into a tx3g description.
_ASS_HEADER = (
    "[Script Info]\nScriptType: v4.00+\nPlayResX: {w}\nPlayResY: {h}\n\n"
    "[V4+ Styles]\nFormat: Name, Fontname, Fontsize, PrimaryColour, BackColour, Bold, Italic, Alignment\n"
    "Style: Default,Sans,{size},&H00FFFFFF,&H80000000,0,0,2\n\n"
    "[Events]\nFormat: Layer, Start, End, Style, Text\n"
)


def frame_boundaries(scene_starts: list[float], duration: float, fps: int) -> list[int]:
    """Frame index where each scene begins, plus the total: scenes tile the narration exactly."""
    total = max(1, round(duration * fps))
    bounds = [0] + [min(total, max(0, round(start * fps))) for start in scene_starts[1:]] + [total]
    for i in range(1, len(bounds)):  # a scene of no frames still keeps order
        bounds[i] = max(bounds[i], bounds[i - 1])
    return bounds


def caption_schedule(phrase_list, fps: int, total: int) -> list[tuple[int, int] | None]:
    """For each output frame, (phrase, word being spoken) to show, or None between phrases."""
    schedule: list[tuple[int, int] | None] = [None] * total
    for p_index, phrase in enumerate(phrase_list):
        first, last = max(0, round(phrase.start * fps)), min(total, round(phrase.end * fps))
        starts = [w["start"] for w in phrase.words]
        for f in range(first, last):
            t = f / fps
            spoken = max((i for i, s in enumerate(starts) if s <= t), default=0)
            schedule[f] = (p_index, spoken)
    return schedule


def compose(narration_wav: Path, timing_file: Path, clips: list[Path], settings: dict, directory: Path) -> dict:
    import av

    timing = store.read_json(timing_file)
    width, height, fps = settings["width"], settings["height"], settings["fps"]
    total = max(1, round(timing["duration"] * fps))
    style = settings["captions"]
    renderer = CaptionRenderer(style, width, height)
    phrase_list = phrases(timing["words"], int(style.get("max_words", 4)))
    schedule = caption_schedule(phrase_list, fps, total)
    overlays: dict[tuple[int, int], tuple] = {}
    target = settings.get("loudness", {})
    samples, loudness_report = loudness.normalise(
        read_audio(narration_wav, settings["audio_rate"]), settings["audio_rate"],
        target.get("target_lufs", -14.0), target.get("true_peak_db", -1.0))

    output = directory / "video.mp4"
    with av.open(str(output), "w", options={"movflags": "+faststart"}) as container:
        video = container.add_stream(settings["video_codec"], rate=Fraction(fps))
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"preset": settings["preset"], "crf": str(settings["crf"])}
        # A keyframe every two seconds lets players seek quickly in a short.
        video.codec_context.gop_size = 2 * fps

        audio = container.add_stream("aac", rate=settings["audio_rate"])
        audio.bit_rate = _bitrate(settings["audio_bitrate"])
        audio.layout = "mono"

        subtitles = container.add_stream("mov_text")
        subtitles.codec_context.subtitle_header = _ASS_HEADER.format(w=width, h=height, size=style["size"]).encode()
        subtitles.time_base = Fraction(1, 1000)

        written = 0
        for clip in clips:
            with av.open(str(clip)) as source:
                for frame in source.decode(video=0):
                    if written >= total:
                        break
                    pixels = frame.to_ndarray(format="rgb24")
                    if pixels.shape[:2] != (height, width):
                        raise ValueError(f"clip {clip.name} is {pixels.shape[1]}x{pixels.shape[0]}, expected {width}x{height}")
                    key = schedule[written]
                    if key is not None:
                        if key not in overlays:
                            texts = [w["text"] for w in phrase_list[key[0]].words]
                            overlays[key] = renderer.overlay(texts, key[1])
                        overlay, left, top = overlays[key]
                        blend(pixels, overlay, left, top)
                    out = av.VideoFrame.from_ndarray(pixels, format="rgb24")
                    out.pts = written
                    out.time_base = Fraction(1, fps)
                    container.mux(video.encode(out))
                    written += 1
        if written != total:
            raise ValueError(f"scene clips hold {written} frames; the narration needs {total}")
        container.mux(video.encode())

        _mux_audio(container, audio, samples, settings["audio_rate"])
        for cue in timing["cues"]:
            # The encoder takes an ASS dialogue line; \N is its line break.
            text = "0,0,Default,,0,0,0,," + "\\N".join(cue["lines"])
            start, end = round(cue["start"] * 1000), round(cue["end"] * 1000)
            packet = subtitles.codec_context.encode_subtitle(
                av.subtitles.subtitle.SubtitleSet.create(text=text.encode("utf-8"), start=0, end=end - start, pts=start)
            )
            packet.stream = subtitles
            packet.pts = packet.dts = start
            packet.duration = end - start
            packet.time_base = subtitles.time_base
            container.mux(packet)

    return {"frames": written, "fps": fps, "size": [width, height], "duration": written / fps,
            "caption_overlays": len(overlays), "loudness": loudness_report}


def read_audio(wav: Path, rate: int) -> np.ndarray:
    """The narration as mono float samples at the output rate."""
    import av

    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    pieces = []
    with av.open(str(wav)) as source:
        for frame in source.decode(audio=0):
            frame.pts = None
            pieces.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
    pieces.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    return np.concatenate(pieces).astype(np.float32) if pieces else np.zeros(0, np.float32)


def _mux_audio(container, stream, samples: np.ndarray, rate: int) -> None:
    import av

    for start in range(0, len(samples), 4096):
        frame = av.AudioFrame.from_ndarray(samples[None, start:start + 4096], format="flt", layout="mono")
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = Fraction(1, rate)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)


def _bitrate(text: str | int) -> int:
    text = str(text).lower()
    return int(float(text[:-1]) * 1000) if text.endswith("k") else int(text)


@task(name="compose", cache_policy=ArtifactPolicy(stage="compose", version=STAGE_VERSION))
def compose_task(narration: dict, alignment: dict, clips: list[dict], settings: dict) -> dict:
    return run_stage("compose", lambda directory: compose(
        store.path_of(narration, "narration.wav"), store.path_of(alignment, "words.json"),
        [store.path_of(clip, "clip.mp4") for clip in clips], settings, directory))
