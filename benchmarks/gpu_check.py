"""GPU check: the studio render, full size, on this machine's GPU, without downloading weights.

    .venv/bin/python benchmarks/gpu_check.py [--toy] [--story FILE] [--scratch DIR] [--keep]
    make gpu-check

Without a CUDA GPU it prints one line and exits 0; `--toy` then runs the whole procedure at
toy size on the CPU (the tiny profile's models and settings), so it stays tested.

On a CUDA GPU it:

1. prints the GPU work of the studio settings, counted from the published architectures
   (benchmarks/gpu_work.py): TFLOP per denoising step and, for a 60-second story
   (benchmarks/stories/night-train.txt, sentence times from the offline Piper narration), the
   old design (chained 25-frame windows over two-sentence scenes) against the new one (one
   keyframe and one SVD window per shot), and a time budget for this check;
2. builds every studio model family at its full published size with random weights, on the
   GPU in fp16 (a step costs the same whatever the weights hold): SDXL base + refiner and
   SVD-XT from tasks/models/configs/, Bark at suno/bark-small's sizes, Whisper at large-v3's
   (converted for faster-whisper with CTranslate2, float16, with its tokenizer.json); each is
   saved as a model folder in a scratch directory and freed, so the render loads them from
   disk through the real fp16 loaders;
3. renders a short story (benchmarks/stories/two-sentences.txt) through the real studio code
   path, `flows.story_to_video.story_to_video` with a profile derived from
   tasks/profiles/studio.yaml whose model specs are those folders, in a child process
   with a fresh FACELESS_HOME and its own temporary Prefect server, and prints seconds per
   stage (the run's manifest.json), SVD windows per shot and peak GPU memory;
4. renders it again in a fresh child process whose GPU memory is capped at 24 GiB
   (`torch.cuda.set_per_process_memory_fraction`, set before anything loads), so the
   profile's degrade ladder meets real CUDA out-of-memory errors, and prints each stage's
   attempts and degradation and whether the render completed.

Random weights never end a Bark piece (it would run to 768 semantic tokens, 15 s) nor a
Whisper transcript (448 tokens a window): the derived profile caps both at what a real voice
and a real transcript of the story need (`--speech-seconds` a sentence). Everything else is
studio.yaml as it is.
"""

from __future__ import annotations

import argparse
import gc
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

STORY = ROOT / "benchmarks" / "stories" / "two-sentences.txt"
CAP_GIB = 24.0
BARK_TOKENS_PER_S = 49.9  # Bark's semantic tokens a second of audio
BUDGET_S = 8 * 60
NO_CUDA = ("gpu-check: no CUDA GPU here (torch.cuda.is_available() is False); nothing measured "
           "(--toy runs the procedure at toy size on the CPU)")
MODEL_SETTINGS = (("narrate", "model", "bark"), ("align", "model", "whisper"), ("keyframe", "base", "sdxl-base"),
                  ("keyframe", "refiner", "sdxl-refiner"), ("animate", "model", "svd"))


def _quiet() -> None:
    from faceless.tasks.models import registry

    registry.quiet_libraries()


def _free() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


# -- full-size models --------------------------------------------------------------------------

def _config(name: str) -> dict:
    data = json.loads((ROOT / "tasks" / "models" / "configs" / f"{name}.json").read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if not k.startswith("_")}


def full_size_pipelines(device: str, dtype):
    """Builders of the published SDXL base/refiner and SVD-XT pipelines with random weights,
    made straight on `device` (no 10 GB of fp32 weights through host memory): (sdxl, svd),
    where sdxl() returns (base, refiner) sharing text_encoder_2 and the VAE."""
    import torch
    from diffusers import (AutoencoderKL, AutoencoderKLTemporalDecoder, EulerDiscreteScheduler,
                           StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline, StableVideoDiffusionPipeline,
                           UNet2DConditionModel, UNetSpatioTemporalConditionModel)
    from transformers import (CLIPImageProcessor, CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection,
                              CLIPVisionConfig, CLIPVisionModelWithProjection)

    from faceless.tasks.models import tiny

    tokenizer_dir = Path(tempfile.mkdtemp(prefix="gpu-check-tokenizer-"))
    tiny._write_tokenizer(tokenizer_dir)  # a byte-level CLIP tokenizer: ids fit the real 49408 vocabulary
    tokenizer = tiny._load_tokenizer(tokenizer_dir)
    shutil.rmtree(tokenizer_dir, ignore_errors=True)

    def make(cls, *args, **kwargs):
        torch.manual_seed(0)
        with torch.device(device):
            module = cls(*args, **kwargs)
        # .to(device): a few parameters are made by constructors that ignore the default device.
        return module.to(device=device, dtype=dtype).eval()

    def sdxl():
        text_encoder_2 = make(CLIPTextModelWithProjection, CLIPTextConfig(**_config("sdxl-text-encoder-2")))
        vae = make(AutoencoderKL, **_config("sdxl-vae"))
        vae.register_to_config(force_upcast=True)  # as the real SDXL VAE: decode in fp32
        base = StableDiffusionXLPipeline(
            vae=vae, text_encoder=make(CLIPTextModel, CLIPTextConfig(**_config("sdxl-text-encoder"))),
            text_encoder_2=text_encoder_2, tokenizer=tokenizer, tokenizer_2=tokenizer,
            unet=make(UNet2DConditionModel, **_config("sdxl-base-unet")),
            scheduler=EulerDiscreteScheduler.from_config(_config("sdxl-scheduler")),
        )
        refiner = StableDiffusionXLImg2ImgPipeline(
            vae=vae, text_encoder=None, text_encoder_2=text_encoder_2, tokenizer=None, tokenizer_2=tokenizer,
            unet=make(UNet2DConditionModel, **_config("sdxl-refiner-unet")),
            scheduler=EulerDiscreteScheduler.from_config(_config("sdxl-scheduler")),
            requires_aesthetics_score=True,
        )
        return base, refiner

    def svd():
        return StableVideoDiffusionPipeline(
            vae=make(AutoencoderKLTemporalDecoder, **_config("svd-xt-vae")),
            image_encoder=make(CLIPVisionModelWithProjection, CLIPVisionConfig(**_config("svd-xt-image-encoder"))),
            unet=make(UNetSpatioTemporalConditionModel, **_config("svd-xt-unet")),
            scheduler=EulerDiscreteScheduler.from_config(_config("svd-xt-scheduler")),
            feature_extractor=CLIPImageProcessor(crop_size=224, size={"shortest_edge": 224}),
        )

    return sdxl, svd


def full_size_voice(device: str = "meta"):
    """Bark at suno/bark-small's sizes and Whisper at large-v3's, built on `device` (for counts)."""
    import torch
    from transformers import BarkModel, WhisperForConditionalGeneration

    from faceless.tasks.models.tiny_voice import bark_config, whisper_config

    with torch.device(device):
        return BarkModel(bark_config("small")), WhisperForConditionalGeneration(whisper_config("large-v3")[0])


def millions(module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


def _folder_gib(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**30


def build_models(folder: Path, full: bool) -> dict:
    """Every studio model family saved as a model folder under `folder`: {family: (path, seconds, note)}."""
    import torch

    from faceless.tasks.models import tiny
    from faceless.tasks.models.tiny_voice import build_bark, build_whisper

    _quiet()
    device, dtype = ("cuda", torch.float16) if full else ("cpu", None)
    folder.mkdir(parents=True, exist_ok=True)
    built: dict = {}

    def timed(family: str, work) -> None:
        started = time.perf_counter()
        note = work()
        _free()
        built[family] = (folder / family, time.perf_counter() - started, note)

    if full:
        sdxl, svd = full_size_pipelines(device, dtype)

        def sdxl_pair():
            base, refiner = sdxl()
            note = (f"base UNet {millions(base.unet):.1f} M, refiner UNet {millions(refiner.unet):.1f} M, "
                    f"text encoders {millions(base.text_encoder):.1f} + {millions(base.text_encoder_2):.1f} M, "
                    f"VAE {millions(base.vae):.1f} M")
            base.save_pretrained(str(folder / "sdxl-base"))
            refiner.save_pretrained(str(folder / "sdxl-refiner"))
            return note

        def svd_xt():
            pipe = svd()
            note = (f"UNet {millions(pipe.unet):.1f} M, image encoder {millions(pipe.image_encoder):.1f} M, "
                    f"VAE {millions(pipe.vae):.1f} M")
            pipe.save_pretrained(str(folder / "svd"))
            return note

        timed("sdxl-base", sdxl_pair)
        built["sdxl-refiner"] = (folder / "sdxl-refiner", 0.0, "built with sdxl-base")
        timed("svd", svd_xt)
        bark, whisper = full_size_voice("meta")
        bark_note = f"{millions(bark):.1f} M (suno/bark-small sizes)"
        whisper_note = f"{millions(whisper):.1f} M (large-v3 sizes), CTranslate2 float16"
        del bark, whisper
        timed("bark", lambda: (build_bark(folder / "bark", "small", device, dtype), bark_note)[1])
        timed("whisper", lambda: (build_whisper(folder / "whisper", "large-v3", device, dtype), whisper_note)[1])
    else:
        timed("sdxl-base", lambda: (tiny._build_tiny_sdxl(folder / "sdxl-base", refiner=False), "tiny")[1])
        timed("sdxl-refiner", lambda: (tiny._build_tiny_sdxl(folder / "sdxl-refiner", refiner=True), "tiny")[1])
        timed("svd", lambda: (tiny._build_tiny_svd(folder / "svd"), "tiny")[1])
        timed("bark", lambda: (build_bark(folder / "bark", "tiny"), "tiny")[1])
        timed("whisper", lambda: (build_whisper(folder / "whisper", "tiny"), "tiny")[1])
    return built


# -- the profile ---------------------------------------------------------------------------------

def story_sentences(story: Path) -> list[str]:
    from faceless.tasks.stages.plan import normalise_story, split_sentences

    return split_sentences(normalise_story(story.read_text(encoding="utf-8")))


def write_profile(path: Path, full: bool, built: dict, story: Path, speech_seconds: float) -> dict:
    """studio.yaml (tiny.yaml at toy size) with every model spec replaced by its folder."""
    import yaml

    source = ROOT / "tasks" / "profiles" / ("studio.yaml" if full else "tiny.yaml")
    profile = yaml.safe_load(source.read_text(encoding="utf-8"))
    profile["name"] = "gpu-check"
    profile["description"] = f"{source.name} with random-weight model folders (benchmarks/gpu_check.py)"
    for section, key, family in MODEL_SETTINGS:
        profile[section][key] = str(built[family][0])
    if full:
        # Random weights never stop by themselves: give each Bark piece a real voice's length
        # and Whisper a real transcript's (about 1.5 tokens a word, plus timestamps).
        words = sum(len(s.split()) for s in story_sentences(story))
        profile["narrate"]["semantic_max_new_tokens"] = round(speech_seconds * BARK_TOKENS_PER_S)
        profile["align"]["max_new_tokens"] = min(440, 2 * words + 8)
    path.write_text(yaml.safe_dump(profile, sort_keys=False), encoding="utf-8")
    from faceless.tasks.settings import load_profile

    return load_profile(str(path))  # resolved, as the render will see it


# -- the renders -----------------------------------------------------------------------------------

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
    started = time.perf_counter()
    try:
        from faceless.flows.story_to_video import story_to_video

        result["video"] = story_to_video(story_file=str(args.story), profile_file=str(args.profile), out=str(args.out))
        result["completed"], result["error"] = True, None
    except BaseException as error:  # the render's own failure is the measurement
        text = str(error).strip()
        result["completed"], result["error"] = False, f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"
    result["seconds"] = time.perf_counter() - started
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
    result["settings"] = manifest.get("settings", {})
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
    shots = result.get("scenes") or []
    if shots:
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
    _free()
    return rate


def work_section(tflops: float) -> None:
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
    plan, timing = gpu_work.piper_timing(gpu_work.NIGHT_TRAIN, studio)
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


def budget_section(profile: dict, story: Path, speech_seconds: float, tflops: float, full: bool) -> None:
    import gpu_work
    from faceless.tasks.stages.plan import plan_story

    # The random voice speaks `speech_seconds` a sentence: the storyboard's shots and the
    # window plan of those times, as the render will make them.
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
    shots = gpu_work.after_shots(plan, timing, profile)
    windows = sum(shot["windows"] for shot in shots)
    seconds = timing["duration"]
    work = gpu_work.gpu_work(len(shots), windows, profile)
    compute = work["pflop"] * 1000 / tflops
    build, per_pass = (90.0, 100.0) if full else (10.0, 60.0)
    total = build + 2 * (compute + per_pass)
    print()
    if not full:
        print(f"time budget (estimate, toy size on this CPU): ~{build:.0f} s building, ~{per_pass:.0f} s a render "
              f"({len(plan['sentences'])} sentences, {len(shots)} shot(s)), ~{(build + 2 * per_pass) / 60:.1f} min in all; "
              "toy sizes say nothing about a GPU")
        return
    print(f"time budget (estimate): the render story has {len(plan['sentences'])} sentences, about {seconds:.1f} s of "
          f"narration, {len(shots)} shot(s), {windows} SVD window(s):")
    print(f"  {work['pflop']:.1f} PFLOP a pass = {compute:.0f} s at {tflops:.0f} TFLOPS; + ~{per_pass:.0f} s a pass of "
          f"start-up, loading, voice and encoding; + ~{build:.0f} s building: ~{total / 60:.1f} min "
          f"(limit {BUDGET_S / 60:.0f} min)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--toy", action="store_true", help="run at toy size on the CPU (tiny models and settings)")
    parser.add_argument("--story", type=Path, default=STORY, help="story to render (default: a two-sentence story)")
    parser.add_argument("--scratch", type=Path, help="folder for the models and renders (kept; default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary scratch folder")
    parser.add_argument("--cap-gib", type=float, default=CAP_GIB, help="GPU memory cap of the second render (GiB)")
    parser.add_argument("--speech-seconds", type=float, default=1.5,
                        help="length of each random Bark piece (default 1.5: random Bark never stops by itself; "
                             "real speech is 3-6 s a sentence)")
    parser.add_argument("--pass-timeout", type=float, default=420, help="seconds a render may take (default 420)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--profile", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)

    import torch

    if not args.toy and not torch.cuda.is_available():
        print(NO_CUDA)
        return 0
    started = time.perf_counter()
    full = not args.toy
    _quiet()
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
    work_section(tflops)

    scratch = (args.scratch or Path(tempfile.mkdtemp(prefix="gpu-check-"))).resolve()
    scratch.mkdir(parents=True, exist_ok=True)
    story = args.story.resolve()
    try:
        print()
        print(f"building {'full-size' if full else 'toy'} models with random weights in {scratch / 'models'} ...")
        build_started = time.perf_counter()
        built = build_models(scratch / "models", full)
        build_seconds = time.perf_counter() - build_started
        for family, (folder, seconds, note) in built.items():
            print(f"  {family:<13}{seconds:7.1f} s  {_folder_gib(folder):6.2f} GiB on disk  {note}")
        print(f"build: {build_seconds:.1f} s")
        profile = write_profile(scratch / "profile.yaml", full, built, story, args.speech_seconds)
        capped = ", ".join(f"{k} {profile[s][k]}" for s, k in (("narrate", "semantic_max_new_tokens"),
                                                                ("align", "max_new_tokens")) if profile[s].get(k) is not None)
        print(f"profile: {scratch / 'profile.yaml'} ({profile['description']}; random-weight caps: {capped})")
        budget_section(profile, story, args.speech_seconds if full else 1.2, tflops, full)
        if full:
            print(f"this process keeps {torch.cuda.memory_reserved() / 2**30:.2f} GiB of GPU memory reserved "
                  "during the renders (plus its CUDA context)")

        first = run_pass(scratch / "pass-1", scratch / "profile.yaml", story, None, args.pass_timeout)
        print_pass(f"pass 1: {story.name}, no memory cap", first, show_ladder=False)
        if full:
            title = f"pass 2: fresh process and store, GPU memory capped at {args.cap_gib:g} GiB"
            second = run_pass(scratch / "pass-2", scratch / "profile.yaml", story, args.cap_gib, args.pass_timeout)
        else:
            print()
            print("pass 2: the memory cap is CUDA-only (torch.cuda.set_per_process_memory_fraction); "
                  "rendering again uncapped in a fresh process and store")
            title = "pass 2: fresh process and store, no cap (CPU)"
            second = run_pass(scratch / "pass-2", scratch / "profile.yaml", story, None, args.pass_timeout)
        print_pass(title, second, show_ladder=True)
        degraded = [r for r in second.get("stages", []) if r.get("degraded") or (r.get("attempts") or 1) > 1]
        print(f"pass 2 {'completed' if second.get('completed') else 'did not complete'}; "
              f"{len(degraded)} stage(s) retried or degraded")
    finally:
        if args.scratch or args.keep:
            print(f"kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    print()
    print(f"total: {time.perf_counter() - started:.1f} s (build {build_seconds:.1f} s)")
    return 0 if first.get("completed") else 1


if __name__ == "__main__":
    sys.exit(main())
