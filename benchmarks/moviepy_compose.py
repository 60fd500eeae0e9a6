"""The same composition done the straightforward moviepy 2 way, for benchmarks/compose_vs_moviepy.py.

    python moviepy_compose.py JOB.json OUTPUT.mp4

Runs in its own virtual environment (moviepy 2 wants Pillow < 12; the project uses a newer
one). It gets everything pre-made and untimed, to its advantage: the caption overlays as
PNGs (drawn by the project's own renderer) and the narration already loudness-normalised.
What it does is what tools built on moviepy do: one VideoFileClip per scene placed on a
CompositeVideoClip with a cross-fade in, an ImageClip per caption state, the narration as
an AudioFileClip, and write_videofile with the same x264 settings.
"""

from __future__ import annotations

import json
import sys

from moviepy import AudioFileClip, CompositeVideoClip, ImageClip, VideoFileClip, vfx


def main(job_path: str, output: str) -> None:
    job = json.loads(open(job_path, encoding="utf-8").read())
    fps, (width, height) = job["fps"], job["size"]
    bounds, handles = job["bounds"], job["handles"]
    layers = []
    for k, path in enumerate(job["clips"]):
        start = (bounds[k] - handles[k]) / fps
        length = (bounds[k + 1] + handles[k + 1] - bounds[k] + handles[k]) / fps
        clip = VideoFileClip(path, audio=False)  # holds exactly the scene's frames and fade handles
        clip = clip.with_duration(min(length, clip.duration)).with_start(start)
        if handles[k]:
            clip = clip.with_effects([vfx.CrossFadeIn(2 * handles[k] / fps)])
        layers.append(clip)
    for caption in job["captions"]:
        layers.append(ImageClip(caption["png"]).with_start(caption["start"]).with_duration(caption["duration"])
                      .with_position((caption["left"], caption["top"])))
    audio = AudioFileClip(job["audio_wav"])
    video = CompositeVideoClip(layers, size=(width, height)).with_duration(bounds[-1] / fps).with_audio(audio)
    x264 = job["x264"]
    # The same keyframe interval as compose (2 s), so both encoders do the same job.
    params = ["-crf", str(x264["crf"]), "-g", str(2 * fps), "-pix_fmt", "yuv420p", "-movflags", "+faststart"]
    if x264.get("maxrate"):
        params += ["-maxrate", str(x264["maxrate"]), "-bufsize", str(x264.get("bufsize") or x264["maxrate"])]
    video.write_videofile(output, fps=fps, codec="libx264", preset=x264["preset"], ffmpeg_params=params,
                          audio_codec="aac", audio_bitrate=job["audio_bitrate"], logger=None)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
