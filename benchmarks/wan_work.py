"""Wan 2.2 TI2V-5B's size and GPU work, counted from the published architectures, and the tiny
Wan twin's time on this CPU; the other native-pass backends' sizes and work next to it (each
counted by its own module, found through the registry).

Parameters and FLOPs are counted as benchmarks/gpu_work.py counts SDXL and SVD: each published
component is built from tasks/models/configs/wan22-ti2v-5b-*.json on PyTorch's meta device
(shapes only) and run once under `torch.utils.flop_counter.FlopCounterMode` (2 x multiply-
accumulates of every matrix product and convolution, attention included; element-wise work not
counted). Classifier-free guidance runs the transformer on a batch of two.

    .venv/bin/python benchmarks/wan_work.py            # counts at 704x1280x121 + tiny timings
    .venv/bin/python benchmarks/wan_work.py --no-tiny  # counts only
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT, ROOT / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


def _latent_shape(width: int, height: int, frames: int) -> tuple[int, int, int]:
    # VAE: 4x in time (first frame alone), 16x in space.
    return (frames - 1) // 4 + 1, height // 16, width // 16


@functools.lru_cache(maxsize=None)
def transformer_tflop(width: int, height: int, frames: int, batch: int = 2, text_tokens: int = 512) -> float:
    """TFLOP of one transformer forward on `batch` latents (one denoising step with guidance
    when batch is 2) for a `width` x `height` x `frames` clip."""
    import torch
    from diffusers import WanTransformer3DModel
    from torch.utils.flop_counter import FlopCounterMode

    from faceless.tasks.models.modern_tiny import wan_config

    config = wan_config("transformer")
    latent_frames, latent_h, latent_w = _latent_shape(width, height, frames)
    tokens = latent_frames * (latent_h // 2) * (latent_w // 2)  # 1x2x2 patches
    dtype = torch.bfloat16
    with torch.device("meta"):
        model = WanTransformer3DModel(**config).to(device="meta", dtype=dtype)
        inputs = dict(
            hidden_states=torch.empty(batch, config["in_channels"], latent_frames, latent_h, latent_w, dtype=dtype),
            timestep=torch.empty(batch, tokens),  # expand_timesteps: one timestep per token
            encoder_hidden_states=torch.empty(batch, text_tokens, config["text_dim"], dtype=dtype),
            return_dict=False,
        )
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(**inputs)
    return counter.get_total_flops() / 1e12


@functools.lru_cache(maxsize=None)
def text_encoder_tflop(prompts: int = 2, tokens: int = 512) -> float:
    """UMT5-XXL's encoder on `prompts` prompts of `tokens` (the prompt and the negative one)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import UMT5Config, UMT5EncoderModel

    from faceless.tasks.models.modern_tiny import wan_config

    with torch.device("meta"):
        model = UMT5EncoderModel(UMT5Config(**wan_config("text-encoder"))).to(device="meta", dtype=torch.bfloat16)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(prompts, tokens, dtype=torch.long))  # no mask: its shortcut reads values
    return counter.get_total_flops() / 1e12


@functools.lru_cache(maxsize=None)
def vae_tflop(width: int, height: int, frames: int) -> tuple[float, float]:
    """(encode the first frame, decode the whole clip) in TFLOP."""
    import torch
    from diffusers import AutoencoderKLWan
    from torch.utils.flop_counter import FlopCounterMode

    from faceless.tasks.models.modern_tiny import wan_config

    latent_frames, latent_h, latent_w = _latent_shape(width, height, frames)
    with torch.device("meta"):
        vae = AutoencoderKLWan(**wan_config("vae")).to("meta")
        with torch.no_grad(), FlopCounterMode(display=False) as encode:
            vae.encode(torch.empty(1, 3, 1, height, width))
        with torch.no_grad(), FlopCounterMode(display=False) as decode:
            vae.decode(torch.empty(1, 48, latent_frames, latent_h, latent_w), return_dict=False)
    return encode.get_total_flops() / 1e12, decode.get_total_flops() / 1e12


def shot_pflop(width: int = 704, height: int = 1280, frames: int = 121, steps: int = 50,
               guidance: bool = True) -> dict:
    """GPU work of one shot: text encoding, first-frame encode, `steps` transformer steps, decode."""
    step = transformer_tflop(width, height, frames, batch=2 if guidance else 1)
    text = text_encoder_tflop(prompts=2 if guidance else 1)
    encode, decode = vae_tflop(width, height, frames)
    total = text + encode + steps * step + decode
    return {"step_tflop": step, "text_tflop": text, "vae_encode_tflop": encode, "vae_decode_tflop": decode,
            "steps": steps, "pflop": total / 1000}


def story_animate_pflop(seconds: float = 60.0, shot_seconds: float = 4.0, fps: int = 24) -> dict:
    """Animate work of a story cut into equal shots: Wan (one 704x1280 pass per shot at `fps`,
    50 steps) next to studio's SVD-XT (one 25-frame 576x1024 window per shot, 40 steps, counted
    by benchmarks/gpu_work.py). Keyframes are not included."""
    import math

    from gpu_work import unet_tflop

    shots = math.ceil(seconds / shot_seconds)
    frames = round(shot_seconds * fps)
    wan_native = (frames - 1 + 3) // 4 * 4 + 1
    wan = shot_pflop(frames=wan_native)
    svd = 40 * unet_tflop("svd-xt-unet", 576, 1024, 25) / 1000
    return {"shots": shots, "frames": frames, "wan_native_frames": wan_native,
            "wan_pflop": shots * wan["pflop"], "svd_pflop": shots * svd}


def tiny_timings(sizes=((32, 64), (64, 128), (128, 256)), frames=(13, 25, 49, 97), steps: int = 4) -> list[dict]:
    """Seconds for one tiny-twin generation on this machine (load excluded), per size and count."""
    import torch
    from PIL import Image

    from faceless.tasks.backends import wan
    from faceless.tasks.models.modern_tiny import build_tiny_wan

    import diffusers  # noqa: F401  (imported before the clock starts: the build is timed, not the import)
    from diffusers import WanImageToVideoPipeline, WanPipeline  # noqa: F401

    torch.set_flush_denormal(True)
    with tempfile.TemporaryDirectory(prefix="wan-tiny-") as folder:
        started = time.perf_counter()
        build_tiny_wan(Path(folder))
        built = time.perf_counter() - started
        pipe = wan.load(folder)
        keyframe = Image.new("RGB", (90, 160), (200, 60, 40))
        rows = [{"build_s": built}]
        for width, height in sizes:
            for count in frames:
                settings = {"width": width, "height": height, "num_inference_steps": steps, "max_sequence_length": 64}
                started = time.perf_counter()
                clip = wan.generate(pipe, keyframe, "a red fox runs through snow", frames=count, fps=8,
                                    settings=settings, seed=1)
                rows.append({"size": f"{width}x{height}", "frames": len(clip.frames), "steps": steps,
                             "seconds": time.perf_counter() - started})
    return rows


def other_native_backends():
    """(name, module) of the registered animate backends besides Wan that count their own
    sizes and work (tasks/backends/base.py): printed next to Wan's for comparison."""
    from faceless.tasks.backends import base as backends

    for name in backends.names("animate"):
        backend = backends.get(name)
        if name != "wan" and hasattr(backend, "transformer_tflop"):
            yield name, backend


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-tiny", action="store_true", help="skip the tiny twin's CPU timings")
    args = parser.parse_args()

    from faceless.tasks.models.modern_tiny import full_size_parameters

    counts = full_size_parameters()
    for name, count in counts.items():
        print(f"parameters {name:<13} {count / 1e6:10.1f} M")
    # As wan.load puts them on a GPU: transformer and text encoder in bf16, the VAE in fp32.
    weights = (2 * (counts["transformer"] + counts["text_encoder"]) + 4 * counts["vae"]) / 2**30
    print(f"weights on a GPU: {weights:.1f} GiB (with model offload the largest resident part is the "
          f"text encoder, {2 * counts['text_encoder'] / 2**30:.1f} GiB, then the transformer, "
          f"{2 * counts['transformer'] / 2**30:.1f} GiB)")
    for frames in (121, 145):
        work = shot_pflop(frames=frames)
        print(f"704x1280x{frames}: {work['step_tflop']:.1f} TFLOP a step with guidance; text {work['text_tflop']:.1f}, "
              f"VAE encode {work['vae_encode_tflop']:.1f}, decode {work['vae_decode_tflop']:.1f} TFLOP; "
              f"{work['steps']} steps: {work['pflop']:.1f} PFLOP a shot")
    for name, backend in other_native_backends():  # the same counts, from each one's own module
        for part, count in backend.full_size_parameters().items():
            print(f"parameters {name} {part:<9} {count / 1e6:10.1f} M")
        for width, height, frames in backend.WORK_SIZES:
            print(f"{name} {width}x{height}x{frames}: {backend.transformer_tflop(width, height, frames):.1f} "
                  f"TFLOP a step with guidance")
    story = story_animate_pflop()
    print(f"60 s story, {story['shots']} shots of {story['frames']} frames: animate {story['wan_pflop']:.0f} PFLOP "
          f"with Wan ({story['wan_native_frames']} frames a pass) vs {story['svd_pflop']:.0f} PFLOP with SVD-XT "
          f"(one 25-frame window a shot, then interpolated)")
    if not args.no_tiny:
        for row in tiny_timings():
            print("tiny", row)


if __name__ == "__main__":
    main()
