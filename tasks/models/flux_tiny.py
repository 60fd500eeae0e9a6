"""FLUX.1-schnell: its published architecture sizes, and a tiny random-weight twin.

The twin is built with the same diffusers and transformers classes as the real model
(FluxTransformer2DModel, AutoencoderKL with FLUX's 16-channel latent, a CLIP text model for
the pooled embedding, a T5 encoder for the sequence) and saved with `save_pretrained`, so
`FluxPipeline.from_pretrained(folder)` loads it exactly as it loads the hub's folder. Widths
and depths are shrunk; everything the pipeline's arithmetic depends on is kept: the VAE's 8x
downsampling (sizes multiple of 16 after 2x2 packing), the 16 latent channels (64 after
packing), RoPE axes that add up to the head width, the scheduler's config, CLIP's 77-token
context and T5's vocabulary size (32128).

Tokenizers are made offline. CLIP's is the real one (vocabulary from the open_clip_torch
wheel, tasks/text/prompts.py). T5's real SentencePiece model is not available without the
hub, so the twin gets a Unigram tokenizer of T5's shape (<pad>=0, </s>=1, <unk>=2, 32,000
pieces, 100 sentinels, `</s>` appended) whose pieces are CLIP's English words and word pieces:
a story prompt splits into about as many tokens as with T5's own vocabulary (not exactly).

The full-size configs (tasks/models/configs/flux-schnell-*.json) are the published ones; they
serve `full_size_parameters` (counted on the meta device, no memory) and the GPU check.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
REPO_ID = "black-forest-labs/FLUX.1-schnell"
COMPONENTS = ("transformer", "vae", "text-encoder", "text-encoder-2", "scheduler")

# T5's SentencePiece vocabulary has 32,000 pieces (specials included) and 100 sentinels;
# the embedding has 32,128 rows.
T5_PIECES = 32000
T5_EXTRA_IDS = 100
T5_VOCAB_ROWS = 32128
T5_MODEL_MAX_LENGTH = 512


def full_config(component: str) -> dict:
    """The published config of one FLUX.1-schnell component, without `_` keys."""
    if component not in COMPONENTS:
        raise ValueError(f"unknown FLUX component {component!r} (known: {', '.join(COMPONENTS)})")
    raw = json.loads((CONFIGS_DIR / f"flux-schnell-{component}.json").read_text(encoding="utf-8"))
    return {k: v for k, v in raw.items() if not k.startswith("_")}


def full_size_parameters(component: str = "transformer") -> int:
    """Parameters of a full-size component, built on the meta device (no memory, ~1 s)."""
    import torch

    config = full_config(component)
    with torch.device("meta"):
        if component == "transformer":
            from diffusers import FluxTransformer2DModel

            model = FluxTransformer2DModel(**config)
        elif component == "vae":
            from diffusers import AutoencoderKL

            model = AutoencoderKL(**config)
        elif component == "text-encoder":
            from transformers import CLIPTextConfig, CLIPTextModel

            model = CLIPTextModel(CLIPTextConfig(**config))
        elif component == "text-encoder-2":
            from transformers import T5Config, T5EncoderModel

            model = T5EncoderModel(T5Config(**config))
        else:
            raise ValueError(f"{component} has no parameters")
    return sum(p.numel() for p in model.parameters())


# -- T5-shaped tokenizer, offline -------------------------------------------------------------

def _clip_pieces() -> list[str]:
    """CLIP's vocabulary in merge order (most frequent first) as SentencePiece-style pieces:
    a word-final CLIP token `cat</w>` gives `▁cat` (a whole word) and `cat` (a word's end);
    any other token gives `▁cat` (a word's start) and `cat` (its middle)."""
    from faceless.tasks.text.prompts import write_clip_tokenizer_files

    with tempfile.TemporaryDirectory() as tmp:
        write_clip_tokenizer_files(Path(tmp))
        vocab = json.loads((Path(tmp) / "vocab.json").read_text(encoding="utf-8"))
    pieces: dict[str, None] = {}
    for token in sorted(vocab, key=vocab.get):
        body = token.removesuffix("</w>")
        if not body or not body.isascii() or not body.isprintable() or " " in body or body.startswith("<|"):
            continue
        pieces.setdefault("▁" + body)
        pieces.setdefault(body)
    return list(pieces)


def t5_vocabulary() -> list[tuple[str, float]]:
    """(piece, score) in T5's layout: <pad>, </s>, <unk>, then 31,997 pieces. Every printable
    ASCII character is a piece (alone and after ▁), so no English text maps to <unk>; longer
    pieces score higher per piece, so Viterbi picks few, long pieces."""
    specials = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    chars = [chr(c) for c in range(0x21, 0x7F)]
    base = ["▁"] + ["▁" + c for c in chars] + chars
    seen = set(base)
    pieces = [(p, -20.0) for p in base]
    for rank, piece in enumerate(_clip_pieces()):
        if len(specials) + len(pieces) >= T5_PIECES:
            break
        if piece not in seen:
            seen.add(piece)
            pieces.append((piece, -10.0 - rank * 1e-5))
    return specials + pieces


def write_t5_tokenizer(directory: Path):
    """Save a T5-shaped tokenizer (tokenizer.json and its config) into `directory`."""
    from transformers import T5TokenizerFast

    tokenizer = T5TokenizerFast(vocab=t5_vocabulary(), extra_ids=T5_EXTRA_IDS,
                                model_max_length=T5_MODEL_MAX_LENGTH)
    tokenizer.save_pretrained(str(directory))
    return tokenizer


# -- the tiny twin ----------------------------------------------------------------------------

def tiny_configs(clip_vocab_size: int, clip_bos: int, clip_eos: int) -> dict[str, dict]:
    """Each component's published config with widths and depths shrunk."""
    hidden = 32  # CLIP width = pooled projection; T5 width = joint attention width
    return {
        "transformer": {**full_config("transformer"), "num_layers": 1, "num_single_layers": 1,
                        "attention_head_dim": 16, "axes_dims_rope": [4, 6, 6], "num_attention_heads": 2,
                        "joint_attention_dim": hidden, "pooled_projection_dim": hidden},
        "vae": {**full_config("vae"), "block_out_channels": [8, 16, 32, 32], "layers_per_block": 1,
                "norm_num_groups": 8, "sample_size": 64},
        "text-encoder": {**full_config("text-encoder"), "vocab_size": clip_vocab_size, "hidden_size": hidden,
                         "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                         "projection_dim": hidden, "bos_token_id": clip_bos, "eos_token_id": clip_eos,
                         "pad_token_id": clip_eos},
        "text-encoder-2": {**full_config("text-encoder-2"), "d_model": hidden, "d_ff": 64, "d_kv": 8,
                           "num_heads": 4, "num_layers": 2, "num_decoder_layers": 2},
    }


def build_tiny_flux(directory: Path) -> None:
    """Build the tiny FLUX.1-schnell twin, deterministically, and save it into `directory`
    (model_index.json, scheduler/, text_encoder/, text_encoder_2/, tokenizer/, tokenizer_2/,
    transformer/, vae/): about 2 s and 14 MB."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel

    from faceless.tasks.text.prompts import write_clip_tokenizer_files

    directory = Path(directory)
    work = directory / "_tokenizers"
    write_clip_tokenizer_files(work / "clip")
    clip_tokenizer = CLIPTokenizer.from_pretrained(str(work / "clip"), model_max_length=77)
    t5_tokenizer = write_t5_tokenizer(work / "t5")
    configs = tiny_configs(len(clip_tokenizer), clip_tokenizer.bos_token_id, clip_tokenizer.eos_token_id)

    torch.manual_seed(10)
    text_encoder = CLIPTextModel(CLIPTextConfig(**configs["text-encoder"]))
    torch.manual_seed(11)
    text_encoder_2 = T5EncoderModel(T5Config(**configs["text-encoder-2"]))
    torch.manual_seed(12)
    transformer = FluxTransformer2DModel(**configs["transformer"])
    torch.manual_seed(13)
    vae = AutoencoderKL(**configs["vae"])
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler.from_config(full_config("scheduler")),
        vae=vae, text_encoder=text_encoder, tokenizer=clip_tokenizer,
        text_encoder_2=text_encoder_2, tokenizer_2=t5_tokenizer, transformer=transformer,
    )
    pipe.save_pretrained(str(directory))
    shutil.rmtree(work)
