"""Wan 2.2 TI2V-5B: its published architecture, and a tiny random-weight twin built offline.

The full-size configs are in ``configs/wan22-ti2v-5b-*.json``, as published with
Wan-AI/Wan2.2-TI2V-5B-Diffusers (the transformer's as diffusers' own conversion script
writes it for "Wan2.2-TI2V-5B"; the 2.2 VAE's as in the published ``vae/config.json``;
the UniPC flow scheduler with ``flow_shift`` 5.0 as that script builds it; UMT5-XXL's
encoder as in ``text_encoder/config.json``). The published folder is a ``WanPipeline``
with ``expand_timesteps: true``: the same folder loads as ``WanImageToVideoPipeline``,
which then denoises every latent frame but the first (the picture) and gives each token
its own timestep (0 for the picture's). The tiny twin is saved the same way, so loading
it goes through the very code path the real weights take.

Tiny twin: the same classes and block structure with widths and depths shrunk (the 2.2
VAE keeps its 48 latent channels, 2x2 patching, 16x spatial and 4x temporal compression,
so frame-count and size rules are the real ones). Its tokenizer is a T5 (Unigram,
SentencePiece-style) tokenizer over single characters, made offline: UMT5's own
vocabulary (256,384 pieces) is not on the package index, so token counts differ from
the real model's. Weights are random: frames look like noise.

The tokenizer, the published-config reader and the parameter count serve the other
native-pass backends' twins too (each in its own module, tasks/backends/).

    build_tiny_wan(directory)        # a folder WanImageToVideoPipeline.from_pretrained loads
    full_size_parameters()           # {component: parameters}, counted on the meta device
"""

from __future__ import annotations

import json
import os
import string
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
# The recipe's version (a change of the recipe below bumps it) is the backend's: tasks/backends/wan.py.
WAN_CONFIGS = "wan22-ti2v-5b"
# Published size: the transformer's parameters as the model is named.
WAN_PUBLISHED_TRANSFORMER_PARAMS = 5.0e9


def published_config(prefix: str, part: str) -> dict:
    """The published config `configs/<prefix>-<part>.json` (part: `transformer`, `vae`,
    `scheduler`, `text-encoder`, and `model-index` for Wan). Keys starting with `_` (the class
    name) are dropped."""
    data = json.loads((CONFIGS_DIR / f"{prefix}-{part}.json").read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if not k.startswith("_")}


def wan_config(part: str) -> dict:
    return published_config(WAN_CONFIGS, part)


def _shrunk(part: str, **overrides) -> dict:
    config = wan_config(part)
    config.update(overrides)
    return config


# -- tokenizer, offline --------------------------------------------------------------------

# T5's special ids (<pad> 0, </s> 1, <unk> 2), then the word-start marker and single characters.
_SPECIALS = ["<pad>", "</s>", "<unk>"]
_WORD_START = "\u2581"


def tiny_t5_tokenizer(model_max_length: int = 512):
    """A T5 tokenizer (what the Wan pipeline and its kind call: padding to max_length, attention
    mask) whose pieces are single characters, with and without the word-start marker."""
    from transformers import T5TokenizerFast

    chars = sorted(set(string.ascii_letters + string.digits + string.punctuation))
    pieces = [(token, 0.0) for token in _SPECIALS] + [(_WORD_START, -2.0)]
    pieces += [(_WORD_START + c, -2.5) for c in chars] + [(c, -3.0) for c in chars]
    return T5TokenizerFast(vocab=pieces, extra_ids=0, model_max_length=model_max_length)


# -- the tiny pipeline -----------------------------------------------------------------------

TINY_TEXT = dict(d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4)
TINY_TRANSFORMER = dict(num_attention_heads=2, attention_head_dim=12, ffn_dim=64, num_layers=2)
TINY_VAE = dict(base_dim=8, decoder_base_dim=8, dim_mult=[1, 1, 1, 1], num_res_blocks=1)


def build_tiny_wan(directory: Path) -> Path:
    """Build the tiny Wan 2.2 TI2V twin and save it to `directory` (as the published folder:
    a WanPipeline with expand_timesteps). Deterministic: the same seeds give the same weights."""
    import torch
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    directory = Path(directory)
    tokenizer = tiny_t5_tokenizer()
    torch.manual_seed(11)
    text_encoder = UMT5EncoderModel(UMT5Config(**_shrunk(
        "text-encoder", vocab_size=len(tokenizer), **TINY_TEXT)))
    torch.manual_seed(12)
    transformer = WanTransformer3DModel(**_shrunk(
        "transformer", text_dim=TINY_TEXT["d_model"], **TINY_TRANSFORMER))
    torch.manual_seed(13)
    vae = AutoencoderKLWan(**_shrunk("vae", **TINY_VAE))
    scheduler = UniPCMultistepScheduler(**wan_config("scheduler"))
    index = wan_config("model-index")
    pipe = WanPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=scheduler,
                       transformer=transformer, boundary_ratio=index["boundary_ratio"],
                       expand_timesteps=index["expand_timesteps"])
    pipe.save_pretrained(str(directory))
    return directory


# -- full size, on the meta device -------------------------------------------------------------

def full_size_models() -> dict:
    """The published transformer, VAE and text encoder built on PyTorch's meta device: shapes
    only, no memory, no weights."""
    import torch
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    with torch.device("meta"):
        return {
            "transformer": WanTransformer3DModel(**wan_config("transformer")),
            "vae": AutoencoderKLWan(**wan_config("vae")),
            "text_encoder": UMT5EncoderModel(UMT5Config(**wan_config("text-encoder"))),
        }


def count_parameters(module) -> int:
    return sum(p.numel() for p in module.parameters())


def full_size_parameters() -> dict[str, int]:
    """Parameters of each published component, counted on the meta device."""
    return {name: count_parameters(model) for name, model in full_size_models().items()}
