"""GPU check: the studio and modern renders, full size, on this machine's GPU, without downloading weights.

    .venv/bin/python benchmarks/gpu_check.py [--toy] [--profiles studio,modern] [--story FILE] [--scratch DIR] [--keep]
    .venv/bin/python benchmarks/gpu_check.py --profiles modern             # the distilled sampler only
    .venv/bin/python benchmarks/gpu_check.py --profiles modern-quality     # 50 guided steps + step cache
    make gpu-check

Without a CUDA GPU it prints one line and exits 0; `--toy` then runs the whole procedure at
toy size on the CPU (the tiny and modern-tiny profiles' models and settings), so it stays tested.

On a CUDA GPU it:

1. prints the GPU work of the studio settings, counted from the published architectures
   (benchmarks/gpu_work.py): TFLOP per denoising step and, for a 60-second story
   (benchmarks/stories/night-train.txt, sentence times from the offline Piper narration), the
   old design (chained 25-frame windows over two-sentence scenes) against the new one (one
   keyframe and one SVD window per shot); then studio next to modern for the same story
   (benchmarks/modern_work.py: FLUX.1-schnell steps, Wan 2.2 passes, PFLOP, ratio);
2. for each profile in --profiles (default studio, then modern; modern renders with FastWan2.2's
   distilled sampler, 3 steps without guidance; modern-quality, on request, with Wan's 50 guided
   steps and its step cache, so a GPU measures what the cache skips), builds every model family at
   its full published size with random weights on the GPU (benchmarks/gpu_models.py: SDXL base +
   refiner, the SDXL IP-Adapter for cast references (h94/IP-Adapter's layout: ViT-bigG/14 image
   encoder and adapter weights), SVD-XT, Bark, Whisper for studio; FLUX.1-schnell, FLUX.2
   [klein] 4B for the cast shots, Wan 2.2 TI2V-5B, Kokoro-82M for modern) and saves each as a model folder, so the render loads them
   from disk through the real loaders (fp16 for studio, bf16 for FLUX and Wan);
3. renders a short story (benchmarks/stories/two-sentences-cast.txt: two sentences, one cast
   member, whose reference studio draws and conditions its shots on, and modern draws with
   schnell and has klein draw the shots showing them from) through the real code path,
   `flows.story_to_video.story_to_video` with a profile derived from the profile's YAML whose
   model specs are those folders, in a child process with a fresh FACELESS_HOME and its own
   temporary Prefect server, and prints seconds per stage and per model family (the run's
   manifest.json), SVD windows or Wan passes per shot, peak GPU memory of the pass and of each
   model family (between the flow's releases), and the IP-Adapter's load: seconds, parameters,
   GiB (it loads into the SDXL family, whose peak includes it), and klein's cast shots: how
   many, their seconds and the flux2 family's peak (its build seconds are in the build table);
4. renders it again in a fresh child process whose GPU memory is capped at 24 GiB
   (`torch.cuda.set_per_process_memory_fraction`, set before anything loads), so the
   profile's degrade ladders meet real CUDA out-of-memory errors, and prints each stage's
   attempts and degradation and whether the render completed (`--toy` skips this pass: the cap
   is CUDA-only, so on a CPU it would repeat the first);
5. deletes the profile's model folders before the next profile's (studio's take about 24 GiB
   of disk, modern's 54: a profile whose folders do not fit the scratch disk is skipped, said so).

Random weights never end a Bark piece (it would run to 768 semantic tokens, 15 s) nor a
Whisper transcript (448 tokens a window), and a random Kokoro gives every phoneme over a second:
the derived profile caps Bark and Whisper at what a real voice and transcript of the story need
and sets Kokoro's speed so it speaks `--speech-seconds` a sentence. Everything else is the
profile as it is.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (str(ROOT), str(ROOT / "benchmarks")):
    if path not in sys.path:
        sys.path.insert(0, path)

# Two sentences and one cast member (studio draws its reference and conditions its shots on it).
STORY = ROOT / "benchmarks" / "stories" / "two-sentences-cast.txt"
CAP_GIB = 24.0
BUDGET_S = 8 * 60
NO_CUDA = ("gpu-check: no CUDA GPU here (torch.cuda.is_available() is False); nothing measured "
           "(--toy runs the procedure at toy size on the CPU)")
from gpu_models import (SOURCES, build_models, count_text, folder_gib, free, needed_gib, quiet,  # noqa: E402
                        random_weight_caps, write_profile)


# -- the renders -----------------------------------------------------------------------------------

def track_family_peaks(peaks: dict):
    """Have `peaks` collect each model family's peak GPU memory (GiB; None without CUDA) during
    the render in this process, keyed by the registry's family names ("kokoro", "flux", ...).
    The flow releases the voices, then the keyframe model, before the next family loads
    (memory.release_between_stages): the peak between two releases is the released family's
    (the voice and Whisper share one, released together). Returns the call that notes the
    families still loaded at the end."""
    import torch

    from faceless.tasks import models
    from faceless.tasks.models import registry

    cuda = torch.cuda.is_available()
    release = models.release

    def note(families: tuple) -> None:
        loaded = sorted({key[0] for key in registry._LOADED if not families or key[0] in families})
        if loaded:
            peaks["+".join(loaded)] = max(_CARRIED["gib"], torch.cuda.max_memory_allocated() / 2**30) if cuda else None

    def releasing(*families: str) -> list[str]:
        note(families)
        released = release(*families)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        _CARRIED["gib"] = 0.0
        return released

    models.release = releasing  # the flow calls it through the package, at call time
    return lambda: note(())


_CARRIED = {"gib": 0.0}  # the peak since the last release, kept across track_stage_peaks' resets


def track_stage_peaks(peaks: dict) -> None:
    """Have `peaks` collect each GPU stage's measured peak (GiB, torch.cuda.max_memory_allocated
    over each of its runs, the maximum over its shots), keyed by stage name. Every GPU stage runs
    its model work through gpu.on_gpu, one at a time (the models' lock): the peak is reset when
    a run starts and read when it ends."""
    import torch

    from faceless.tasks.runtime import gpu

    if not torch.cuda.is_available():
        return
    original = gpu.on_gpu

    def measured(label: str, work):
        def run():
            _CARRIED["gib"] = max(_CARRIED["gib"], torch.cuda.max_memory_allocated() / 2**30)
            torch.cuda.reset_peak_memory_stats()
            try:
                return work()
            finally:
                gib = torch.cuda.max_memory_allocated() / 2**30
                stage = label.split("[")[0]
                peaks[stage] = max(peaks.get(stage, 0.0), gib)
                _CARRIED["gib"] = max(_CARRIED["gib"], gib)
        return original(label, run)

    gpu.on_gpu = measured  # the stages call it through the module, at call time


def track_ip_adapter(found: dict) -> None:
    """Have `found` note the IP-Adapter's load into the SDXL base (tasks/backends/sdxl.py
    ensure_ip_adapter): seconds, the parameters it added (its image encoder, and the adapter's
    weights in the base UNet) and their GiB in the loaded dtype, and on CUDA the GPU memory
    allocated across the load (0 when it loads onto the CPU before the family is placed)."""
    import torch

    from faceless.tasks.backends import sdxl

    original = sdxl.ensure_ip_adapter

    def count(module) -> tuple[int, int]:
        params = list(module.parameters()) if module is not None else []
        return sum(p.numel() for p in params), sum(p.numel() * p.element_size() for p in params)

    def loading(base, spec: str) -> None:
        if getattr(base, "_faceless_ip_adapter", None) == spec:
            return original(base, spec)
        cuda = torch.cuda.is_available()
        unet, unet_bytes = count(base.unet)
        allocated = torch.cuda.memory_allocated() if cuda else 0
        started = time.perf_counter()
        original(base, spec)
        seconds = time.perf_counter() - started
        encoder, encoder_bytes = count(getattr(base, "image_encoder", None))
        adapted, adapted_bytes = count(base.unet)
        found.update(seconds=found.get("seconds", 0.0) + seconds, image_encoder=encoder, adapter=adapted - unet,
                     gib=(encoder_bytes + adapted_bytes - unet_bytes) / 2**30,
                     load_gib=(torch.cuda.memory_allocated() - allocated) / 2**30 if cuda else None)

    sdxl.ensure_ip_adapter = loading  # adapter_inputs calls it through the module, at call time


def print_ip_adapter(result: dict) -> None:
    """The IP-Adapter's line of a pass: it loads into the SDXL family, so its peak is that family's."""
    found = result.get("ip_adapter") or {}
    if not found:
        return
    peaks = result.get("family_peaks") or {}
    sdxl = next((gib for family, gib in peaks.items() if "sdxl" in family.split("+")), None)
    if result.get("peak_gib") is not None:
        memory = (f"{found['load_gib']:.2f} GiB allocated on the GPU by the load; the sdxl family's peak with it "
                  + (f"{sdxl:.2f} GiB" if sdxl is not None else "not measured"))
    else:
        memory = "its GPU memory is measured on CUDA only"
    print(f"cast references: IP-Adapter loaded into the SDXL base in {found['seconds']:.1f} s: image encoder "
          f"{count_text(found['image_encoder'])} + adapter {count_text(found['adapter'])} parameters, "
          f"{found['gib']:.2f} GiB of weights; {memory}")


def print_klein(result: dict) -> None:
    """The cast shots' line of a modern pass: the shots FLUX.2 [klein] drew (the manifest's
    keyframe rows name their backend), their seconds, and the flux2 family's peak GPU memory."""
    drawn = [row for row in result.get("stages") or [] if row["stage"] == "keyframe" and row.get("backend") == "flux2-klein"]
    if not drawn:
        return
    peak = (result.get("family_peaks") or {}).get("flux2")
    memory = f"peak GPU memory of the flux2 family {peak:.2f} GiB" if peak is not None else \
        "its GPU memory is measured on CUDA only"
    print(f"cast shots: FLUX.2 [klein] drew {len(drawn)} shot(s) (shots {', '.join(str(r['scene']) for r in drawn)}) "
          f"in {sum(float(r.get('seconds') or 0.0) for r in drawn):.1f} s on their references; {memory}")


def prediction_rows(result: dict) -> list[dict]:
    """Per GPU stage: the memory plan's placement and predicted peak for this pass's GPU (its cap,
    else the card's memory), the placement the render used (manifest), and the measured peak."""
    from faceless.tasks.runtime import memory_plan

    settings = result.get("settings") or {}
    gib = result.get("cap_gib") or result.get("total_gib")
    if not settings or not gib:
        return []
    from faceless.tasks.backends import base as backends

    stages = memory_plan.make_plan(settings, gib).stages
    # A stage with two backends (modern's keyframes: schnell, then klein for the cast shots): each
    # row's placements are its backend's (the manifest's keyframe rows name it) and its measured
    # peak its family's (the flow releases one before the other loads).
    shared = {s.stage for s in stages if sum(t.stage == s.stage for t in stages) > 1}
    used: dict[tuple, set] = {}
    for row in result.get("stages", []):
        if row.get("placement"):
            backend = row.get("backend") if row["stage"] in shared else None
            used.setdefault((row["stage"], backend), set()).add(row["placement"]["placement"])
    measured, families = result.get("stage_peaks") or {}, result.get("family_peaks") or {}

    def peak(stage) -> float | None:
        if stage.stage not in shared:
            return measured.get(stage.stage)
        return families.get(backends.get(stage.backend).FAMILY)

    return [{"stage": s.stage, "backend": s.backend, "planned": s.placement, "predicted_gib": s.predicted_peak_gib,
             "used": ", ".join(sorted(used.get((s.stage, s.backend if s.stage in shared else None), ()))) or "-",
             "measured_gib": peak(s)} for s in stages]


def print_prediction(result: dict) -> None:
    rows = prediction_rows(result)
    if not rows:
        return
    print(f"{'stage':<10}{'backend':<16}{'planned':<20}{'used':<20}{'predicted':>10}{'measured':>10}  GiB")
    for row in rows:
        measured = "-" if row["measured_gib"] is None else f"{row['measured_gib']:.2f}"
        print(f"{row['stage']:<10}{row['backend']:<16}{row['planned']:<20}{row['used']:<20}"
              f"{row['predicted_gib']:>10.2f}{measured:>10}")


def child(args) -> int:
    """One render in this (fresh) process; writes what it measured to args.result."""
    import torch

    cuda = torch.cuda.is_available()
    fraction = None
    if args.cap_gib and cuda:
        total = torch.cuda.get_device_properties(0).total_memory
        fraction = min(1.0, args.cap_gib * 2**30 / total)
        torch.cuda.set_per_process_memory_fraction(fraction)  # before anything loads
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    result = {"device": torch.cuda.get_device_name() if cuda else f"CPU ({os.cpu_count()} cores)",
              "cap_gib": args.cap_gib if fraction else None, "fraction": fraction}
    result["family_peaks"], result["stage_peaks"], result["ip_adapter"] = {}, {}, {}
    final_peak = track_family_peaks(result["family_peaks"])
    track_stage_peaks(result["stage_peaks"])
    track_ip_adapter(result["ip_adapter"])
    if fraction:  # the plan sees the cap, not the card's free memory
        os.environ["FACELESS_GPU_MEMORY"] = str(args.cap_gib)
    started = time.perf_counter()
    try:
        from faceless.flows.story_to_video import story_to_video

        result["video"] = story_to_video(story_file=str(args.story), profile_file=str(args.profile), out=str(args.out))
        result["completed"], result["error"] = True, None
    except BaseException as error:  # the render's own failure is the measurement
        text = str(error).strip()
        result["completed"], result["error"] = False, f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"
    result["seconds"] = time.perf_counter() - started
    final_peak()
    if cuda:
        torch.cuda.synchronize()
        result["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
        result["total_gib"] = torch.cuda.get_device_properties(0).total_memory / 2**30
    manifest = next(Path(args.out).glob("*/manifest.json"), None)
    result["manifest"] = str(manifest) if manifest else None
    # Whatever finished, from the artifact store (what a failed render leaves behind).
    artifacts = []
    for path in sorted((Path(os.environ["FACELESS_HOME"]) / "artifacts").glob("*/*/manifest.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        artifacts.append({k: data.get(k) for k in ("stage", "seconds", "attempts", "degraded")})
    result["artifacts"] = artifacts
    Path(args.result).write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


def run_pass(folder: Path, profile: Path, story: Path, cap_gib: float | None, timeout: float) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "FACELESS_HOME": str(folder / "home"), "PREFECT_HOME": str(folder / "prefect"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}
    env.pop("PREFECT_API_URL", None)  # its own temporary server, not the user's
    env.pop("FACELESS_FAULT", None)
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "--profile", str(profile),
               "--story", str(story), "--out", str(folder / "out"), "--result", str(folder / "result.json")]
    if cap_gib:
        command += ["--cap-gib", str(cap_gib)]
    started = time.perf_counter()
    with open(folder / "render.log", "w") as log:
        try:
            code = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
    wall = time.perf_counter() - started
    result_file = folder / "result.json"
    if not result_file.is_file():
        tail = (folder / "render.log").read_text(errors="replace")[-2000:]
        return {"completed": False, "error": f"child process ended without a result (exit {code}); log tail:\n{tail}",
                "wall": wall, "stages": [], "scenes": [], "artifacts": []}
    result = json.loads(result_file.read_text(encoding="utf-8"))
    result["wall"] = wall
    manifest = json.loads(Path(result["manifest"]).read_text(encoding="utf-8")) if result.get("manifest") else {}
    result["stages"], result["scenes"] = manifest.get("stages", []), manifest.get("scenes", [])
    result["settings"], result["backends"] = manifest.get("settings", {}), manifest.get("backends", {})
    return result


def print_pass(title: str, result: dict, show_ladder: bool) -> None:
    print()
    print(f"== {title} ==")
    state = "completed" if result.get("completed") else f"DID NOT COMPLETE: {result.get('error')}"
    print(f"render on {result.get('device', '?')}: {state}; {result.get('seconds', result['wall']):.1f} s in the flow, "
          f"{result['wall']:.1f} s with process and Prefect start-up")
    if result.get("peak_gib") is not None:
        cap = f" (cap {result['cap_gib']:g} GiB = {result['fraction']:.3f} of {result['total_gib']:.1f} GiB)" \
            if result.get("cap_gib") else f" of {result['total_gib']:.1f} GiB"
        print(f"peak GPU memory: {result['peak_gib']:.2f} GiB{cap} (torch.cuda.max_memory_allocated; "
              "CTranslate2's Whisper allocates outside it)")
        print("memory plan, predicted against measured peak per stage (docs/gpu-memory.md):")
        print_prediction(result)
    rows = result.get("stages") or [
        {"stage": a["stage"], "scene": None, "seconds": a["seconds"], "cached": False, "attempts": a["attempts"],
         "degraded": a["degraded"]} for a in result.get("artifacts", [])]
    if not result.get("stages") and rows:
        print("no manifest (the render did not finish); the stages that did, from the artifact store:")
    header = f"{'stage':<14}{'shot':>6}{'seconds':>10}{'cached':>8}"
    if show_ladder:
        header += f"{'attempts':>10}  degraded"
    print(header)
    totals: dict[str, float] = {}
    for row in rows:
        seconds = float(row.get("seconds") or 0.0)
        totals[row["stage"]] = totals.get(row["stage"], 0.0) + seconds
        line = (f"{row['stage']:<14}{'' if row.get('scene') is None else row['scene']:>6}{seconds:>10.2f}"
                f"{'yes' if row.get('cached') else 'no':>8}")
        if show_ladder:
            line += f"{row.get('attempts', 1):>10}  {json.dumps(row.get('degraded')) if row.get('degraded') else '-'}"
        print(line)
    if totals:
        print("per stage: " + ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in totals.items()))
    backends = result.get("backends") or {}
    if backends and totals:
        # The cast stage draws its references with the keyframe backend.
        print("per family: " + ", ".join(
            f"{backends.get('keyframe' if stage == 'cast' else stage, stage)} ({stage}) {totals[stage]:.1f} s"
            for stage in ("narrate", "align", "cast", "keyframe", "animate") if stage in totals
            and not (stage == "align" and backends.get(stage) == "voice")))
    peaks = result.get("family_peaks") or {}
    if peaks and any(v is not None for v in peaks.values()):
        print("peak GPU memory per model family (between the flow's releases): "
              + ", ".join(f"{family} {gib:.2f} GiB" for family, gib in peaks.items()))
    elif peaks:
        print("model families, in the order the flow released them: " + ", ".join(peaks)
              + " (their peak memory is measured on CUDA only)")
    print_ip_adapter(result)
    print_klein(result)
    shots = result.get("scenes") or []
    if shots and backends.get("animate") == "wan":
        from faceless.tasks.backends.wan import native_frame_count

        # The manifest has each clip's frames; the pass made the next 4k+1 (tasks/backends/wan.py).
        print("Wan passes per shot: " + ", ".join(
            f"{s['windows']} of {native_frame_count(s['clip_frames'])} frames ({s['clip_frames'] / 24:.1f} s)"
            for s in shots))
        # The sampler each pass ran (manifest scenes): distilled is one transformer pass a step.
        print("Wan sampler per shot: " + ", ".join(f"{s.get('sampler')} {s.get('num_inference_steps')} steps"
                                                   for s in shots))
    elif shots:
        print("SVD windows per shot: " + ", ".join(f"{s['windows']} (fps {s['fps_conditioning']}, {s['frames'] / 24:.1f} s)"
                                                  for s in shots))


# -- the check -----------------------------------------------------------------------------------

def matmul_tflops() -> float:
    """Dense fp16 matrix-product rate of this GPU (8192^3, 20 products)."""
    import torch

    a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(20):
        a @ b
    torch.cuda.synchronize()
    rate = 2 * 8192**3 * 20 / (time.perf_counter() - started) / 1e12
    del a, b
    free()
    return rate


def work_section(tflops: float, narration: tuple[dict, dict] | None = None) -> None:
    """Step 1: the FLOP counts. `narration`: the 60-second story's (plan, timing) when already made."""
    import gpu_work
    from faceless.tasks.settings import load_profile

    studio = load_profile("studio")
    per_step = gpu_work.step_tflop(studio)
    known = gpu_work.known_tflop()
    print()
    print("GPU work per denoising step (published architectures on the meta device, FlopCounterMode, with CFG):")
    print(f"  SDXL base    {per_step['sdxl_base']:6.2f} TFLOP at {per_step['keyframe_size']}   "
          f"({known['sdxl_base'][0]:.2f} at 1024x1024; published {known['sdxl_base'][1]})")
    print(f"  SDXL refiner {per_step['sdxl_refiner']:6.2f} TFLOP at {per_step['keyframe_size']}   "
          f"({known['sdxl_refiner'][0]:.2f} at 1024x1024; published {known['sdxl_refiner'][1]})")
    print(f"  SVD-XT       {per_step['svd']:6.2f} TFLOP at {per_step['animate_size']} "
          f"({known['svd'][0]:.2f} at 576x1024x25; published {known['svd'][1]})")
    plan, timing = narration or gpu_work.piper_timing(gpu_work.NIGHT_TRAIN, studio)
    result = gpu_work.before_after(studio, plan, timing)
    print()
    print(f"60-second story at studio settings: {gpu_work.NIGHT_TRAIN.relative_to(ROOT)}, {result['sentences']} "
          f"sentences, {result['duration']:.1f} s of the offline Piper narration")
    print(f"  BEFORE: {len(result['scenes'])} scenes of two sentences "
          f"({', '.join(f'{s:.1f}' for s in result['scenes'])} s), chained 25-frame windows at fps 24")
    print(f"  AFTER:  {len(result['shots'])} shots from the storyboard "
          f"({', '.join(format(s['seconds'], '.1f') for s in result['shots'])} s), "
          f"{sum(s['windows'] for s in result['shots'])} windows at fps conditioning "
          f"{', '.join(str(s['fps_conditioning']) for s in result['shots'])}")
    for line in gpu_work.table(result, tflops):
        print("  " + line)
    side_by_side_section(tflops, (plan, timing))


def side_by_side_section(tflops: float, narration: tuple[dict, dict]) -> None:
    import gpu_work
    import modern_work

    side = modern_work.side_by_side(gpu_work.NIGHT_TRAIN, narration=narration)
    print()
    print(f"60-second story, studio and modern side by side (FLOP counts on the meta device, not timings): "
          f"{gpu_work.NIGHT_TRAIN.relative_to(ROOT)} on the same {side['duration']:.1f} s narration, each profile's "
          "own storyboard and timeline; FLUX.1-schnell without guidance, Wan 2.2 one pass a shot with modern's "
          "sampler (distilled: 3 steps, no guidance; benchmarks/story_work.py counts every stage and modern-quality)")
    for line in modern_work.table_lines(modern_work.side_by_side_table(side, tflops)):
        print("  " + line)


# Estimates of what is not GPU compute (seconds): building the folders, and a pass's start-up,
# loading, voice and encoding. Modern moves 54 GiB of weights through the disk, studio 24.
OVERHEAD_S = {("studio", True): (90.0, 100.0), ("modern", True): (150.0, 120.0),
              ("studio", False): (10.0, 60.0), ("modern", False): (15.0, 60.0)}


def budget_section(name: str, profile: dict, story: Path, speech_seconds: float, tflops: float, full: bool) -> None:
    import modern_work
    from faceless.tasks.stages.plan import plan_story

    # The random voice speaks `speech_seconds` a sentence: the storyboard's shots and the
    # window (or pass) plan of those times, as the render will make them.
    plan = plan_story(story.read_text(encoding="utf-8"), profile["plan"]).to_dict()
    pause = profile["narrate"]["sentence_pause_s"]
    words, spans, clock = [], [], 0.0
    for sentence in plan["sentences"]:
        clock += pause if spans else 0.0
        step = speech_seconds / len(sentence["words"])
        spans.append({"index": sentence["index"], "start": clock, "end": clock + speech_seconds})
        for text in sentence["words"]:
            words.append({"sentence": sentence["index"], "text": text, "start": clock, "end": clock + step})
            clock += step
    timing = {"words": words, "sentences": spans, "duration": clock}
    build, per_pass = OVERHEAD_S[(name.split("-")[0], full)]  # modern-quality: modern's models
    print()
    if not full:
        print(f"time budget (estimate, toy size on this CPU): ~{build:.0f} s building, ~{per_pass:.0f} s a render "
              f"({len(plan['sentences'])} sentences), ~{(build + 2 * per_pass) / 60:.1f} min in all; "
              "toy sizes say nothing about a GPU")
        return
    shots, work = modern_work.story_work(profile, plan, timing)
    compute = work["pflop"] * 1000 / tflops
    total = build + 2 * (compute + per_pass)
    motion = (f"{sum(s['windows'] for s in shots)} SVD window(s)" if profile["animate"]["backend"] == "svd"
              else f"Wan passes of {', '.join(str(s['native_frames']) for s in shots)} frames")
    print(f"time budget (estimate): the render story has {len(plan['sentences'])} sentences, about {timing['duration']:.1f} s "
          f"of narration, {len(shots)} shot(s), {motion}:")
    print(f"  {work['pflop']:.1f} PFLOP a pass = {compute:.0f} s at {tflops:.0f} TFLOPS; + ~{per_pass:.0f} s a pass of "
          f"start-up, loading, voice and encoding; + ~{build:.0f} s building: ~{total / 60:.1f} min for {name} "
          f"(limit {BUDGET_S / 60:.0f} min{'' if total <= BUDGET_S else ': over it, run one profile a call'})")


def check_profile(name: str, args, scratch: Path, story: Path, tflops: float, full: bool) -> bool:
    """Build the profile's model folders, render twice, delete the folders. True if pass 1 completed."""
    import torch

    root = scratch / name
    print()
    print(f"=== {name} ===")
    klein = True
    if full:
        needed, free_gib = needed_gib(name), shutil.disk_usage(scratch).free / 2**30
        if needed * 1.05 > free_gib and name.startswith("modern") and needed_gib(name, klein=False) * 1.05 <= free_gib:
            klein = False
            print(f"{name}: FLUX.2 [klein] left out: all folders take about {needed:.0f} GiB and {scratch} has "
                  f"{free_gib:.0f} GiB free (--scratch on a larger disk); every shot drawn by schnell")
            needed = needed_gib(name, klein=False)
        if needed * 1.05 > free_gib:
            print(f"{name}: SKIPPED: its folders take about {needed:.0f} GiB and {scratch} has {free_gib:.0f} GiB free "
                  "(--scratch on a larger disk)")
            return False
    print(f"building {'full-size' if full else 'toy'} {name} models with random weights in {root / 'models'} ...")
    build_started = time.perf_counter()
    built = build_models(name, root / "models", full, klein)
    build_seconds = time.perf_counter() - build_started
    for family, (folder, seconds, note) in built.items():
        print(f"  {family:<13}{seconds:7.1f} s  {folder_gib(folder):6.2f} GiB on disk  {note}")
    print(f"build: {build_seconds:.1f} s")
    speech = args.speech_seconds if full else 1.2
    profile = write_profile(name, root / "profile.yaml", full, built, story, speech)
    if full and profile["storyboard"]["writer"] == "rules":
        print("shot writer: left out at full size (no random-weight Qwen twin yet); the storyboard is written by rules")
    print(f"profile: {root / 'profile.yaml'} ({profile['description']}; random-weight settings: "
          f"{random_weight_caps(profile) or 'none'})")
    budget_section(name, profile, story, speech, tflops, full)
    if full:
        print(f"this process keeps {torch.cuda.memory_reserved() / 2**30:.2f} GiB of GPU memory reserved "
              "during the renders (plus its CUDA context)")

    first = run_pass(root / "pass-1", root / "profile.yaml", story, None, args.pass_timeout)
    if not full:
        # The second pass exists for its memory cap, which is CUDA-only
        # (torch.cuda.set_per_process_memory_fraction): on a CPU it would repeat pass 1 exactly.
        print_pass(f"{name} pass 1: {story.name}, no memory cap", first, show_ladder=True)
        print(f"{name} pass 2 skipped: the memory cap is CUDA-only")
        shutil.rmtree(root / "models", ignore_errors=True)
        return bool(first.get("completed"))
    print_pass(f"{name} pass 1: {story.name}, no memory cap", first, show_ladder=False)
    title = f"{name} pass 2: fresh process and store, GPU memory capped at {args.cap_gib:g} GiB"
    second = run_pass(root / "pass-2", root / "profile.yaml", story, args.cap_gib, args.pass_timeout)
    print_pass(title, second, show_ladder=True)
    degraded = [r for r in second.get("stages", []) if r.get("degraded") or (r.get("attempts") or 1) > 1]
    print(f"{name} pass 2 {'completed' if second.get('completed') else 'did not complete'}; "
          f"{len(degraded)} stage(s) retried or degraded")
    # The next profile's folders need the disk (studio's 24 GiB and modern's 54 do not fit a 64 GiB one together).
    shutil.rmtree(root / "models", ignore_errors=True)
    return bool(first.get("completed"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--toy", action="store_true", help="run at toy size on the CPU (tiny models and settings)")
    parser.add_argument("--profiles", type=lambda text: [p for p in text.split(",") if p], default=["studio", "modern"],
                        help="profiles to check, in order, comma-separated (default: studio,modern)")
    parser.add_argument("--story", type=Path, default=STORY, help="story to render (default: a two-sentence story)")
    parser.add_argument("--scratch", type=Path, help="folder for the models and renders (kept; default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary scratch folder")
    parser.add_argument("--cap-gib", type=float, default=CAP_GIB, help="GPU memory cap of the second render (GiB)")
    parser.add_argument("--speech-seconds", type=float, default=1.5,
                        help="length of each random Bark piece, and Kokoro's pace (default 1.5: random Bark never "
                             "stops by itself; real speech is 3-6 s a sentence)")
    parser.add_argument("--pass-timeout", type=float, default=420, help="seconds a render may take (default 420)")
    parser.add_argument("--skip-work", action="store_true",
                        help="leave out step 1, the FLOP counts (the same on every machine; tests check them in-process)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--profile", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    unknown = [name for name in args.profiles if name not in SOURCES]
    if unknown:
        parser.error(f"--profiles: unknown {', '.join(unknown)} (known: {', '.join(SOURCES)})")

    import torch

    if not args.toy and not torch.cuda.is_available():
        print(NO_CUDA)
        return 0
    started = time.perf_counter()
    full = not args.toy
    quiet()
    if not full:
        torch.set_flush_denormal(True)
    device = torch.cuda.get_device_name() if full else f"CPU ({os.cpu_count()} cores), toy size"
    print(f"gpu-check on {device}; torch {torch.__version__}")
    if full:
        rate = matmul_tflops()
        tflops = 0.4 * rate
        print(f"fp16 matrix products: {rate:.0f} TFLOPS; diffusion estimated at 40 % of that, {tflops:.0f} TFLOPS")
        try:
            import ctranslate2

            print(f"CTranslate2 {ctranslate2.__version__} sees {ctranslate2.get_cuda_device_count()} CUDA device(s) "
                  "(faster-whisper needs one, with cuBLAS and cuDNN 9 it can load)")
        except Exception as error:  # noqa: BLE001 - reported, the render will show the consequence
            print(f"CTranslate2: {type(error).__name__}: {error}")
    else:
        tflops = 0.4 * 990
        print(f"no GPU: estimates assume an H200 (990 dense fp16 TFLOPS) at 40 %, {tflops:.0f} TFLOPS")
    if not args.skip_work:
        work_section(tflops)

    scratch = (args.scratch or Path(tempfile.mkdtemp(prefix="gpu-check-"))).resolve()
    scratch.mkdir(parents=True, exist_ok=True)
    story = args.story.resolve()
    completed = {}
    try:
        for name in args.profiles:
            completed[name] = check_profile(name, args, scratch, story, tflops, full)
    finally:
        if args.scratch or args.keep:
            print(f"kept: {scratch} (model folders removed after each profile)")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    print()
    print(f"total: {time.perf_counter() - started:.1f} s; pass 1 completed: "
          + ", ".join(f"{name} {'yes' if ok else 'no'}" for name, ok in completed.items()))
    return 0 if all(completed.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
