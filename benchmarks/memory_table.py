"""Regenerate tasks/runtime/memory_table.json: what each GPU backend's components weigh.

    .venv/bin/python benchmarks/memory_table.py [--check]

Every component of every GPU backend is built at its full published size on PyTorch's meta
device (shapes only: no memory, no weights, a few seconds on a CPU) from the configs in
tasks/models/configs/ (the same files as ../shared/model-configs/ for SDXL and SVD), and the
table records, per component:

- `parameters`, and `bytes_per_parameter` in the dtype the loaders put it on a GPU in (fp16
  for studio's models, bf16 for FLUX/Wan/LTX, fp32 for Wan's VAE, which its model card keeps
  in fp32, and for the SDXL VAE, which decodes upcast to fp32);
- what diffusers' block-level group offload keeps on the GPU: `unmatched_parameters` (the
  top-level children that are not a ModuleList/Sequential, plus direct parameters: one group,
  onloaded whole) and `largest_block_parameters` (the largest entry of any top-level
  ModuleList/Sequential; with streams the next block is prefetched, so two sit there);
- `largest_leaf_parameters`: the largest module holding parameters directly, what sequential
  (leaf) offload keeps on the GPU at once.

Activation peaks are not in the table: tasks/runtime/memory_plan.py estimates them
analytically at the profile's size (docs/gpu-memory.md says how). `--check` exits 1 when the
table on disk differs from a fresh count (the configs changed and nobody regenerated it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "tasks" / "runtime" / "memory_table.json"
CONFIGS = ROOT / "tasks" / "models" / "configs"

FP16, BF16, FP32 = 2, 2, 4


def _config(name: str) -> dict:
    data = json.loads((CONFIGS / f"{name}.json").read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if not k.startswith("_")}


def structure(module) -> dict:
    """The counts the plan needs from one module built on the meta device."""
    import torch

    def count(m) -> int:
        return sum(p.numel() for p in m.parameters())  # parameters() skips tied repeats

    in_blocks: set[int] = set()
    largest_block = 0
    for child in module.children():
        if isinstance(child, (torch.nn.ModuleList, torch.nn.Sequential)):
            largest_block = max([largest_block, *(count(block) for block in child)])
            in_blocks.update(id(p) for p in child.parameters())
    unmatched = sum(p.numel() for p in module.parameters() if id(p) not in in_blocks)
    largest_leaf = max(sum(p.numel() for p in m.parameters(recurse=False)) for m in module.modules())
    return {"parameters": count(module), "unmatched_parameters": unmatched,
            "largest_block_parameters": largest_block, "largest_leaf_parameters": largest_leaf}


def components() -> dict[str, dict[str, tuple]]:
    """{backend: {component: (module on meta, bytes per parameter, role)}}; roles: encoder,
    denoiser, vae, model (a voice or recogniser that is one piece)."""
    import torch
    from diffusers import (AutoencoderKL, AutoencoderKLTemporalDecoder, FluxTransformer2DModel,
                           UNet2DConditionModel, UNetSpatioTemporalConditionModel)
    from transformers import (CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPVisionConfig,
                              CLIPVisionModelWithProjection, T5Config, T5EncoderModel)

    from faceless.tasks.models.modern_tiny import full_size_models
    from faceless.tasks.models.tiny_voice import bark_config, whisper_config

    with torch.device("meta"):
        from transformers import BarkModel, Qwen2Config, Qwen2ForCausalLM, WhisperForConditionalGeneration

        sdxl = {
            "text_encoder": (CLIPTextModel(CLIPTextConfig(**_config("sdxl-text-encoder"))), FP16, "encoder"),
            "text_encoder_2": (CLIPTextModelWithProjection(CLIPTextConfig(**_config("sdxl-text-encoder-2"))), FP16,
                               "encoder"),
            "unet": (UNet2DConditionModel(**_config("sdxl-base-unet")), FP16, "denoiser"),
            "refiner_unet": (UNet2DConditionModel(**_config("sdxl-refiner-unet")), FP16, "denoiser"),
            "vae": (AutoencoderKL(**_config("sdxl-vae")), FP32, "vae"),  # force_upcast: decodes in fp32
        }
        svd = {
            "image_encoder": (CLIPVisionModelWithProjection(CLIPVisionConfig(**_config("svd-xt-image-encoder"))),
                              FP16, "encoder"),
            "unet": (UNetSpatioTemporalConditionModel(**_config("svd-xt-unet")), FP16, "denoiser"),
            "vae": (AutoencoderKLTemporalDecoder(**_config("svd-xt-vae")), FP16, "vae"),
        }
        flux = {
            "text_encoder": (CLIPTextModel(CLIPTextConfig(**_config("flux-schnell-text-encoder"))), BF16, "encoder"),
            "text_encoder_2": (T5EncoderModel(T5Config(**_config("flux-schnell-text-encoder-2"))), BF16, "encoder"),
            "transformer": (FluxTransformer2DModel(**_config("flux-schnell-transformer")), BF16, "denoiser"),
            "vae": (AutoencoderKL(**_config("flux-schnell-vae")), BF16, "vae"),
        }
        voices = {
            "bark": {"model": (BarkModel(bark_config("small")), FP16, "model")},
            "faster-whisper": {"model": (WhisperForConditionalGeneration(whisper_config("large-v3")[0]), FP16,
                                         "model")},
            # The shot writer: Qwen2.5-3B-Instruct (Qwen3-4B is larger; a profile naming it is
            # planned as this, see docs/gpu-memory.md).
            "shot-writer": {"model": (Qwen2ForCausalLM(Qwen2Config(**_config("qwen2.5-3b-instruct"))), BF16,
                                      "model")},
        }
    wan, ltx = full_size_models("wan"), full_size_models("ltx")
    return {
        "sdxl-ensemble": sdxl,
        "svd": svd,
        "flux-schnell": flux,
        "wan": {"text_encoder": (wan["text_encoder"], BF16, "encoder"),
                "transformer": (wan["transformer"], BF16, "denoiser"),
                "vae": (wan["vae"], FP32, "vae")},
        "ltx": {"text_encoder": (ltx["text_encoder"], BF16, "encoder"),
                "transformer": (ltx["transformer"], BF16, "denoiser"),
                "vae": (ltx["vae"], BF16, "vae")},
        **voices,
        # Kokoro-82M in fp32, counted on a CPU (its constructor loads a weights file: not on meta).
        "kokoro": {"model": (kokoro_model(), FP32, "model")},
    }


def kokoro_model():
    from faceless.tasks.models.kokoro_tiny import full_config, random_model

    return random_model(full_config())


def table() -> dict:
    backends = {}
    for backend, parts in components().items():
        backends[backend] = {
            name: {"role": role, "bytes_per_parameter": size,
                   **(module if isinstance(module, dict) else structure(module))}
            for name, (module, size, role) in parts.items()
        }
    return {"_about": "Generated by benchmarks/memory_table.py from tasks/models/configs/ on the meta device; "
                      "do not edit by hand.", "backends": backends}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the table on disk is out of date")
    args = parser.parse_args(argv)
    fresh = table()
    text = json.dumps(fresh, indent=1, sort_keys=True) + "\n"
    if args.check:
        same = TABLE.is_file() and json.loads(TABLE.read_text(encoding="utf-8")) == fresh
        print(f"{TABLE.relative_to(ROOT)}: {'up to date' if same else 'OUT OF DATE: run benchmarks/memory_table.py'}")
        return 0 if same else 1
    TABLE.write_text(text, encoding="utf-8")
    for backend, parts in fresh["backends"].items():
        gib = sum(p["parameters"] * p["bytes_per_parameter"] for p in parts.values()) / 2**30
        print(f"{backend:14s} {gib:6.2f} GiB  " + ", ".join(
            f"{name} {p['parameters'] / 1e6:.1f} M" for name, p in parts.items()))
    print(f"wrote {TABLE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
