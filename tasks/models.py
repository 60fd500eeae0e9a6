"""Where diffusion models come from, and loading them once per process.

A model is named in a profile by a spec:

- ``tiny:sdxl-base``, ``tiny:sdxl-refiner``, ``tiny:svd``: small random-weight models with
  the published architectures shrunk in width and depth, built deterministically on first
  use into ``$FACELESS_HOME/models/`` and then loaded with ``from_pretrained`` exactly like
  the real ones (the offline profile; no network).
- ``hf:<repo id>``: weights from the Hugging Face cache (``HF_HOME``), never downloaded.
- a directory path: a model saved with ``save_pretrained``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path

from tasks import store

# transformers prints advice at import (e.g. that torchvision is absent): keep logs for errors.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

CONFIGS_DIR = Path(__file__).resolve().parent / "model_configs"
TINY_VERSION = 1  # bump when a tiny recipe changes, so old builds are not reused

# One model runs at a time in a process: scenes map to threads, and two diffusion runs
# side by side would only fight over the same cores (or GPU memory).
MODEL_LOCK = threading.RLock()


class ModelMissingError(RuntimeError):
    """Weights that are not on this machine; the message says how to get them."""


def _full_config(name: str) -> dict:
    return json.loads((CONFIGS_DIR / f"{name}.json").read_text(encoding="utf-8"))


def _shrunk(name: str, **overrides) -> dict:
    """A published architecture with widths and depths shrunk: same blocks, tiny tensors."""
    config = {k: v for k, v in _full_config(name).items() if not k.startswith("_")}
    config.update(overrides)
    return config


# -- a CLIP tokenizer without a hub: byte-level vocabulary, no merges ------------------------

def _bytes_to_unicode() -> dict[int, str]:
    # The reversible byte -> printable character table byte-level BPE tokenizers use.
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars)))


def _write_tokenizer(directory: Path) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    symbols = list(_bytes_to_unicode().values())
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({s + "</w>": len(symbols) + i for i, s in enumerate(symbols)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return len(vocab)


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

    _quiet_libraries()
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

    _quiet_libraries()
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


_TINY_BUILDERS = {
    "sdxl-base": lambda d: _build_tiny_sdxl(d, refiner=False),
    "sdxl-refiner": lambda d: _build_tiny_sdxl(d, refiner=True),
    "svd": _build_tiny_svd,
}


def _tiny_dir(name: str) -> Path:
    if name not in _TINY_BUILDERS:
        raise ValueError(f"unknown tiny model {name!r} (known: {', '.join(sorted(_TINY_BUILDERS))})")
    return store.models_dir() / f"tiny-{name}-v{TINY_VERSION}"


def ensure_tiny(name: str) -> Path:
    """Build a tiny model once (atomically, like an artifact) and return its directory."""
    directory = _tiny_dir(name)
    if (directory / "model_index.json").is_file():
        return directory
    directory.parent.mkdir(parents=True, exist_ok=True)
    # The artifacts' own lock: renders started together build each model once.
    with store.exclusive_lock(directory.parent / f".{directory.name}.lock"):
        if (directory / "model_index.json").is_file():
            return directory
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{directory.name}-", dir=directory.parent))
        try:
            _TINY_BUILDERS[name](tmp)
            if directory.exists():  # a build killed after its rename started
                shutil.rmtree(directory)
            os.rename(tmp, directory)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return directory


def _hf_snapshot(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        raise ModelMissingError(
            f"model {repo_id} is not in the Hugging Face cache ({os.environ.get('HF_HOME', '~/.cache/huggingface')}); "
            f"fetch it on a connected machine with `huggingface-cli download {repo_id}` "
            f"and copy the cache here, or set the profile to a local directory"
        ) from None


def resolve(spec: str) -> Path:
    """The directory to load a model from."""
    if spec.startswith("tiny:"):
        return ensure_tiny(spec.removeprefix("tiny:"))
    if spec.startswith("hf:"):
        return _hf_snapshot(spec.removeprefix("hf:"))
    path = Path(spec).expanduser()
    if not (path / "model_index.json").is_file():
        raise ModelMissingError(f"model directory {path} has no model_index.json")
    return path


def identity(spec: str) -> str:
    """What a cache key needs to know about a model: its spec plus a hash of its configs,
    so rebuilding or swapping weights under the same name is noticed."""
    if spec.startswith("tiny:"):
        return f"{spec}@v{TINY_VERSION}"
    directory = resolve(spec)
    digest = hashlib.sha256()
    for config in sorted(directory.rglob("*.json")):
        digest.update(config.relative_to(directory).as_posix().encode())
        digest.update(config.read_bytes())
    return f"{spec}@{digest.hexdigest()[:16]}"


def _quiet_libraries() -> None:
    # Progress bars and advice meant for notebooks would drown the run's own logs.
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def device_and_dtype():
    import torch

    _quiet_libraries()
    if torch.cuda.is_available():
        return "cuda", torch.float16
    torch.set_flush_denormal(True)  # random weights make denormals that slow CPUs 2-3x
    return "cpu", torch.float32


def sdxl_ensemble(base_spec: str, refiner_spec: str):
    """SDXL base and refiner, sharing text_encoder_2 and the VAE; loaded once per process."""
    # Scenes run in threads: the lock makes the first caller load while the others wait
    # (diffusers' lazy imports are not safe to race either).
    with MODEL_LOCK:
        return _load_sdxl_ensemble(base_spec, refiner_spec)


@functools.lru_cache(maxsize=4)
def _load_sdxl_ensemble(base_spec: str, refiner_spec: str):
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

    device, dtype = device_and_dtype()
    base = StableDiffusionXLPipeline.from_pretrained(str(resolve(base_spec)), dtype=dtype)
    refiner = StableDiffusionXLImg2ImgPipeline.from_pretrained(
        str(resolve(refiner_spec)), text_encoder_2=base.text_encoder_2, vae=base.vae, dtype=dtype,
    )
    base.set_progress_bar_config(disable=True)
    refiner.set_progress_bar_config(disable=True)
    return base.to(device), refiner.to(device)


def svd(spec: str):
    """The SVD img2vid pipeline, loaded once per process."""
    with MODEL_LOCK:
        return _load_svd(spec)


@functools.lru_cache(maxsize=2)
def _load_svd(spec: str):
    from diffusers import StableVideoDiffusionPipeline

    device, dtype = device_and_dtype()
    pipe = StableVideoDiffusionPipeline.from_pretrained(str(resolve(spec)), dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)
