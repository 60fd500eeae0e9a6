"""Tiny random-weight twins of the real models: the published architectures (configs/) shrunk
in width and depth, built deterministically through the same pipeline classes on first use into
``$FACELESS_HOME/models/``, then loaded exactly like real weights (the offline and tiny profiles)."""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

from faceless.tasks.models.registry import quiet_libraries
from faceless.tasks.runtime import store

CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
TINY_VERSION = 2  # 2: the real CLIP vocabulary. Bump when a recipe here changes, so old builds are not reused


def _full_config(name: str) -> dict:
    return json.loads((CONFIGS_DIR / f"{name}.json").read_text(encoding="utf-8"))


def published(name: str) -> dict:
    """The published config `configs/<name>.json`, without its `_` keys (the class name)."""
    return {k: v for k, v in _full_config(name).items() if not k.startswith("_")}


def _shrunk(name: str, **overrides) -> dict:
    """A published architecture with widths and depths shrunk: same blocks, tiny tensors."""
    config = {k: v for k, v in _full_config(name).items() if not k.startswith("_")}
    config.update(overrides)
    return config


# -- CLIP's tokenizer, offline: the real vocabulary, shipped with tasks/text/prompts.py ----------

def _write_tokenizer(directory: Path) -> int:
    from faceless.tasks.text.prompts import write_clip_tokenizer_files

    write_clip_tokenizer_files(directory)
    return len(json.loads((directory / "vocab.json").read_text(encoding="utf-8")))


def _load_tokenizer(directory: Path):
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(directory), model_max_length=77)


def _text_config(name: str, vocab_size: int, tokenizer) -> dict:
    return _shrunk(
        name, vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, projection_dim=32, max_position_embeddings=77,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
    )


# -- tiny builders -------------------------------------------------------------------------------

def _build_tiny_sdxl(directory: Path, refiner: bool) -> None:
    import torch
    from diffusers import (AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLImg2ImgPipeline,
                           StableDiffusionXLPipeline, UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    quiet_libraries()
    vocab_size = _write_tokenizer(directory / "_tokenizer")
    tokenizer = _load_tokenizer(directory / "_tokenizer")
    torch.manual_seed(0)
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**_text_config("sdxl-text-encoder-2", vocab_size, tokenizer)))
    vae = AutoencoderKL(**_shrunk("sdxl-vae", block_out_channels=[8, 16, 32, 32], layers_per_block=1, norm_num_groups=8, force_upcast=False))
    scheduler = EulerDiscreteScheduler.from_config(_full_config("sdxl-scheduler"))
    time_embed = 8
    if refiner:
        torch.manual_seed(2)
        unet = UNet2DConditionModel(**_shrunk(
            "sdxl-refiner-unet", block_out_channels=[32, 32, 64, 64], attention_head_dim=[2, 2, 4, 4],
            transformer_layers_per_block=1, layers_per_block=1, cross_attention_dim=32, norm_num_groups=8,
            addition_time_embed_dim=time_embed, projection_class_embeddings_input_dim=5 * time_embed + 32,
        ))
        pipe = StableDiffusionXLImg2ImgPipeline(
            vae=vae, text_encoder=None, text_encoder_2=text_encoder_2, tokenizer=None, tokenizer_2=tokenizer,
            unet=unet, scheduler=scheduler, requires_aesthetics_score=True, force_zeros_for_empty_prompt=False,
        )
    else:
        torch.manual_seed(1)
        text_encoder = CLIPTextModel(CLIPTextConfig(**_text_config("sdxl-text-encoder", vocab_size, tokenizer)))
        unet = UNet2DConditionModel(**_shrunk(
            "sdxl-base-unet", block_out_channels=[32, 64, 64], attention_head_dim=[2, 4, 4],
            transformer_layers_per_block=[1, 1, 1], layers_per_block=1, cross_attention_dim=64, norm_num_groups=8,
            addition_time_embed_dim=time_embed, projection_class_embeddings_input_dim=6 * time_embed + 32,
        ))
        pipe = StableDiffusionXLPipeline(
            vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
            tokenizer_2=tokenizer, unet=unet, scheduler=scheduler,
        )
    pipe.save_pretrained(str(directory))
    shutil.rmtree(directory / "_tokenizer")


def _build_tiny_svd(directory: Path) -> None:
    import torch
    from diffusers import (AutoencoderKLTemporalDecoder, EulerDiscreteScheduler, StableVideoDiffusionPipeline,
                           UNetSpatioTemporalConditionModel)
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    quiet_libraries()
    torch.manual_seed(3)
    unet = UNetSpatioTemporalConditionModel(**_shrunk(
        "svd-xt-unet", block_out_channels=[32, 64, 64, 64], num_attention_heads=[2, 4, 4, 4],
        layers_per_block=1, cross_attention_dim=32, addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=3 * 8,
    ))
    vae = AutoencoderKLTemporalDecoder(**_shrunk("svd-xt-vae", block_out_channels=[32, 32, 32, 32], layers_per_block=1))
    # The pipeline resizes the conditioning image to 224 for the image encoder: keep 224.
    image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**_shrunk(
        "svd-xt-image-encoder", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, projection_dim=32, image_size=224,
    )))
    pipe = StableVideoDiffusionPipeline(
        vae=vae, image_encoder=image_encoder, unet=unet,
        scheduler=EulerDiscreteScheduler.from_config(_full_config("svd-xt-scheduler")),
        feature_extractor=CLIPImageProcessor(crop_size=224, size={"shortest_edge": 224}),
    )
    pipe.save_pretrained(str(directory))


# -- SDXL's IP-Adapter, at any size: the tiny twin here, the full size in benchmarks/gpu_models.py --

# The tiny twin's image encoder: a small picture size, as diffusers makes the adapter's
# CLIPImageProcessor at the encoder's own.
TINY_IP_ADAPTER_ENCODER = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                           "num_attention_heads": 2, "projection_dim": 32, "image_size": 64, "patch_size": 16}
IP_ADAPTER_TOKENS = 4  # image tokens of h94's SDXL adapter (diffusers' ImageProjection for "proj.weight")


def ip_adapter_weights(unet, embed_dim: int, device=None, dtype=None) -> dict:
    """The adapter's weights for `unet`, random, in h94/IP-Adapter's layout: `image_proj` (the
    image embedding, `embed_dim` wide, to 4 tokens of the UNet's cross-attention width) and,
    for each cross-attention of the UNet, `to_k_ip`/`to_v_ip` under the odd numbers diffusers'
    loader counts them by (1, 3, 5, ...: the original's index among all attention processors).
    `unet` may be on the meta device (only its config and shapes are read)."""
    import torch

    width = unet.config.cross_attention_dim

    def rand(*shape):
        return torch.randn(*shape, device=device, dtype=dtype) * 0.05

    def const(value, n):
        return torch.full((n,), float(value), device=device, dtype=dtype)

    tensors = {"image_proj.proj.weight": rand(IP_ADAPTER_TOKENS * width, embed_dim),
               "image_proj.proj.bias": const(0, IP_ADAPTER_TOKENS * width),
               "image_proj.norm.weight": const(1, width), "image_proj.norm.bias": const(0, width)}
    key_id = 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):  # self-attention: no adapter weights
            continue
        hidden = unet.get_submodule(name.removesuffix(".processor")).to_q.weight.shape[0]
        for projection in ("to_k_ip", "to_v_ip"):
            tensors[f"ip_adapter.{key_id}.{projection}.weight"] = rand(hidden, width)
        key_id += 2
    return tensors


def ip_adapter_parts(unet, encoder_config: dict, device: str = "cpu", dtype=None, seed: int = 4):
    """(image encoder, adapter weights) of an SDXL IP-Adapter for `unet` with random weights,
    made on `device` in `dtype` (None: fp32): a CLIPVisionModelWithProjection of
    `encoder_config` (its `projection_dim` is the adapter's image embedding) and
    ip_adapter_weights. On the meta device it gives the shapes only (the counts)."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    with torch.device(device):
        encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**encoder_config))
    encoder = encoder.to(device=device, dtype=dtype).eval() if dtype else encoder.eval()
    return encoder, ip_adapter_weights(unet, encoder.config.projection_dim, device, dtype)


def build_ip_adapter(directory: Path, unet, encoder_config: dict, device: str = "cpu", dtype=None) -> dict:
    """An SDXL IP-Adapter for `unet` saved in h94/IP-Adapter's layout (what
    `load_ip_adapter(folder, subfolder="sdxl_models", weight_name=...)` reads): the image
    encoder in sdxl_models/image_encoder, the adapter's weights in
    sdxl_models/ip-adapter_sdxl.safetensors. Returns the parameter counts
    ({"image_encoder": n, "adapter": n})."""
    from safetensors.torch import save_file

    encoder, tensors = ip_adapter_parts(unet, encoder_config, device, dtype)
    encoder.save_pretrained(str(directory / "sdxl_models" / "image_encoder"))
    counts = {"image_encoder": sum(p.numel() for p in encoder.parameters()),
              "adapter": sum(t.numel() for t in tensors.values())}
    del encoder
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(directory / "sdxl_models" / "ip-adapter_sdxl.safetensors"))
    return counts


def _build_tiny_ip_adapter(directory: Path) -> None:
    """The tiny twin (`tiny:ip-adapter-sdxl`): build_ip_adapter for the tiny SDXL base's UNet."""
    from diffusers import UNet2DConditionModel

    quiet_libraries()
    unet = UNet2DConditionModel.from_pretrained(str(ensure_tiny("sdxl-base") / "unet"))
    build_ip_adapter(directory, unet, TINY_IP_ADAPTER_ENCODER)


# name -> (builder, the file a finished folder has, recipe version): `tiny:<name>` in a profile.
# The backends that keep their twin in their own module (tasks/backends/, their TINY_MODELS)
# are added by tiny_models().
_BUILT_HERE = {
    "sdxl-base": (lambda d: _build_tiny_sdxl(d, refiner=False), "model_index.json", TINY_VERSION),
    "sdxl-refiner": (lambda d: _build_tiny_sdxl(d, refiner=True), "model_index.json", TINY_VERSION),
    "svd": (_build_tiny_svd, "model_index.json", TINY_VERSION),
    "ip-adapter-sdxl": (_build_tiny_ip_adapter, "sdxl_models/ip-adapter_sdxl.safetensors", 1),
}


@functools.cache
def tiny_models() -> dict:
    """Every tiny twin a profile may name: those built here and those the backends declare
    (read when first asked: the backends' modules load the models package themselves)."""
    from faceless.tasks.backends import base as backends

    found = dict(_BUILT_HERE)
    for name in backends.REGISTRY:
        found.update(getattr(backends.get(name), "TINY_MODELS", {}))
    return found


def tiny_version(name: str) -> int:
    models = tiny_models()
    if name not in models:
        raise ValueError(f"unknown tiny model {name!r} (known: {', '.join(sorted(models))})")
    return models[name][2]


def ensure_tiny(name: str) -> Path:
    """Build a tiny model once (atomically, like an artifact) and return its directory."""
    version = tiny_version(name)  # refuses an unknown name
    build, marker, _ = tiny_models()[name]
    return store.build_folder_once(store.models_dir() / f"tiny-{name}-v{version}", marker, build)
