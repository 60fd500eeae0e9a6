"""GPU work of a render, counted from the published architectures: TFLOP per denoising step,
SDXL and SVD steps, and the old (chained windows per scene) versus new (one window per shot)
design for a story.

Per-step figures are counted, not assumed: each UNet is built from its published config in
tasks/models/configs/ on PyTorch's meta device (shapes only, no memory, no weights) and one
forward pass at the profile's size runs under `torch.utils.flop_counter.FlopCounterMode`,
which adds up 2 x multiply-accumulates of every matrix product and convolution, attention
included (element-wise work is not counted; it is a few per cent). Classifier-free guidance
runs the UNet on a batch of two (SDXL when guidance_scale > 1; the SVD pipeline always, its
max_guidance_scale is 3). Known figures at the published sizes, with guidance: SDXL base
13.4 TFLOP a step at 1024x1024, refiner 14.3, SVD-XT 160 at 576x1024 with 25 frames; the
counts here come out at 13.5, 14.6 and 159.9.

    from benchmarks.gpu_work import step_tflop, gpu_work, legacy_windows, piper_timing, before_after
"""

from __future__ import annotations

import functools
import json
import math
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CONFIGS = ROOT / "tasks" / "models" / "configs"
NIGHT_TRAIN = ROOT / "benchmarks" / "stories" / "night-train.txt"

# Published per-step figures (with classifier-free guidance), for comparison.
KNOWN_TFLOP = {"sdxl_base": (13.4, 1024, 1024), "sdxl_refiner": (14.3, 1024, 1024), "svd": (160.0, 576, 1024, 25)}



def _config(name: str) -> dict:
    data = json.loads((CONFIGS / f"{name}.json").read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if not k.startswith("_")}


@functools.lru_cache(maxsize=None)
def unet_tflop(model: str, width: int, height: int, num_frames: int = 0, batch: int = 2) -> float:
    """TFLOP of one forward pass of a published UNet (`sdxl-base-unet`, `sdxl-refiner-unet`,
    `svd-xt-unet`) on `batch` latents for a `width` x `height` picture, counted on the meta device."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from diffusers import UNet2DConditionModel, UNetSpatioTemporalConditionModel

    config = _config(model)
    dtype = torch.float16
    h, w = height // 8, width // 8
    with torch.device("meta"):
        if model == "svd-xt-unet":
            # .to("meta"): a few mixing factors are made with the legacy torch.Tensor([...])
            # constructor, which ignores the default device.
            unet = UNetSpatioTemporalConditionModel(**config).to(device="meta", dtype=dtype)
            inputs = dict(sample=torch.empty(batch, num_frames, config["in_channels"], h, w, dtype=dtype),
                          timestep=torch.empty(batch), encoder_hidden_states=torch.empty(
                              batch, 1, config["cross_attention_dim"], dtype=dtype),
                          added_time_ids=torch.empty(batch, 3, dtype=dtype))
        else:
            unet = UNet2DConditionModel(**config).to(device="meta", dtype=dtype)
            time_ids = 6 if config["projection_class_embeddings_input_dim"] == 2816 else 5  # base / refiner
            pooled = config["projection_class_embeddings_input_dim"] - time_ids * config["addition_time_embed_dim"]
            inputs = dict(sample=torch.empty(batch, config["in_channels"], h, w, dtype=dtype), timestep=torch.empty(batch),
                          encoder_hidden_states=torch.empty(batch, 77, config["cross_attention_dim"], dtype=dtype),
                          added_cond_kwargs={"text_embeds": torch.empty(batch, pooled, dtype=dtype),
                                             "time_ids": torch.empty(batch, time_ids, dtype=dtype)})
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            unet(**inputs)
    return counter.get_total_flops() / 1e12


def step_tflop(profile: dict) -> dict:
    """TFLOP of one denoising step of each model at the profile's keyframe and animate settings
    (with classifier-free guidance where the profile's settings use it)."""
    keyframe, animate = profile["keyframe"], profile["animate"]
    sdxl_batch = 2 if keyframe["guidance_scale"] > 1 else 1
    svd_batch = 2  # SVD's max_guidance_scale (diffusers' 3.0, not a profile setting) > 1: guided
    return {
        "sdxl_base": unet_tflop("sdxl-base-unet", keyframe["width"], keyframe["height"], batch=sdxl_batch),
        "sdxl_refiner": unet_tflop("sdxl-refiner-unet", keyframe["width"], keyframe["height"], batch=sdxl_batch),
        "svd": unet_tflop("svd-xt-unet", animate["width"], animate["height"], animate["num_frames"], batch=svd_batch),
        "keyframe_size": f"{keyframe['width']}x{keyframe['height']}",
        "animate_size": f"{animate['width']}x{animate['height']}x{animate['num_frames']}",
    }


def known_tflop() -> dict:
    """Counted TFLOP per step at the published sizes (the KNOWN_TFLOP settings), with the known figure."""
    counted = {
        "sdxl_base": unet_tflop("sdxl-base-unet", 1024, 1024),
        "sdxl_refiner": unet_tflop("sdxl-refiner-unet", 1024, 1024),
        "svd": unet_tflop("svd-xt-unet", 576, 1024, 25),
    }
    return {name: (counted[name], KNOWN_TFLOP[name][0]) for name in counted}


def gpu_work(n_keyframes: int, svd_windows_total: int, profile: dict) -> dict:
    """Denoising steps and PFLOP of `n_keyframes` SDXL keyframes and `svd_windows_total` SVD windows."""
    keyframe, animate = profile["keyframe"], profile["animate"]
    steps = int(keyframe["num_inference_steps"])
    base_steps = round(steps * keyframe["high_noise_frac"])  # 100 at 0.8: 80 + 20
    per_step = step_tflop(profile)
    svd_steps = svd_windows_total * int(animate["num_inference_steps"])
    sdxl_tflop = n_keyframes * (base_steps * per_step["sdxl_base"] + (steps - base_steps) * per_step["sdxl_refiner"])
    svd_tflop = svd_steps * per_step["svd"]
    return {
        "keyframes": n_keyframes,
        "sdxl_steps": n_keyframes * steps,
        "sdxl_base_steps": n_keyframes * base_steps,
        "sdxl_refiner_steps": n_keyframes * (steps - base_steps),
        "svd_windows": svd_windows_total,
        "svd_steps": svd_steps,
        "sdxl_pflop": sdxl_tflop / 1000,
        "svd_pflop": svd_tflop / 1000,
        "pflop": (sdxl_tflop + svd_tflop) / 1000,
    }


def legacy_windows(scene_seconds: float, fps_conditioning: int = 24, num_frames: int = 25) -> int:
    """SVD windows of the old design: a scene covered by chained windows of `num_frames` at
    `fps_conditioning`, each window after the first adding num_frames - 1 new frames."""
    needed = math.ceil(scene_seconds * fps_conditioning) + 1
    return 1 + max(0, math.ceil((needed - num_frames) / (num_frames - 1)))


# -- the story: the old design's scenes and the new design's shots ----------------------------

def piper_timing(story_file: Path = NIGHT_TRAIN, profile: dict | None = None) -> tuple[dict, dict]:
    """The story's plan and its word times, from the offline Piper narration (what a render's
    narrate stage writes to words.json): about 0.2x real time on a CPU."""
    from faceless.tasks.runtime import store
    from faceless.tasks.backends import voices
    from faceless.tasks.stages.narrate import narrate as speak
    from faceless.tasks.stages.plan import plan_story
    from faceless.tasks.settings import load_profile

    plan = plan_story(Path(story_file).read_text(encoding="utf-8"), (profile or load_profile("studio"))["plan"]).to_dict()
    with tempfile.TemporaryDirectory(prefix="gpu-work-piper-") as folder:
        # The offline profile's voice for the story's language (Piper's joe for English).
        speak(plan["sentences"], voices.choose(load_profile("offline")["narrate"], plan["language"]), Path(folder))
        timing = store.read_json(Path(folder) / "words.json")
    return plan, timing


def _tiles(starts: list[float], duration: float) -> list[float]:
    # As the flow's timeline: each part lasts from its start to the next one's (the pause
    # after a sentence belongs to it), the first from 0, the last to the narration's end.
    starts = [0.0] + starts[1:]
    return [max(0.0, end - start) for start, end in zip(starts, starts[1:] + [duration])]


def before_scenes(timing: dict, sentences_per_scene: int = 2) -> list[float]:
    """Scene lengths in seconds of the old design: consecutive sentences grouped by two."""
    return _tiles([s["start"] for s in timing["sentences"][::sentences_per_scene]], timing["duration"])


def after_shots(plan: dict, timing: dict, profile: dict) -> list[dict]:
    """The new design's shots, as a render makes them: the storyboard's cuts on the word times,
    the flow's timeline (clip frames with their fades) and animate's window plan."""
    from faceless.tasks.stages.timeline import shot_timeline
    from faceless.tasks.backends.svd import window_plan
    from faceless.tasks.backends.wan import native_frame_count
    from faceless.tasks.stages.storyboard import storyboard

    shots = storyboard(plan, timing, profile["plan"])
    fps = profile["compose"]["fps"]
    timeline = shot_timeline([s.start for s in shots], timing["duration"], profile["compose"])
    result = []
    for shot, frames in zip(shots, timeline.clip_frames):
        row = {"sentences": shot.sentences, "seconds": shot.end - shot.start, "frames": frames}
        if profile["animate"]["backend"] == "svd":
            windows, fps_conditioning = window_plan(frames / fps, profile["animate"])
            row.update(windows=windows, fps_conditioning=fps_conditioning)
        else:  # wan: one pass at the output rate, of the next 4k+1 frame count (tasks/backends/wan.py)
            row.update(windows=1, fps_conditioning=None, native_frames=native_frame_count(frames))
        result.append(row)
    return result


def before_after(profile: dict, plan: dict, timing: dict) -> dict:
    """The old and the new design's GPU work for one story at `profile`'s settings."""
    scenes = before_scenes(timing)
    before_windows = sum(legacy_windows(s, 24, profile["animate"]["num_frames"]) for s in scenes)
    shots = after_shots(plan, timing, profile)
    before = gpu_work(len(scenes), before_windows, profile)
    after = gpu_work(len(shots), sum(s["windows"] for s in shots), profile)
    return {"before": before, "after": after, "scenes": scenes, "shots": shots, "duration": timing["duration"],
            "sentences": len(timing["sentences"]), "svd_step_ratio": after["svd_steps"] / max(1, before["svd_steps"])}


def table(result: dict, tflops: float | None = None) -> list[str]:
    """The before/after table as lines of text; with `tflops` (effective), estimated GPU minutes."""
    before, after = result["before"], result["after"]
    rows = [
        ("keyframes (SDXL base + refiner)", before["keyframes"], after["keyframes"], "d"),
        ("SDXL steps (base + refiner)", f"{before['sdxl_steps']} ({before['sdxl_base_steps']}+{before['sdxl_refiner_steps']})",
         f"{after['sdxl_steps']} ({after['sdxl_base_steps']}+{after['sdxl_refiner_steps']})", "s"),
        ("SVD-XT windows", before["svd_windows"], after["svd_windows"], "d"),
        ("SVD-XT steps", before["svd_steps"], after["svd_steps"], "d"),
        ("estimated PFLOP (SDXL + SVD)", f"{before['pflop']:.1f} ({before['sdxl_pflop']:.1f}+{before['svd_pflop']:.1f})",
         f"{after['pflop']:.1f} ({after['sdxl_pflop']:.1f}+{after['svd_pflop']:.1f})", "s"),
    ]
    if tflops:
        rows.append((f"est. GPU minutes at {tflops:.0f} TFLOPS", f"{before['pflop'] * 1000 / tflops / 60:.1f}",
                     f"{after['pflop'] * 1000 / tflops / 60:.1f}", "s"))
    lines = [f"{'':<36}{'BEFORE':>22}{'AFTER':>22}"]
    for label, b, a, _ in rows:
        lines.append(f"{label:<36}{str(b):>22}{str(a):>22}")
    lines.append(f"{'SVD steps after / before':<36}{result['svd_step_ratio']:>44.3f}")
    return lines
