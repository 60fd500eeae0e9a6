"""Compose: scene clips + narration + captions -> the publishable MP4, with PyAV alone.

H.264 yuv420p at a constant frame rate, AAC audio, a soft mov_text subtitle track, captions
burned in with the spoken word highlighted, and the index moved to the front (+faststart)
so the video starts playing before it has fully downloaded.
"""

from __future__ import annotations

import concurrent.futures
import io
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
from prefect import task

from faceless.tasks.media import loudness, music

from faceless.tasks.runtime import store
from faceless.tasks.runtime.caching import ArtifactPolicy, run_stage
from faceless.tasks.media.audio import decode_mono
from faceless.tasks.media.captions import CaptionRenderer, YuvOverlay, phrases
from faceless.tasks.runtime.progress import Progress
from faceless.tasks.stages.results import AlignmentResult, ClipResult, MusicResult, NarrationResult, VideoResult

STAGE_VERSION = 7  # 2: loudness; 3: captions clear of the app column; 4: cross-fades; 5: fonts, RTL, music;
# 6: clips as long as their shots, a frame more or less than their place on the timeline; 7: frames and
# captions in yuv420p, smaller clips scaled up
MAX_HELD_FRAMES = 2

# mov_text needs an ASS-style header on the stream; the muxer turns it into a tx3g description.
_ASS_HEADER = (
    "[Script Info]\nScriptType: v4.00+\nPlayResX: {w}\nPlayResY: {h}\n\n"
    "[V4+ Styles]\nFormat: Name, Fontname, Fontsize, PrimaryColour, BackColour, Bold, Italic, Alignment\n"
    "Style: Default,Sans,{size},&H00FFFFFF,&H80000000,0,0,2\n\n"
    "[Events]\nFormat: Layer, Start, End, Style, Text\n"
)


def timeline_frames(clips: list[Path], bounds: list[int], handles: list[int], size: tuple[int, int],
                    pixel_format: str = "rgb24"):
    """The output frames in order, as PyAV's to_ndarray gives them in `pixel_format` at `size`:
    scene k's clip covers output frames [bounds[k] - handles[k], bounds[k+1] + handles[k+1]); where two clips cover a frame
    (a fade), they are mixed with a linear ramp. A clip made smaller than the output
    (`animate.clip_scale`) is scaled up as it is decoded."""
    import av

    opened: dict[int, tuple] = {}
    last: dict[int, tuple[np.ndarray, int]] = {}  # a clip's last frame, and how often it was held

    def pull(k: int) -> np.ndarray:
        if k not in opened:
            container = av.open(str(clips[k]))
            container.streams.video[0].thread_type = "AUTO"  # decode on every core
            opened[k] = (container, container.decode(video=0))
        try:
            frame = next(opened[k][1]).to_ndarray(format=pixel_format, width=size[0], height=size[1])
        except StopIteration:
            # A clip is as long as its shot in seconds; its place on the timeline is rounded to
            # frames on its own, so the two may differ by a frame: hold the last one.
            if k not in last or last[k][1] >= MAX_HELD_FRAMES:
                raise ValueError(f"clip {k} ({clips[k].parent.name}) has too few frames for its shot") from None
            frame, held = last[k]
            last[k] = (frame, held + 1)
            return frame
        last[k] = (frame, 0)
        return frame

    def close(k: int) -> None:
        if k in opened:
            opened.pop(k)[0].close()
        last.pop(k, None)

    try:
        for f in range(bounds[-1]):
            covering = [k for k in range(len(clips))
                        if bounds[k] - handles[k] <= f < bounds[k + 1] + handles[k + 1]]
            frames = [pull(k) for k in covering]
            if len(frames) == 1:
                yield frames[0]
            else:  # a fade at the boundary where covering[1] begins
                k = covering[1]
                alpha = (f - (bounds[k] - handles[k]) + 0.5) / (2 * handles[k])
                mixed = frames[0].astype(np.float32) * (1 - alpha) + frames[1].astype(np.float32) * alpha
                yield (mixed + 0.5).astype(np.uint8)
            for k in [k for k in opened if f + 1 >= bounds[k + 1] + handles[k + 1]]:
                close(k)
    finally:
        for k in list(opened):
            close(k)


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


def video_options(settings: dict) -> dict[str, str]:
    """x264 options from the profile: quality (crf) at a speed (preset), and optionally a
    bitrate cap (maxrate with its VBV buffer) so a busy scene cannot exceed what platforms take."""
    options = {"preset": settings["preset"], "crf": str(settings["crf"])}
    if settings["maxrate"]:
        options["maxrate"] = str(settings["maxrate"])
        options["bufsize"] = str(settings["bufsize"] or settings["maxrate"])
    return options


def compose(narration_wav: Path, timing_file: Path, clips: list[Path], timeline: dict, settings: dict,
            directory: Path, music_file: Path | None = None) -> dict:
    import av

    timing = store.read_json(timing_file)
    width, height, fps = settings["width"], settings["height"], settings["fps"]
    bounds, handles = timeline["bounds"], timeline["handles"]
    total = bounds[-1]
    style = settings["captions"]
    renderer = CaptionRenderer(style, width, height)
    phrase_list = phrases(timing["words"], style["max_words"])
    schedule = caption_schedule(phrase_list, fps, total)
    overlays: dict[tuple[int, int], YuvOverlay] = {}
    # The audio is made while the video encodes: it is needed only once the frames are in.
    audio_work = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="compose-audio")
    loud = audio_work.submit(loud_aac, narration_wav, settings, music_file)
    audio_work.shutdown(wait=False)

    output = directory / "video.mp4"
    with av.open(str(output), "w", options={"movflags": "+faststart"}) as container:
        video = container.add_stream(settings["video_codec"], rate=Fraction(fps))
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = video_options(settings)
        # A keyframe every two seconds lets players seek quickly in a short.
        video.codec_context.gop_size = 2 * fps
        # Frame threads: x264 encodes while this thread decodes, fades and captions the next
        # frames (PyAV's default, slice threads, keeps the encoder's cores waiting on us).
        video.thread_type = "FRAME"

        subtitles = container.add_stream("mov_text")
        subtitles.codec_context.subtitle_header = _ASS_HEADER.format(w=width, h=height, size=style["size"]).encode()
        subtitles.time_base = Fraction(1, 1000)

        progress = Progress("encode-video", f"Encoding {total} frames ({settings['video_codec']}, "
                                            f"{settings['preset']})", total, unit="frames")
        written = 0
        # The container writes its header with the first packet, and the header needs the audio
        # stream, made from the encoded audio: video packets are held until that is ready.
        audio_source = audio = None
        held: list = []
        # Frames stay yuv420p from the clips' decoder to the encoder (the captions are blended in
        # it too): no conversion to RGB and back for each frame.
        for pixels in timeline_frames(clips, bounds, handles, (width, height), "yuv420p"):
            key = schedule[written]
            if key is not None:
                if key not in overlays:
                    texts = [w["text"] for w in phrase_list[key[0]].words]
                    overlays[key] = YuvOverlay(*renderer.overlay(texts, key[1]))
                overlays[key].blend_into(pixels, width, height)
            out = av.VideoFrame.from_ndarray(pixels, format="yuv420p")
            out.pts = written
            out.time_base = Fraction(1, fps)
            held.extend(video.encode(out))
            if audio is None and loud.done():
                audio_source, audio = _audio_stream(container, loud.result()[0])
            if audio is not None:
                container.mux(held)
                held.clear()
            written += 1
            progress.update(written)
        if written != total:
            raise ValueError(f"scene clips hold {written} frames; the narration needs {total}")
        if audio is None:
            audio_source, audio = _audio_stream(container, loud.result()[0])
        container.mux(held + video.encode())
        loudness_report = loud.result()[1]

        for packet in audio_source.demux(audio_source.streams.audio[0]):
            if packet.dts is not None:  # the demuxer ends with an empty flush packet
                packet.stream = audio
                container.mux(packet)
        audio_source.close()
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
            "transition_frames": [2 * h for h in handles[1:-1]],
            "caption_overlays": len(overlays), "loudness": loudness_report}


def _audio_stream(container, m4a: bytes):
    """The encoded audio, opened, and an output stream for its packets."""
    import av

    source = av.open(io.BytesIO(m4a))
    return source, container.add_stream_from_template(source.streams.audio[0])


def read_audio(wav: Path, rate: int) -> np.ndarray:
    """The narration as mono float samples at the output rate."""
    return decode_mono(wav, rate)


def _encode_aac(samples: np.ndarray, rate: int, bitrate: int, channels: int = 1) -> bytes:
    """AAC in an in-memory MP4, so it can be checked before it goes into the video."""
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=rate)
        stream.bit_rate, stream.layout = bitrate, "mono" if channels == 1 else "stereo"
        for frame in loudness.audio_frames(samples, rate, channels=channels):
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def _decode(m4a: bytes) -> np.ndarray:
    """The first channel of the encoded audio (the others carry the same signal)."""
    import av

    with av.open(io.BytesIO(m4a)) as container:
        return np.concatenate([f.to_ndarray()[0] for f in container.decode(audio=0)]).astype(np.float32)


def loud_aac(narration_wav: Path, settings: dict, music_file: Path | None = None) -> tuple[bytes, dict]:
    """The narration (with the music ducked under it, if any) normalised and AAC-encoded,
    with its true peak checked after encoding: the encoder can overshoot sharp onsets by a few
    dB, so the limiter is lowered until the encoded audio, not just its input, stays under
    the ceiling."""
    rate, target = settings["audio_rate"], settings["loudness"]
    samples = read_audio(narration_wav, rate)
    music_report = None
    if music_file is not None:
        samples, music_report = music.mix(samples, music.read_music(music_file, rate), rate, settings["music"])
    ceiling = target["true_peak_db"]
    channels = settings["audio_channels"]
    # BS.1770 sums the channels' power: the same signal on two channels is 3 dB louder than
    # on one, so each channel is normalised that much lower (true peak is per channel).
    spread_db = 10 * math.log10(channels)
    for margin in (1.5, 2.5, 3.5, 5.0, 7.0):
        normalised, report = loudness.normalise(samples, rate, target["target_lufs"] - spread_db,
                                                ceiling, margin)
        m4a = _encode_aac(normalised, rate, _bitrate(settings["audio_bitrate"]), channels)
        if report["output_lufs"] is None:
            break
        report.update(channels=channels, output_lufs=round(report["output_lufs"] + spread_db, 2),
                      target_lufs=target["target_lufs"])
        encoded_lufs, encoded_peak = loudness.measure(_decode(m4a), rate)
        encoded_lufs += spread_db
        report.update(encoded_lufs=round(encoded_lufs, 2), encoded_true_peak_db=round(encoded_peak, 2))
        if encoded_peak <= ceiling:
            break
    if music_report is not None:
        report["music"] = music_report
    return m4a, report


def _bitrate(text: str | int) -> int:
    text = str(text).lower()
    return int(float(text[:-1]) * 1000) if text.endswith("k") else int(text)


@task(name="compose", cache_policy=ArtifactPolicy(stage="compose", version=STAGE_VERSION))
def compose_task(narration: NarrationResult, alignment: AlignmentResult, clips: list[ClipResult], timeline: dict,
                 settings: dict, music_ref: MusicResult | None = None) -> VideoResult:
    """`timeline`: the shots' `bounds` and `handles` (Timeline.for_compose())."""
    music_file = music_ref.path(music_ref.file) if music_ref is not None else None
    return VideoResult.of(run_stage("compose", lambda directory: compose(
        narration.path("narration.wav"), alignment.path("words.json"),
        [clip.path("clip.mp4") for clip in clips], timeline, settings, directory, music_file)))
