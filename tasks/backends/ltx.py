"""The `ltx` animate backend: LTX-Video brings a shot's keyframe to motion in one pass.

A native-pass backend (tasks/backends/native_pass.py, the helpers it shares): one native generation
per shot at the output frame rate, never chained or interpolated, cropped to cover the target
size. LTX-Video's VAE compresses 32x in space and 8x in time (first frame alone), so sides are
multiples of 32 and counts 8k+1 (121 = 5 s at 24 fps, 161 the pipeline's default). Unlike Wan
it is told the frame rate (`frame_rate`, which scales its positional encoding in time), so a
shot at 24 fps and one at 12 move at the same speed. Published size: 704x480 (here 480x704
portrait), guidance 3, 50 steps, prompts of up to 128 T5 tokens.

    pipe = load(directory)                       # LTXImageToVideoPipeline, once per process
    clip = generate(pipe, keyframe, prompt, frames=60, fps=24, settings=..., seed=7)

Everything else the project knows about LTX-Video is here too (tasks/backends/base.py): its
profile section, its memory facts, its components for the memory table, its transformer's work
for benchmarks/wan_work.py and its tiny twin. The published configs are
tasks/models/configs/ltx-video-*.json: Lightricks/LTX-Video's Diffusers folder as first
published (0.9.0, the 2B transformer; T5-XXL's encoder; a 32x spatial, 8x temporal VAE). The
tiny twin keeps those ratios and 128 latent channels, with the character-level T5 tokenizer of
tasks/models/modern_tiny.py (T5's own is not on the package index).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping

from PIL import Image
from pydantic import Field

from faceless.tasks.backends import native_pass
from faceless.tasks.backends.native_pass import Clip, NativeRung
from faceless.tasks.profile_sections import CLIP_CRF, Section


# The backend interface (tasks/backends/base.py).
NAME = "ltx"
STAGE = "animate"
FAMILY = "ltx"
LABEL = "LTX-Video"
SIZE_MULTIPLE = 32  # VAE spatial factor 32, patch 1
VAE_TILING = True  # its VAE decodes in tiles (vae.enable_tiling)
MODELS = {"model": "diffusers"}  # its model setting: the kind of folder it is
TOLD_FPS = True  # the pipeline takes the frame rate: the manifest records it as fps conditioning

TEMPORAL_FACTOR = 8
PUBLISHED_FRAMES = 161  # the pipeline's default count
CONFIGS = "ltx-video"  # tasks/models/configs/ltx-video-*.json
PUBLISHED_TRANSFORMER_PARAMS = 2.0e9  # the transformer's size as the model is named
TINY_VERSION = 1  # bump when the tiny recipe below changes, so old builds are not reused
DEFAULT_DEGRADE: tuple[dict, ...] = (
    {"vae_tiling": True},
    {"model_cpu_offload": True},
    {"resolution_scale": 0.75},
    {"resolution_scale": 0.5},
)
__all__ = ["LtxOptions", "LtxAnimate", "Clip", "generate", "load", "load_cached", "check_ladder", "DEFAULT_DEGRADE"]


@dataclass(frozen=True)
class LtxOptions(native_pass.PassOptions):
    """What one LTX-Video generation needs from a profile's animate settings (the published
    model's defaults)."""

    width: int = 480
    height: int = 704
    out_width: int | None = None
    out_height: int | None = None
    num_inference_steps: int = 50
    guidance_scale: float = 3.0
    negative_prompt: str = "worst quality, inconsistent motion, blurry, jittery, distorted"
    max_sequence_length: int = 128
    decode_timestep: float = 0.0
    """0.9.1 and later VAEs denoise while decoding: 0.05 there, with decode_noise_scale 0.025."""
    decode_noise_scale: float | None = None
    max_frames: int = 161
    vae_tiling: bool = False
    vae_tile: int | None = None
    model_cpu_offload: bool = False
    resolution_scale: float = 1.0
    cpu_threads: int | None = 1


_LTX = LtxOptions()


class LtxAnimate(Section):
    """LTX-Video: one native pass per shot, told the frame rate (tasks/backends/ltx.py)."""
    backend: Literal["ltx"]
    model: str = "hf:Lightricks/LTX-Video"
    width: int = _LTX.width
    height: int = _LTX.height
    num_inference_steps: int = _LTX.num_inference_steps
    guidance_scale: float = _LTX.guidance_scale
    negative_prompt: str = _LTX.negative_prompt
    max_sequence_length: int = _LTX.max_sequence_length
    decode_timestep: float = _LTX.decode_timestep
    decode_noise_scale: float | None = _LTX.decode_noise_scale
    max_frames: int = _LTX.max_frames
    vae_tiling: bool = _LTX.vae_tiling
    vae_tile: int | None = _LTX.vae_tile
    model_cpu_offload: bool = _LTX.model_cpu_offload
    resolution_scale: float = _LTX.resolution_scale
    cpu_threads: int | None = _LTX.cpu_threads
    zoom: float = 0.0
    clip_crf: int = CLIP_CRF
    clip_scale: Annotated[float, Field(gt=0, le=1)] = 1.0
    degrade: list[NativeRung] = [NativeRung(**rung) for rung in DEFAULT_DEGRADE]


SETTINGS = LtxAnimate  # the profile's animate section when `backend: ltx`


def check_ladder(rungs) -> None:
    """Refuse a degrade ladder that would change what a pass makes rather than how."""
    native_pass.check_ladder(rungs, NAME)


def generate(pipe, image: Image.Image, prompt: str, frames: int, fps: int, settings: Mapping[str, Any],
             seed: int, progress=None) -> Clip:
    """One shot: `frames` frames at `fps` from `image`, in one native pass of 8k+1 frames."""
    options = LtxOptions.from_settings(settings)
    return native_pass.one_pass(pipe, NAME, options, TEMPORAL_FACTOR, image, prompt, frames, fps, seed, progress,
                                frame_rate=fps, decode_timestep=options.decode_timestep,
                                decode_noise_scale=options.decode_noise_scale)


def load(directory, device: str | None = None, place: bool = True):
    """An LTX-Video Diffusers folder (published, or a tiny twin) as an LTXImageToVideoPipeline:
    bf16 on a GPU, fp32 on a CPU. Nothing is downloaded."""
    import torch
    from diffusers import LTXImageToVideoPipeline

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    pipe = LTXImageToVideoPipeline.from_pretrained(str(directory), dtype=dtype, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    # place=False: left on the CPU in `device`'s dtype; a render places it by the memory plan.
    return pipe.to(device) if place else pipe


def load_cached(spec: str):
    """The profile's model (LTXImageToVideoPipeline), loaded once per process, on the CPU."""
    return native_pass.cached_loader(sys.modules[__name__], spec)


# -- memory facts (tasks/runtime/memory_plan.py) -------------------------------------------------

def activations(settings: dict) -> dict[str, float]:
    """Activation peak (bytes) of each phase of one pass at the profile's size."""
    from faceless.tasks.runtime.memory_plan import MIB, dit

    width, height, frames, _, tokens = native_pass.pass_geometry(settings, PUBLISHED_FRAMES, TEMPORAL_FACTOR)
    pixels = width * height
    output = frames * pixels * 3 * 2
    decode = 8 * pixels * 128 * 3 * 2 + output
    tile = min(pixels, 512 * 512)
    return {"encode": 256 * MIB, "transformer": dit(tokens, 2048, 8192, batch=2),  # CFG batched
            "decode": decode, "decode_tiled": 8 * tile * 128 * 3 * 2 + output * 2}


def full_size_models() -> dict:
    """The published transformer, VAE and text encoder built on PyTorch's meta device: shapes
    only, no memory, no weights."""
    import torch
    from diffusers import AutoencoderKLLTXVideo, LTXVideoTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    from faceless.tasks.models.modern_tiny import published_config

    with torch.device("meta"):
        return {
            "transformer": LTXVideoTransformer3DModel(**published_config(CONFIGS, "transformer")),
            "vae": AutoencoderKLLTXVideo(**published_config(CONFIGS, "vae")),
            "text_encoder": T5EncoderModel(T5Config(**published_config(CONFIGS, "text-encoder"))),
        }


def full_size_parameters() -> dict[str, int]:
    """Parameters of each published component, counted on the meta device."""
    from faceless.tasks.models.modern_tiny import count_parameters

    return {name: count_parameters(model) for name, model in full_size_models().items()}


def components() -> dict[str, tuple]:
    """For benchmarks/memory_table.py: {component: (module on the meta device, bytes per
    parameter as load() puts it on a GPU, role)}: all bf16."""
    models = full_size_models()
    return {"text_encoder": (models["text_encoder"], 2, "encoder"),
            "transformer": (models["transformer"], 2, "denoiser"),
            "vae": (models["vae"], 2, "vae")}


# -- the work of a step (benchmarks/wan_work.py) -------------------------------------------------

WORK_SIZES = ((480, 704, 121), (768, 512, 121))  # (width, height, frames): published, portrait and landscape


def transformer_tflop(width: int, height: int, frames: int, batch: int = 2, text_tokens: int = 128) -> float:
    """TFLOP of one transformer forward (32x spatial, 8x temporal VAE, 1x1x1 patches) on
    `batch` latents (a step with guidance when 2), counted on the meta device."""
    import torch
    from diffusers import LTXVideoTransformer3DModel
    from torch.utils.flop_counter import FlopCounterMode

    from faceless.tasks.models.modern_tiny import published_config

    config = published_config(CONFIGS, "transformer")
    latent_frames, latent_h, latent_w = (frames - 1) // 8 + 1, height // 32, width // 32
    tokens = latent_frames * latent_h * latent_w
    dtype = torch.bfloat16
    with torch.device("meta"):
        model = LTXVideoTransformer3DModel(**config).to(device="meta", dtype=dtype)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(hidden_states=torch.empty(batch, tokens, config["in_channels"], dtype=dtype),
                  encoder_hidden_states=torch.empty(batch, text_tokens, config["caption_channels"], dtype=dtype),
                  timestep=torch.empty(batch, tokens), encoder_attention_mask=torch.ones(batch, text_tokens),
                  num_frames=latent_frames, height=latent_h, width=latent_w,
                  rope_interpolation_scale=(8 / 24, 32, 32), return_dict=False)
    return counter.get_total_flops() / 1e12


# -- the tiny twin (tasks/models/tiny.py: `tiny:ltx` in a profile) ------------------------------

TINY_TRANSFORMER = dict(num_attention_heads=2, attention_head_dim=16, cross_attention_dim=32, num_layers=2)
TINY_VAE = dict(block_out_channels=[8, 8, 8, 8], layers_per_block=[1, 1, 1, 1, 1])
TOKENS = 128  # the published tokenizer's model_max_length


def build_tiny(directory: Path) -> Path:
    """Build the tiny twin and save it to `directory` as an LTXImageToVideoPipeline: the
    published classes and configs, shrunk. Deterministic: the same seeds give the same weights."""
    import torch
    from diffusers import (AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXImageToVideoPipeline,
                           LTXVideoTransformer3DModel)
    from transformers import T5Config, T5EncoderModel

    from faceless.tasks.models.modern_tiny import TINY_TEXT, published_config, tiny_t5_tokenizer

    def shrunk(part: str, **overrides) -> dict:
        return {**published_config(CONFIGS, part), **overrides}

    directory = Path(directory)
    tokenizer = tiny_t5_tokenizer(TOKENS)
    torch.manual_seed(21)
    text_encoder = T5EncoderModel(T5Config(**shrunk("text-encoder", vocab_size=len(tokenizer), **TINY_TEXT)))
    torch.manual_seed(22)
    transformer = LTXVideoTransformer3DModel(**shrunk(
        "transformer", caption_channels=TINY_TEXT["d_model"], **TINY_TRANSFORMER))
    torch.manual_seed(23)
    vae = AutoencoderKLLTXVideo(**shrunk("vae", **TINY_VAE))
    scheduler = FlowMatchEulerDiscreteScheduler(**published_config(CONFIGS, "scheduler"))
    pipe = LTXImageToVideoPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                   transformer=transformer)
    pipe.save_pretrained(str(directory))
    return directory


TINY_MODELS = {"ltx": (build_tiny, "model_index.json", TINY_VERSION)}
