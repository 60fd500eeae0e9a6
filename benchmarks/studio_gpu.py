"""GPU benchmark of the studio profile's model stages: seconds per stage and peak GPU memory.

    .venv/bin/python benchmarks/studio_gpu.py [--story-seconds 60] [--size full|toy]

On a GPU (`--size full`, the default there) it builds the full-size published architectures
(SDXL base and refiner with their text encoders and VAE, SVD-XT) from the configs in
tasks/model_configs/ (copies of ../shared/model-configs/; `--configs` takes another folder)
with random weights in fp16: a step costs the same whatever the weights are, so this times
the real models without downloading them. It then runs the studio profile's keyframe and
animate settings through the same functions a render uses (tasks/keyframe.py,
tasks/animate.py) for a story of `--story-seconds` of narration, cut into scenes as the
studio plan would (two sentences, about 12 s, a scene), one model family on the GPU at a
time as in a studio render. The first scene is reported on its own ("one scene").

On a CPU it runs at toy size (the tiny profile's models and settings) so the script stays
tested; those numbers say nothing about a GPU.

Narration (Bark) and alignment (Whisper) are not timed here: their architectures are not
among the published configs this builds from, and they take seconds next to the minutes of
the picture stages.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Two sentences of about 6 s: what the studio plan makes of a typical story. The toy voice
# speaks ~1.2 s a sentence, so its scenes are shorter.
SCENE_SECONDS = {"full": 12.0, "toy": 3.0}


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _reset_peak(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _peak_gib(device: str) -> float | None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 2**30
    return None


def _config(folder: Path, name: str) -> dict:
    data = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if not k.startswith("_")}


def build_full_size(folder: Path, device: str, dtype):
    """The published SDXL base/refiner and SVD-XT architectures with random weights, built
    straight on the device (no 10 GB of fp32 weights through host memory)."""
    import torch
    from diffusers import (AutoencoderKL, AutoencoderKLTemporalDecoder, EulerDiscreteScheduler,
                           StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline, StableVideoDiffusionPipeline,
                           UNet2DConditionModel, UNetSpatioTemporalConditionModel)
    from transformers import (CLIPImageProcessor, CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection,
                              CLIPVisionConfig, CLIPVisionModelWithProjection)

    from tasks import models

    tokenizer_dir = Path(tempfile.mkdtemp(prefix="faceless-bench-tokenizer-"))
    models._write_tokenizer(tokenizer_dir)  # a byte-level CLIP tokenizer: ids fit the real 49408 vocabulary
    tokenizer = models._load_tokenizer(tokenizer_dir)

    def make(cls, *args, **kwargs):
        torch.manual_seed(0)
        with torch.device(device):
            module = cls(*args, **kwargs)
        return module.to(dtype).eval()

    def sdxl():
        text_encoder_2 = make(CLIPTextModelWithProjection, CLIPTextConfig(**_config(folder, "sdxl-text-encoder-2")))
        vae = make(AutoencoderKL, **_config(folder, "sdxl-vae"))
        if dtype == torch.float16:
            vae.register_to_config(force_upcast=True)  # as the real SDXL VAE: decode in fp32
        base = StableDiffusionXLPipeline(
            vae=vae, text_encoder=make(CLIPTextModel, CLIPTextConfig(**_config(folder, "sdxl-text-encoder"))),
            text_encoder_2=text_encoder_2, tokenizer=tokenizer, tokenizer_2=tokenizer,
            unet=make(UNet2DConditionModel, **_config(folder, "sdxl-base-unet")),
            scheduler=EulerDiscreteScheduler.from_config(_config(folder, "sdxl-scheduler")),
        )
        refiner = StableDiffusionXLImg2ImgPipeline(
            vae=vae, text_encoder=None, text_encoder_2=text_encoder_2, tokenizer=None, tokenizer_2=tokenizer,
            unet=make(UNet2DConditionModel, **_config(folder, "sdxl-refiner-unet")),
            scheduler=EulerDiscreteScheduler.from_config(_config(folder, "sdxl-scheduler")),
            requires_aesthetics_score=True,
        )
        for pipe in (base, refiner):
            pipe.set_progress_bar_config(disable=True)
        return base, refiner

    def svd():
        pipe = StableVideoDiffusionPipeline(
            vae=make(AutoencoderKLTemporalDecoder, **_config(folder, "svd-xt-vae")),
            image_encoder=make(CLIPVisionModelWithProjection, CLIPVisionConfig(**_config(folder, "svd-xt-image-encoder"))),
            unet=make(UNetSpatioTemporalConditionModel, **_config(folder, "svd-xt-unet")),
            scheduler=EulerDiscreteScheduler.from_config(_config(folder, "svd-xt-scheduler")),
            feature_extractor=CLIPImageProcessor(crop_size=224, size={"shortest_edge": 224}),
        )
        pipe.set_progress_bar_config(disable=True)
        return pipe

    return sdxl, svd


def build_toy():
    from tasks import models

    return (lambda: models._load_sdxl_ensemble("tiny:sdxl-base", "tiny:sdxl-refiner"),
            lambda: models._load_svd("tiny:svd"))


def main(argv: list[str] | None = None) -> int:
    import torch

    from tasks import models
    from tasks.animate import fit, generate
    from tasks.keyframe import base_then_refiner
    from tasks.profiles import load_profile

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=("full", "toy"), help="full on a GPU, toy on a CPU (default: by device)")
    parser.add_argument("--story-seconds", type=float, help="narration length (default: 60 full, 6 toy)")
    parser.add_argument("--configs", type=Path, default=ROOT / "tasks" / "model_configs",
                        help="folder of the published configs (default: tasks/model_configs)")
    args = parser.parse_args(argv)

    device = "cuda" if torch.cuda.is_available() else "cpu"
    size = args.size or ("full" if device == "cuda" else "toy")
    if size == "full" and device != "cuda":
        parser.error("full size needs a GPU (one full-size SDXL step at 1024x1024 takes ~50 s on a CPU)")
    story_seconds = args.story_seconds or (60.0 if size == "full" else 6.0)
    profile = load_profile("studio" if size == "full" else "tiny")
    keyframe_settings, animate_settings = profile["keyframe"], profile["animate"]
    out_fps = profile["compose"]["fps"]
    dtype = torch.float16 if device == "cuda" else torch.float32
    if device == "cpu":
        torch.set_flush_denormal(True)  # random weights make denormals that slow CPUs 2-3x
        os.environ.setdefault("FACELESS_HOME", tempfile.mkdtemp(prefix="faceless-bench-"))
    models._quiet_libraries()

    scenes = max(1, round(story_seconds / SCENE_SECONDS[size]))
    scene_frames = [round(story_seconds / scenes * out_fps)] * scenes
    sdxl, svd = build_full_size(args.configs, device, dtype) if size == "full" else build_toy()
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU ({os.cpu_count()} cores)"
    print(f"device: {name}; size: {size}; torch {torch.__version__}; {dtype}")
    print(f"story: {story_seconds:g} s of narration, {scenes} scenes of {scene_frames[0]} frames at {out_fps} fps")
    print(f"keyframe: {keyframe_settings['width']}x{keyframe_settings['height']}, "
          f"{keyframe_settings['num_inference_steps']} steps split at {keyframe_settings['high_noise_frac']}")
    print(f"animate: {animate_settings['width']}x{animate_settings['height']}, {animate_settings['num_frames']} frames "
          f"x {animate_settings['num_inference_steps']} steps a window, fps {animate_settings['fps']}, "
          f"motion {animate_settings['motion_bucket_id']}, decode_chunk_size {animate_settings['decode_chunk_size']}, "
          f"stretch {animate_settings['stretch']}")

    rows: list[tuple[str, float, float | None]] = []

    def timed(label: str, work):
        _reset_peak(device)
        started = time.perf_counter()
        result = work()
        _sync(device)
        rows.append((label, time.perf_counter() - started, _peak_gib(device)))
        return result

    base, refiner = timed("load sdxl base + refiner", sdxl)
    keyframes = []
    for index in range(scenes):
        image, _ = timed(f"keyframe scene {index}", lambda: base_then_refiner(
            base, refiner, f"scene {index}, {profile['plan']['style']}", profile["plan"]["negative_prompt"],
            index, keyframe_settings))
        keyframes.append(image)
    # As a studio render does: the SDXL pair leaves the GPU before SVD-XT loads.
    base = refiner = None  # drop our references so release() can free them
    models.release()
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    pipe = timed("load svd-xt", svd)
    windows = []
    for index, image in enumerate(keyframes):
        frames = timed(f"animate scene {index}", lambda: generate(
            pipe, fit(image, animate_settings["width"], animate_settings["height"]), animate_settings,
            scene_frames[index], out_fps, index))
        first_window = animate_settings["num_frames"]
        windows.append(1 + math.ceil(max(0, len(frames) - first_window) / (first_window - 1)))

    print()
    print(f"{'stage':<28}{'seconds':>10}{'peak GPU GiB':>14}")
    for label, seconds, peak in rows:
        print(f"{label:<28}{seconds:>10.2f}{(f'{peak:.2f}' if peak is not None else 'n/a'):>14}")
    seconds = {label: s for label, s, _ in rows}
    peaks = [p for _, _, p in rows if p is not None]
    one_scene = seconds["keyframe scene 0"] + seconds["animate scene 0"]
    keyframe_total = sum(s for label, s in seconds.items() if label.startswith("keyframe"))
    animate_total = sum(s for label, s in seconds.items() if label.startswith("animate"))
    print()
    print(f"one scene ({scene_frames[0] / out_fps:g} s, {windows[0]} SVD windows): "
          f"keyframe {seconds['keyframe scene 0']:.2f} s + animate {seconds['animate scene 0']:.2f} s = {one_scene:.2f} s")
    print(f"{story_seconds:g}-second story ({scenes} scenes, {sum(windows)} SVD windows): keyframes {keyframe_total:.2f} s, "
          f"animate {animate_total:.2f} s, model loads {seconds['load sdxl base + refiner'] + seconds['load svd-xt']:.2f} s, "
          f"total {sum(seconds.values()):.2f} s")
    if peaks:
        print(f"peak GPU memory: {max(peaks):.2f} GiB (torch.cuda.max_memory_allocated)")
    else:
        print(f"peak process memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB (no GPU)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
