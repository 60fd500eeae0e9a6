"""FLUX.2 [klein] 4B: its published architecture sizes, and a tiny random-weight twin.

The twin is built with the same diffusers and transformers classes as the real model
(Flux2Transformer2DModel, AutoencoderKLFlux2, a Qwen3ForCausalLM text encoder, the flow-match
Euler scheduler) into a Flux2KleinPipeline and saved with `save_pretrained`, so
`Flux2KleinPipeline.from_pretrained(folder)` loads it exactly as it loads the hub's folder.
Widths and depths are shrunk; what the pipeline's arithmetic depends on is kept: the VAE's 8x
downsampling and 2x2 patches (sizes multiple of 16), its 32 latent channels (the transformer's
128 input channels) and batch-norm statistics, RoPE's four axes adding up to the head width, the
scheduler's dynamic shifting, and a text encoder deep enough for the hidden states the pipeline
stacks (layers 9, 18 and 27, so `joint_attention_dim` is three times its width) .

Its tokenizer is the shot writer twin's (tasks/models/writer_tiny.py): byte-level, with Qwen's
chat tokens and template, which the pipeline applies to every prompt.

The full-size configs (tasks/models/configs/flux2-klein-4b-*.json) are the published ones; the
memory table and the GPU check build them (tasks/backends/flux2_klein.py `components`).
"""

from __future__ import annotations

from pathlib import Path

from faceless.tasks.models.tiny import published

OUT_LAYERS = (9, 18, 27)  # the hidden states the pipeline stacks (its `text_encoder_out_layers`)


def tiny_configs(vocab_size: int) -> dict[str, dict]:
    """Each component's published config with widths and depths shrunk."""
    hidden = 16
    return {
        "transformer": {**published("flux2-klein-4b-transformer"), "num_layers": 1, "num_single_layers": 1,
                        "attention_head_dim": 16, "num_attention_heads": 2, "axes_dims_rope": [4, 4, 4, 4],
                        "joint_attention_dim": len(OUT_LAYERS) * hidden, "timestep_guidance_channels": 32},
        "vae": {**published("flux2-klein-4b-vae"), "block_out_channels": [8, 16, 32, 32], "layers_per_block": 1,
                "norm_num_groups": 8, "sample_size": 64},
        # One layer past the deepest one stacked: the last hidden state is the final norm's output.
        "text-encoder": {**published("flux2-klein-4b-text-encoder"), "vocab_size": vocab_size, "hidden_size": hidden,
                         "intermediate_size": 32, "num_hidden_layers": max(OUT_LAYERS) + 1, "num_attention_heads": 2,
                         "num_key_value_heads": 1, "head_dim": 8, "max_position_embeddings": 1024,
                         "bos_token_id": None, "eos_token_id": None, "pad_token_id": None},
    }


def build_tiny_klein(directory: Path) -> None:
    """Build the tiny FLUX.2 [klein] twin, deterministically, and save it into `directory`
    (model_index.json, scheduler/, text_encoder/, tokenizer/, transformer/, vae/): about 1 s."""
    import torch
    from diffusers import AutoencoderKLFlux2, FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline, Flux2Transformer2DModel
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from faceless.tasks.models.writer_tiny import tokenizer

    tok = tokenizer()
    configs = tiny_configs(len(tok))
    text = configs["text-encoder"]
    text.update(eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"), pad_token_id=tok.pad_token_id)
    torch.manual_seed(20)
    text_encoder = Qwen3ForCausalLM(Qwen3Config(**text))
    torch.manual_seed(21)
    transformer = Flux2Transformer2DModel(**configs["transformer"])
    torch.manual_seed(22)
    vae = AutoencoderKLFlux2(**configs["vae"])
    pipe = Flux2KleinPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler.from_config(published("flux2-klein-4b-scheduler")),
        vae=vae, text_encoder=text_encoder, tokenizer=tok, transformer=transformer, is_distilled=True,
    )
    pipe.save_pretrained(str(directory))
