"""GPU work of a story at `studio` and `modern` settings, side by side: FLOP counts from the
published architectures, not timings.

Counted as benchmarks/gpu_work.py counts SDXL and SVD-XT (which it reuses): each denoiser is
built from its published config on PyTorch's meta device and one forward pass at the profile's
size runs under `torch.utils.flop_counter.FlopCounterMode` (matrix products and convolutions,
attention included; element-wise work is not counted). FLUX.1-schnell runs without guidance
(one transformer pass a step, its T5 sequence padded to `max_sequence_length`); Wan 2.2 TI2V-5B
with guidance (two) on a pass of the next 4k+1 frames that covers each shot's clip
(benchmarks/wan_work.py counts its transformer, UMT5 encoder and VAE). The shots are the real
storyboard's and the flow's timeline's for each profile's own `plan` settings, on one narration
(the offline Piper voice's word times: neither Bark nor Kokoro runs without weights).

Not counted, for either profile: the voices (Bark, Whisper, Kokoro: autoregressive or small,
minutes of GPU work at most a fraction of a per cent of the pictures'), the CLIP encoders and the
picture VAEs of SDXL, SVD and FLUX (a few per cent). Wan's UMT5-XXL encoder and its video VAE
are counted on their own row: the VAE decode of a 121-frame 720p clip is not small.

    from modern_work import side_by_side, side_by_side_table
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import gpu_work  # noqa: E402


@functools.lru_cache(maxsize=None)
def flux_step_tflop(width: int, height: int, text_tokens: int = 256, batch: int = 1) -> float:
    """TFLOP of one FLUX.1-schnell transformer pass for a `width` x `height` picture."""
    import torch
    from diffusers import FluxTransformer2DModel
    from torch.utils.flop_counter import FlopCounterMode

    from faceless.tasks.models.flux_tiny import full_config

    config = full_config("transformer")
    tokens = (height // 16) * (width // 16)  # 8x VAE, then 2x2 latent patches
    dtype = torch.bfloat16
    with torch.device("meta"):
        model = FluxTransformer2DModel(**config).to(device="meta", dtype=dtype)
        inputs = dict(hidden_states=torch.empty(batch, tokens, config["in_channels"], dtype=dtype),
                      encoder_hidden_states=torch.empty(batch, text_tokens, config["joint_attention_dim"], dtype=dtype),
                      pooled_projections=torch.empty(batch, config["pooled_projection_dim"], dtype=dtype),
                      timestep=torch.empty(batch, dtype=dtype), img_ids=torch.zeros(tokens, 3),
                      txt_ids=torch.zeros(text_tokens, 3), return_dict=False)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(**inputs)
    return counter.get_total_flops() / 1e12


def _through_three(count, x: int) -> float:
    """count(x) from count(1), count(2), count(3): the quadratic through them (Lagrange)."""
    y1, y2, y3 = count(1), count(2), count(3)
    return y1 * (x - 2) * (x - 3) / 2 - y2 * (x - 1) * (x - 3) + y3 * (x - 1) * (x - 2) / 2


def wan_pass(width: int, height: int, frames: int, steps: int, guided: bool = True) -> dict:
    """TFLOP of one Wan 2.2 TI2V pass of `frames` (4k+1): a transformer step, and the UMT5
    encoder plus the VAE's first-frame encode and whole-clip decode.

    A count on the meta device costs seconds whatever the size (the VAE's grows with the
    frames), and a story has a dozen frame counts. The work is exactly quadratic in latent
    frames for the transformer (its projections are linear in tokens, self-attention
    quadratic; the text is always 512 tokens) and linear for the VAE's frame-by-frame decode:
    so each is counted at 1, 2 and 3 latent frames (1, 5, 9 frames) and taken from the
    quadratic through them. Checked against direct counts at 49, 121 and 145 frames
    (704x1280): equal to 12 significant digits (tests/test_gpu_check.py checks one)."""
    from wan_work import text_encoder_tflop, transformer_tflop, vae_tflop

    batch = 2 if guided else 1
    latent = (frames - 1) // 4 + 1
    step = _through_three(lambda t: transformer_tflop(width, height, 4 * t - 3, batch=batch), latent)
    decode = _through_three(lambda t: vae_tflop(width, height, 4 * t - 3)[1], latent)
    text, encode = text_encoder_tflop(prompts=batch), vae_tflop(width, height, 1)[0]
    # The parts on their own too: benchmarks/story_work.py counts the text encoder once a run.
    return {"step_tflop": step, "steps": steps, "extra_tflop": text + encode + decode, "text_tflop": text,
            "vae_encode_tflop": encode, "vae_decode_tflop": decode}


def modern_work(shots: list[dict], profile: dict) -> dict:
    """Steps and PFLOP of FLUX keyframes and Wan passes for `shots` (gpu_work.after_shots rows)."""
    keyframe, animate = profile["keyframe"], profile["animate"]
    flux_step = flux_step_tflop(keyframe["width"], keyframe["height"], keyframe.get("max_sequence_length", 256),
                                batch=2 if keyframe.get("guidance_scale", 0.0) > 1 else 1)
    flux_steps = len(shots) * int(keyframe["num_inference_steps"])
    passes = [wan_pass(animate["width"], animate["height"], s["native_frames"], int(animate["num_inference_steps"]),
                       animate["guidance_scale"] > 1) for s in shots]
    wan_denoise = sum(p["steps"] * p["step_tflop"] for p in passes) / 1000
    wan_extra = sum(p["extra_tflop"] for p in passes) / 1000
    keyframe_pflop = flux_steps * flux_step / 1000
    return {"shots": len(shots), "keyframe_step_tflop": [flux_step], "keyframe_steps": flux_steps,
            "keyframe_pflop": keyframe_pflop, "animate_step_tflop": [p["step_tflop"] for p in passes],
            "animate_steps": sum(p["steps"] for p in passes), "animate_pflop": wan_denoise, "extra_pflop": wan_extra,
            "native_frames": [s["native_frames"] for s in shots], "pflop": keyframe_pflop + wan_denoise + wan_extra}


def studio_work(shots: list[dict], profile: dict) -> dict:
    """The same rows for SDXL base + refiner keyframes and SVD-XT windows (gpu_work's counts)."""
    work = gpu_work.gpu_work(len(shots), sum(s["windows"] for s in shots), profile)
    step = gpu_work.step_tflop(profile)
    return {"shots": len(shots), "keyframe_step_tflop": [step["sdxl_base"], step["sdxl_refiner"]],
            "keyframe_steps": work["sdxl_steps"], "keyframe_steps_split": (work["sdxl_base_steps"], work["sdxl_refiner_steps"]),
            "keyframe_pflop": work["sdxl_pflop"], "animate_step_tflop": [step["svd"]], "animate_steps": work["svd_steps"],
            "animate_pflop": work["svd_pflop"], "extra_pflop": 0.0, "windows": work["svd_windows"], "pflop": work["pflop"]}


def story_work(profile: dict, plan: dict, timing: dict) -> tuple[list[dict], dict]:
    """(shots, work) of one story at `profile`'s settings, by its animate backend."""
    shots = gpu_work.after_shots(plan, timing, profile)
    return shots, (studio_work if profile["animate"]["backend"] == "svd" else modern_work)(shots, profile)


def side_by_side(story: Path = gpu_work.NIGHT_TRAIN, studio: dict | None = None, modern: dict | None = None,
                 narration: tuple[dict, dict] | None = None) -> dict:
    """The story's shots and GPU work at studio and at modern settings, on one narration
    (`narration`: gpu_work.piper_timing's (plan, timing) for the story at studio settings, if made already)."""
    from faceless.tasks.settings import load_profile
    from faceless.tasks.stages.plan import plan_story

    studio = studio or load_profile("studio")
    modern = modern or load_profile("modern")
    plan, timing = narration or gpu_work.piper_timing(story, studio)
    modern_plan = plan_story(Path(story).read_text(encoding="utf-8"), modern["plan"]).to_dict()
    result = {"duration": timing["duration"], "sentences": len(timing["sentences"])}
    for name, profile, story_plan in (("studio", studio, plan), ("modern", modern, modern_plan)):
        shots, work = story_work(profile, story_plan, timing)
        result[name] = {"shots": shots, "work": work}
    result["ratio"] = result["modern"]["work"]["pflop"] / result["studio"]["work"]["pflop"]
    return result


def _span(values, fmt: str = ".1f") -> str:
    low, high = min(values), max(values)
    return format(low, fmt) if abs(high - low) < 1e-9 else f"{format(low, fmt)}-{format(high, fmt)}"


def side_by_side_table(result: dict, tflops: float | None = None) -> list[tuple[str, str, str]]:
    """(row, studio, modern) cells of the side-by-side table."""
    studio, modern = result["studio"], result["modern"]
    s, m = studio["work"], modern["work"]
    base_steps, refiner_steps = s["keyframe_steps_split"]
    rows = [
        ("shots", f"{s['shots']} ({_span([x['seconds'] for x in studio['shots']])} s)",
         f"{m['shots']} ({_span([x['seconds'] for x in modern['shots']])} s)"),
        ("keyframe TFLOP a step", f"SDXL base {s['keyframe_step_tflop'][0]:.1f}, refiner {s['keyframe_step_tflop'][1]:.1f}",
         f"FLUX.1-schnell {m['keyframe_step_tflop'][0]:.1f}"),
        ("keyframe steps", f"{s['keyframe_steps']:,} ({base_steps:,} + {refiner_steps:,})", f"{m['keyframe_steps']:,}"),
        ("keyframe PFLOP", f"{s['keyframe_pflop']:.1f}", f"{m['keyframe_pflop']:.1f}"),
        ("animate TFLOP a step", f"SVD-XT {s['animate_step_tflop'][0]:.1f} (25 frames)",
         f"Wan 2.2 {_span(m['animate_step_tflop'])} ({_span(m['native_frames'], 'd')} frames)"),
        ("animate windows / passes", f"{s['windows']} SVD windows of 25 frames, then interpolated",
         f"{m['shots']} Wan passes at 24 fps ({sum(m['native_frames']):,} frames)"),
        ("animate steps", f"{s['animate_steps']:,}", f"{m['animate_steps']:,}"),
        ("animate PFLOP", f"{s['animate_pflop']:.1f}", f"{m['animate_pflop']:.1f}"),
        ("Wan UMT5 encoder + VAE PFLOP", "-", f"{m['extra_pflop']:.1f}"),
        ("total PFLOP", f"{s['pflop']:.1f}", f"{m['pflop']:.1f}"),
        ("modern / studio", "1", f"{result['ratio']:.2f}x"),
    ]
    if tflops:
        rows.append((f"GPU minutes at {tflops:.0f} TFLOPS", f"{s['pflop'] * 1000 / tflops / 60:.1f}",
                     f"{m['pflop'] * 1000 / tflops / 60:.1f}"))
    return rows


def table_lines(rows: list[tuple[str, str, str]]) -> list[str]:
    width = max(len(r[1]) for r in rows) + 2
    lines = [f"{'':<30}{'studio':<{width}}modern"]
    lines += [f"{label:<30}{studio:<{width}}{modern}" for label, studio, modern in rows]
    return lines


def markdown(rows: list[tuple[str, str, str]]) -> list[str]:
    """The same table in Markdown, for benchmarks/README.md."""
    lines = ["| 60 s story (FLOP counts, not timings) | studio | modern |", "|---|---|---|"]
    return lines + [f"| {label} | {studio} | {modern} |" for label, studio, modern in rows]


if __name__ == "__main__":
    from faceless.tasks.models import registry

    registry.quiet_libraries()
    side = side_by_side()
    print(f"{gpu_work.NIGHT_TRAIN.name}: {side['sentences']} sentences, {side['duration']:.1f} s of Piper narration")
    for line in table_lines(side_by_side_table(side, 0.4 * 990)):
        print(line)
    print()
    print("\n".join(markdown(side_by_side_table(side, 0.4 * 990))))
