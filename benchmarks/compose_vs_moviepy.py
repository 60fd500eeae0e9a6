"""Compose stage vs a straightforward moviepy 2 composition of the same inputs.

    .venv/bin/python benchmarks/compose_vs_moviepy.py [--story FILE] [--runs 3] [--work DIR]
        [--preset veryfast --crf 23 --maxrate 12M --bufsize 24M --audio-bitrate 128k]

1. Renders the story with the offline profile (once; kept in --work) for real scene clips,
   narration and word times.
2. Prepares moviepy's inputs, untimed and to its advantage: the caption overlays as PNGs
   drawn by our renderer, and the narration already loudness-normalised.
3. Runs each side --runs times, alternating, each in a fresh process: this stage's
   `compose()` (decode, cross-fade, captions, loudness, x264 + AAC + mov_text, +faststart) and
   benchmarks/moviepy_compose.py in its own virtual environment (moviepy 2 pins Pillow < 12),
   with the same x264 preset, CRF and audio bitrate.
4. Prints wall time, CPU time (the process and everything it started, e.g. moviepy's ffmpeg
   processes) and peak memory (the sum of the process tree's resident sets, sampled every
   20 ms), as medians, and the ratios moviepy / this stage.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import wave
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
MOVIEPY = "moviepy==2.2.1"
CLOCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def prepare(story: Path, work: Path, x264: dict) -> Path:
    """Render the story (cached after the first time) and write the job both sides run."""
    sys.path.insert(0, str(ROOT))
    os.environ["FACELESS_HOME"] = str(work / "home")
    from faceless.tasks.runtime import store
    from faceless.tasks.media.captions import CaptionRenderer, phrases
    from faceless.tasks.stages.compose import _decode, caption_schedule, loud_aac
    from faceless.tasks.stages.timeline import transition_handles
    from faceless.tasks.stages.plan import slugify

    env = {**os.environ, "PREFECT_HOME": str(work / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    subprocess.run([str(BIN / "faceless"), "render", str(story), "--out", str(work / "out")], env=env, check=True,
                   capture_output=True, cwd=work)
    manifest = json.loads((work / "out" / slugify(story.stem) / "manifest.json").read_text())
    keys = {(s["stage"], s["scene"]): s["key"] for s in manifest["stages"]}
    settings = {**manifest["settings"]["compose"], **x264}
    fps, (width, height) = settings["fps"], (settings["width"], settings["height"])
    bounds = [s["start"] for s in manifest["scenes"]]
    bounds = [round(b * fps) for b in bounds] + [manifest["video"]["frames"]]
    half = round(settings["transition_s"] * fps / 2)
    handles = transition_handles(bounds, half)
    narration = store.artifact_dir("narrate", keys[("narrate", None)]) / "narration.wav"
    words = store.artifact_dir("align", keys[("align", None)]) / "words.json"
    clips = [str(store.artifact_dir("animate", keys[("animate", i)]) / "clip.mp4") for i in range(len(manifest["scenes"]))]

    # moviepy's captions: one PNG per (phrase, spoken word), shown for its run of frames.
    timing = store.read_json(words)
    style = settings["captions"]
    phrase_list = phrases(timing["words"], int(style.get("max_words", 4)))
    schedule = caption_schedule(phrase_list, fps, bounds[-1])
    renderer = CaptionRenderer(style, width, height)
    overlays = work / "overlays"
    overlays.mkdir(exist_ok=True)
    captions, f = [], 0
    from PIL import Image

    while f < len(schedule):
        key, g = schedule[f], f
        while g < len(schedule) and schedule[g] == key:
            g += 1
        if key is not None:
            png = overlays / f"{key[0]:04d}-{key[1]:02d}.png"
            overlay, left, top = renderer.overlay([w["text"] for w in phrase_list[key[0]].words], key[1])
            Image.fromarray(overlay, "RGBA").save(png)
            captions.append({"png": str(png), "start": f / fps, "duration": (g - f) / fps, "left": left, "top": top})
        f = g
    # moviepy gets the narration already normalised (this stage does that work itself).
    m4a, _ = loud_aac(narration, settings)
    samples = _decode(m4a)
    audio_wav = work / "narration-normalised.wav"
    with wave.open(str(audio_wav), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(settings["audio_rate"])
        import numpy as np

        pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
        out.writeframes(np.repeat(pcm[:, None], 2, axis=1).tobytes())

    job = {"clips": clips, "bounds": bounds, "handles": handles, "fps": fps, "size": [width, height],
           "narration_wav": str(narration), "words_json": str(words), "settings": settings,
           "captions": captions, "audio_wav": str(audio_wav), "audio_bitrate": settings["audio_bitrate"],
           "x264": {k: settings.get(k) for k in ("preset", "crf", "maxrate", "bufsize")},
           "narration_s": bounds[-1] / fps}
    path = work / "job.json"
    path.write_text(json.dumps(job, indent=1))
    return path


def compose_here(job_path: Path, output: Path) -> None:
    """This project's side, as the compose task runs it."""
    sys.path.insert(0, str(ROOT))
    from faceless.tasks.stages.compose import compose

    job = json.loads(job_path.read_text())
    output.mkdir(parents=True, exist_ok=True)
    compose(Path(job["narration_wav"]), Path(job["words_json"]), [Path(c) for c in job["clips"]],
            {"bounds": job["bounds"], "handles": job["handles"]}, job["settings"], output)


def _tree(root: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(parents.get(pid, []))
    return found


def measured(command: list[str]) -> dict:
    """Wall, CPU and peak tree memory of a command run to completion."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak_rss, cpu_seen = 0, {}
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        rss = 0
        for member in _tree(process.pid):
            try:
                fields = open(f"/proc/{member}/stat").read().rsplit(")", 1)[1].split()
                rss += int(open(f"/proc/{member}/statm").read().split()[1]) * PAGE
            except (OSError, IndexError):
                continue
            cpu_seen[member] = (int(fields[11]) + int(fields[12])) / CLOCK  # utime + stime
        peak_rss = max(peak_rss, rss)
        time.sleep(0.02)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{process.stderr.read().decode()[-3000:]}")
    # wait4 counts the child and the children it waited for; the samples also catch any it did not.
    cpu = max(usage.ru_utime + usage.ru_stime, sum(cpu_seen.values()))
    return {"wall_s": wall, "cpu_s": cpu, "peak_mb": peak_rss / 2**20}


def moviepy_python(work: Path) -> Path:
    venv = work / "moviepy-venv"
    python = venv / "bin" / "python"
    if not (venv / ".installed").exists():
        subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", MOVIEPY],
                       check=True)
        (venv / ".installed").touch()
    return python


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--story", default=str(ROOT / "benchmarks" / "stories" / "night-train.txt"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work", default="/tmp/faceless-compose-bench")
    parser.add_argument("--preset", default="veryfast")
    parser.add_argument("--crf", type=int, default=23)
    parser.add_argument("--maxrate")
    parser.add_argument("--bufsize")
    parser.add_argument("--audio-bitrate", default="128k")
    parser.add_argument("--side", choices=["faceless"], help=argparse.SUPPRESS)  # one run of our side
    parser.add_argument("--job", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        compose_here(Path(args.job), Path(args.output))
        return

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    x264 = {"preset": args.preset, "crf": args.crf, "maxrate": args.maxrate, "bufsize": args.bufsize,
            "audio_bitrate": args.audio_bitrate}
    python = moviepy_python(work)
    job = prepare(Path(args.story), work, x264)
    narration_s = json.loads(job.read_text())["narration_s"]
    results: dict[str, list[dict]] = {"faceless": [], "moviepy": []}
    for run in range(args.runs):
        results["faceless"].append(measured([sys.executable, __file__, "--side", "faceless", "--job", str(job),
                                             "--output", str(work / f"faceless-{run}")]))
        results["moviepy"].append(measured([str(python), str(ROOT / "benchmarks" / "moviepy_compose.py"), str(job),
                                            str(work / f"moviepy-{run}.mp4")]))
        print(f"run {run + 1}: " + "; ".join(
            f"{side} {r[-1]['wall_s']:.1f} s wall, {r[-1]['cpu_s']:.1f} s CPU, {r[-1]['peak_mb']:.0f} MB"
            for side, r in results.items()), flush=True)

    medians = {side: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for side, runs in results.items()}
    print(f"\n{narration_s:.1f} s story at {json.loads(job.read_text())['size']}, x264 {args.preset} CRF {args.crf}"
          f"{' maxrate ' + args.maxrate if args.maxrate else ''}, AAC {args.audio_bitrate}; medians of {args.runs}")
    print(f"{'':10} {'wall s':>8} {'CPU s':>8} {'peak MB':>8}")
    for side, m in medians.items():
        print(f"{side:10} {m['wall_s']:8.1f} {m['cpu_s']:8.1f} {m['peak_mb']:8.0f}")
    f, mp = medians["faceless"], medians["moviepy"]
    print(f"{'ratio':10} {mp['wall_s'] / f['wall_s']:7.2f}x {mp['cpu_s'] / f['cpu_s']:7.2f}x "
          f"{mp['peak_mb'] / f['peak_mb']:7.2f}x   (moviepy / faceless)")
    (work / "results.json").write_text(json.dumps({"runs": results, "medians": medians}, indent=1))


if __name__ == "__main__":
    main()
