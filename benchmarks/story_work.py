"""The whole GPU timeline of a story, per profile: PFLOP per stage and the minutes an H200
would take, counted from the published architectures (estimates, not timings).

    .venv/bin/python benchmarks/story_work.py [--story FILE] [--profiles studio,modern,modern-quality] [--json]

Counted as benchmarks/gpu_work.py, modern_work.py and wan_work.py count (and reusing them):
each model is built from its published config in tasks/models/configs/ on PyTorch's meta
device and one forward pass runs under `torch.utils.flop_counter.FlopCounterMode` (matrix
products and convolutions, attention included; element-wise work is not counted). The shots
are the storyboard's and the flow's timeline's for each profile's own `plan` settings, on one
narration (the offline Piper voice's word times: neither Bark nor Kokoro runs without weights).

Stages:

- text_encoders: every shot's prompt encoded in one batch per run, plus the one negative
  prompt where a model is guided (SDXL's CLIP-L and bigG, FLUX's CLIP-L and T5-XXL, Wan's
  UMT5-XXL, each at the length its pipeline pads to), and SVD's image encoder once a window.
  The encoders' work is linear in prompts: one prompt is counted and multiplied.
- keyframe: the keyframe model's steps (SDXL base + refiner, or FLUX.1-schnell) and its
  picture VAE's decode.
- denoise: the video model's steps (SVD-XT's, or Wan's: two passes a step with guidance, one
  without, as the profile's sampler runs).
- vae_decode: the video VAE: the conditioning frame's encode and the clip's decode (Wan's
  decode of a 121-frame 720p clip is about 2 PFLOP).

A step cache is not counted: what it skips depends on the real weights, so it is measured on
a GPU (`make gpu-check`), never assumed. The voices are not counted (a fraction of a per cent).
`h200_minutes_at_40pct` is the total at 40 % of an H200's 990 dense bf16 TFLOPS: an estimate.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import gpu_work  # noqa: E402
import modern_work  # noqa: E402

H200_TFLOPS = 990.0  # dense bf16/fp16, no sparsity
EFFICIENCY = 0.4  # what diffusion pipelines reach of that (30-50 % published)
PROFILES = ("studio", "modern", "modern-quality")
STAGES = ("text_encoders", "keyframe", "denoise", "vae_decode")


def _published(name: str) -> tuple[str, dict]:
    """(class name, config) of a published component in tasks/models/configs/."""
    data = json.loads((gpu_work.CONFIGS / f"{name}.json").read_text(encoding="utf-8"))
    return data["_class_name"], {k: v for k, v in data.items() if not k.startswith("_")}


@functools.lru_cache(maxsize=None)
def encoder_tflop(name: str, tokens: int) -> float:
    """TFLOP of one prompt (or one 224-px picture for a vision encoder) through a published
    transformers encoder: CLIP text or vision, or T5's encoder."""
    import torch
    import transformers
    from torch.utils.flop_counter import FlopCounterMode

    class_name, config = _published(name)
    model_class = getattr(transformers, class_name)
    with torch.device("meta"):
        model = model_class(model_class.config_class(**config)).to(device="meta", dtype=torch.bfloat16)
        if "Vision" in class_name:
            inputs = {"pixel_values": torch.empty(1, 3, config["image_size"], config["image_size"],
                                                  dtype=torch.bfloat16)}
        else:
            inputs = {"input_ids": torch.zeros(1, tokens, dtype=torch.long)}
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(**inputs)
    return counter.get_total_flops() / 1e12


@functools.lru_cache(maxsize=None)
def picture_vae_tflop(name: str, width: int, height: int, frames: int = 0) -> tuple[float, float]:
    """(encode one picture, decode the output) in TFLOP for a published picture VAE: SDXL's or
    FLUX's AutoencoderKL (decode one picture), or SVD's temporal decoder (decode `frames`)."""
    import diffusers
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    class_name, config = _published(name)
    channels = config["latent_channels"]
    with torch.device("meta"):
        vae = getattr(diffusers, class_name)(**config).to("meta")
        with torch.no_grad(), FlopCounterMode(display=False) as encode:
            vae.encode(torch.empty(1, 3, height, width))
        latent = torch.empty(max(1, frames), channels, height // 8, width // 8)
        with torch.no_grad(), FlopCounterMode(display=False) as decode:
            if frames:
                vae.decode(latent, num_frames=frames)
            else:
                vae.decode(latent)
    return encode.get_total_flops() / 1e12, decode.get_total_flops() / 1e12


def _guided(settings: dict) -> bool:
    return float(settings.get("guidance_scale", 0.0)) > 1


def studio_stages(shots: list[dict], work: dict, profile: dict) -> dict:
    """PFLOP per stage of SDXL base + refiner keyframes and SVD-XT windows."""
    keyframe, animate = profile["keyframe"], profile["animate"]
    prompts = len(shots) + _guided(keyframe)  # the refiner reuses the base's bigG embeddings
    text = prompts * (encoder_tflop("sdxl-text-encoder", 77) + encoder_tflop("sdxl-text-encoder-2", 77))
    windows = work["windows"]
    text += windows * encoder_tflop("svd-xt-image-encoder", 0)  # the window's conditioning picture
    _, picture_decode = picture_vae_tflop("sdxl-vae", keyframe["width"], keyframe["height"])
    encode, decode = picture_vae_tflop("svd-xt-vae", animate["width"], animate["height"], animate["num_frames"])
    return {"text_encoders": text / 1000, "keyframe": work["keyframe_pflop"] + len(shots) * picture_decode / 1000,
            "denoise": work["animate_pflop"], "vae_decode": windows * (encode + decode) / 1000}


def wan_stages(shots: list[dict], work: dict, profile: dict) -> dict:
    """PFLOP per stage of FLUX.1-schnell keyframes and one Wan 2.2 TI2V pass a shot."""
    from wan_work import text_encoder_tflop

    keyframe, animate = profile["keyframe"], profile["animate"]
    flux_prompts = len(shots) + _guided(keyframe)
    text = flux_prompts * (encoder_tflop("flux-schnell-text-encoder", 77)
                           + encoder_tflop("flux-schnell-text-encoder-2", int(keyframe["max_sequence_length"])))
    wan_prompts = len(shots) + _guided(animate)
    text += wan_prompts * text_encoder_tflop(prompts=1, tokens=int(animate["max_sequence_length"]))
    _, picture_decode = picture_vae_tflop("flux-schnell-vae", keyframe["width"], keyframe["height"])
    passes = [modern_work.wan_pass(animate["width"], animate["height"], s["native_frames"],
                                   int(animate["num_inference_steps"]), _guided(animate)) for s in shots]
    video_vae = sum(p["vae_encode_tflop"] + p["vae_decode_tflop"] for p in passes)
    return {"text_encoders": text / 1000, "keyframe": work["keyframe_pflop"] + len(shots) * picture_decode / 1000,
            "denoise": work["animate_pflop"], "vae_decode": video_vae / 1000}


def profile_work(profile: dict, plan: dict, timing: dict) -> dict:
    """One profile's row: its shots, PFLOP per stage, the total and the H200 estimate."""
    shots, work = modern_work.story_work(profile, plan, timing)
    animate = profile["animate"]
    stages = (studio_stages if animate["backend"] == "svd" else wan_stages)(shots, work, profile)
    total = sum(stages.values())
    return {"shots": len(shots), "shot_seconds": [round(s["seconds"], 2) for s in shots],
            "sampler": animate.get("sampler", "full"), "steps": int(animate["num_inference_steps"]),
            "guided": _guided(animate) or animate["backend"] == "svd",
            "step_cache_counted": False, "step_cache": animate.get("step_cache", "none"),
            "pflop": {stage: round(stages[stage], 3) for stage in STAGES}, "total_pflop": round(total, 3),
            "h200_minutes_at_40pct": round(minutes(total), 3)}


def minutes(pflop: float, tflops: float = H200_TFLOPS, efficiency: float = EFFICIENCY) -> float:
    return pflop * 1000 / (tflops * efficiency) / 60


def story_work(story: Path = gpu_work.NIGHT_TRAIN, names=PROFILES, narration: tuple[dict, dict] | None = None) -> dict:
    """Every profile in `names` on one narration of `story` (`narration`: gpu_work.piper_timing's
    (plan, timing) at studio settings, if made already)."""
    from faceless.tasks.settings import load_profile
    from faceless.tasks.stages.plan import plan_story

    plan, timing = narration or gpu_work.piper_timing(story, load_profile("studio"))
    text = Path(story).read_text(encoding="utf-8")
    result = {"story": Path(story).name, "narration_s": round(timing["duration"], 2),
              "sentences": len(timing["sentences"]), "estimate": f"FLOP counts at {EFFICIENCY:.0%} of an H200's "
              f"{H200_TFLOPS:.0f} TFLOPS; not a timing", "profiles": {}}
    for name in names:
        profile = load_profile(name)
        # Each profile cuts its own shots (its plan settings) from the same word times.
        result["profiles"][name] = profile_work(profile, plan_story(text, profile["plan"]).to_dict(), timing)
    return result


def table(result: dict) -> list[str]:
    names = list(result["profiles"])
    rows = [("shots", lambda r: str(r["shots"])), ("sampler", lambda r: f"{r['sampler']}, {r['steps']} steps")]
    rows += [(f"{stage} PFLOP", lambda r, s=stage: f"{r['pflop'][s]:.1f}") for stage in STAGES]
    rows += [("total PFLOP", lambda r: f"{r['total_pflop']:.1f}"),
             ("H200 minutes at 40 % (estimate)", lambda r: f"{r['h200_minutes_at_40pct']:.1f}")]
    lines = [f"{'':<34}" + "".join(f"{name:>20}" for name in names)]
    for label, cell in rows:
        lines.append(f"{label:<34}" + "".join(f"{cell(result['profiles'][name]):>20}" for name in names))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--story", type=Path, default=gpu_work.NIGHT_TRAIN, help="story file (default: night-train)")
    parser.add_argument("--profiles", default=",".join(PROFILES), help="comma-separated profile names")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    from faceless.tasks.models import registry

    registry.quiet_libraries()
    result = story_work(args.story, [n for n in args.profiles.split(",") if n])
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"{result['story']}: {result['sentences']} sentences, {result['narration_s']:.1f} s of narration; "
              f"{result['estimate']}")
        print("\n".join(table(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
