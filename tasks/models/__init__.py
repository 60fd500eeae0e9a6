"""Where diffusion models come from, and loading them once per process.

A model is named in a profile by a spec:

- ``tiny:sdxl-base``, ``tiny:sdxl-refiner``, ``tiny:svd``, ``tiny:bark``, ``tiny:whisper``:
  small random-weight models with the published architectures shrunk in width and depth,
  built deterministically on first use into ``$FACELESS_HOME/models/`` and then loaded
  exactly like the real ones (the offline and tiny profiles; no network).
- ``hf:<repo id>``: weights from the Hugging Face cache (``HF_HOME``), never downloaded.
- a directory path: the model's own folder (``save_pretrained`` output, or a CTranslate2
  Whisper for faster-whisper).

Loaded models are kept per process in one registry, so the scenes of a run share one
pipeline; ``release`` drops a family before a stage that needs the memory.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import hashlib
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path

from faceless.tasks.runtime import store

# transformers prints advice at import (e.g. that torchvision is absent): keep logs for errors.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
TINY_VERSION = 2  # 2: the real CLIP vocabulary. Bump when a tiny recipe changes, so old builds are not reused

# One model runs at a time in a process: scenes map to threads, and two diffusion runs
# side by side would only fight over the same cores (or GPU memory).
MODEL_LOCK = threading.RLock()


class ModelMissingError(RuntimeError):
    """Weights that are not on this machine; the message says how to get them."""


# What a model folder must hold, by the library that loads it.
MARKERS = {"diffusers": "model_index.json", "transformers": "config.json", "ctranslate2": "model.bin"}


def _full_config(name: str) -> dict:
    return json.loads((CONFIGS_DIR / f"{name}.json").read_text(encoding="utf-8"))


def _shrunk(name: str, **overrides) -> dict:
    """A published architecture with widths and depths shrunk: same blocks, tiny tensors."""
    config = {k: v for k, v in _full_config(name).items() if not k.startswith("_")}
    config.update(overrides)
    return config


# -- CLIP's tokenizer, offline: the real vocabulary, from the open_clip_torch wheel ----------

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


def _build_tiny_bark(directory: Path) -> None:
    from faceless.tasks.backends.tiny_voice import build_tiny_bark

    _quiet_libraries()
    build_tiny_bark(directory)


def _build_tiny_whisper(directory: Path) -> None:
    from faceless.tasks.backends.tiny_voice import build_tiny_whisper

    _quiet_libraries()
    build_tiny_whisper(directory)


_TINY_BUILDERS = {
    "sdxl-base": lambda d: _build_tiny_sdxl(d, refiner=False),
    "sdxl-refiner": lambda d: _build_tiny_sdxl(d, refiner=True),
    "svd": _build_tiny_svd,
    "bark": _build_tiny_bark,
    "whisper": _build_tiny_whisper,
}
_TINY_MARKERS = {"sdxl-base": "model_index.json", "sdxl-refiner": "model_index.json", "svd": "model_index.json",
                 "bark": "config.json", "whisper": "model.bin"}


def _tiny_dir(name: str) -> Path:
    if name not in _TINY_BUILDERS:
        raise ValueError(f"unknown tiny model {name!r} (known: {', '.join(sorted(_TINY_BUILDERS))})")
    return store.models_dir() / f"tiny-{name}-v{TINY_VERSION}"


def ensure_tiny(name: str) -> Path:
    """Build a tiny model once (atomically, like an artifact) and return its directory."""
    directory = _tiny_dir(name)
    marker = _TINY_MARKERS[name]
    if (directory / marker).is_file():
        return directory
    directory.parent.mkdir(parents=True, exist_ok=True)
    # The artifacts' own lock: renders started together build each model once.
    with store.exclusive_lock(directory.parent / f".{directory.name}.lock"):
        if (directory / marker).is_file():
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


def fetch_hint(repo_id: str) -> str:
    return f"`hf download {repo_id}`"


def _hf_snapshot(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        raise ModelMissingError(
            f"model {repo_id} is not in the Hugging Face cache ({hf_home()}); "
            f"fetch it on a connected machine with {fetch_hint(repo_id)} "
            f"and copy the cache here, or set the profile to a local directory"
        ) from None


def hf_home() -> str:
    return os.environ.get("HF_HOME", "~/.cache/huggingface")


def resolve(spec: str, kind: str = "diffusers") -> Path:
    """The directory to load a model from (`kind` says which library loads it)."""
    if spec.startswith("tiny:"):
        return ensure_tiny(spec.removeprefix("tiny:"))
    if spec.startswith("hf:"):
        return _hf_snapshot(spec.removeprefix("hf:"))
    path = Path(spec).expanduser()
    if not (path / MARKERS[kind]).is_file():
        raise ModelMissingError(f"model directory {path} has no {MARKERS[kind]}")
    return path


def profile_models(profile: dict) -> list[tuple[str, str, str]]:
    """(setting, spec, kind) of every model the profile's stages load."""
    found = []
    narrate, align = profile.get("narrate", {}), profile.get("align", {})
    if narrate.get("backend") == "bark":
        found.append(("narrate.model", narrate["model"], "transformers"))
    if align.get("backend") == "faster-whisper":
        found.append(("align.model", align["model"], "ctranslate2"))
    keyframe, animate = profile.get("keyframe", {}), profile.get("animate", {})
    for role in ("base", "refiner"):
        if role in keyframe:
            found.append((f"keyframe.{role}", keyframe[role], "diffusers"))
    if "model" in animate:
        found.append(("animate.model", animate["model"], "diffusers"))
    return found


def require(profile: dict) -> None:
    """Fail at once, before any stage, naming every model this machine lacks and how to get it.
    Tiny models are not checked: they are built on first use."""
    missing_hub, missing_dirs = [], []
    for setting, spec, kind in profile_models(profile):
        if spec.startswith("tiny:"):
            if spec.removeprefix("tiny:") not in _TINY_BUILDERS:
                missing_dirs.append(f"{setting}: unknown tiny model {spec!r}")
            continue
        try:
            resolve(spec, kind)
        except ModelMissingError:
            if spec.startswith("hf:"):
                missing_hub.append(spec.removeprefix("hf:"))
            else:
                missing_dirs.append(f"{setting}: {spec} has no {MARKERS[kind]}")
    if not (missing_hub or missing_dirs):
        return
    parts = []
    name = profile.get("name", "?")
    if missing_hub:
        ids = list(dict.fromkeys(missing_hub))
        parts.append(
            f"profile {name!r} needs model weights that are not in the Hugging Face cache ({hf_home()}): "
            f"{', '.join(ids)}. Fetch them on a connected machine with "
            + "; ".join(fetch_hint(i) for i in ids)
            + " (gated models such as stabilityai/stable-video-diffusion-img2vid-xt need their licence "
            "accepted on huggingface.co and `hf auth login` first), then copy that cache here or point "
            "HF_HOME at it; or set each model in the profile to a local directory")
    if missing_dirs:
        parts.append(f"profile {name!r} has model folders that are missing or incomplete: {'; '.join(missing_dirs)}")
    raise ModelMissingError(". ".join(parts))


def identity(spec: str, kind: str = "diffusers") -> str:
    """What a cache key needs to know about a model: its spec plus a hash of its configs,
    so rebuilding or swapping weights under the same name is noticed."""
    if spec.startswith("tiny:"):
        return f"{spec}@v{TINY_VERSION}"
    directory = resolve(spec, kind)
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


# -- loaded models, one registry per process ---------------------------------------------------

_LOADED: dict[tuple, object] = {}
LOADS: collections.Counter = collections.Counter()  # loads per family in this process, for the manifest


def _get(family: str, key: tuple, load):
    """The loaded model for `key`, loading it the first time. Scenes run in threads: the lock
    makes the first caller load while the others wait (diffusers' lazy imports do not race well)."""
    with MODEL_LOCK:
        if (family, *key) not in _LOADED:
            _LOADED[(family, *key)] = load()
            LOADS[family] += 1
        return _LOADED[(family, *key)]


def release(*families: str) -> list[str]:
    """Drop the loaded models of these families (all when none named) and free their memory,
    so the next stage's model fits. Returns the families released."""
    with MODEL_LOCK:
        keys = [k for k in _LOADED if not families or k[0] in families]
        for key in keys:
            del _LOADED[key]
    if keys:
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass
    return sorted({k[0] for k in keys})


@contextlib.contextmanager
def cpu_threads(device, threads: int):
    """Token-by-token decoding on a CPU is many tiny matrix products: thread hand-offs cost
    more than they save (a tiny Bark sentence took 0.4 s on one thread, 7-16 s on two of a
    busy 2-core machine). The caller holds MODEL_LOCK, so no other model runs meanwhile."""
    import torch

    if str(device).startswith("cuda") or not threads:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def sdxl_ensemble(base_spec: str, refiner_spec: str):
    """SDXL base and refiner, sharing text_encoder_2 and the VAE; loaded once per process."""
    return _get("sdxl", (base_spec, refiner_spec), lambda: _load_sdxl_ensemble(base_spec, refiner_spec))


def _load_sdxl_ensemble(base_spec: str, refiner_spec: str):
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

    device, dtype = device_and_dtype()
    base = StableDiffusionXLPipeline.from_pretrained(str(resolve(base_spec)), dtype=dtype)
    refiner = StableDiffusionXLImg2ImgPipeline.from_pretrained(
        str(resolve(refiner_spec)), text_encoder_2=base.text_encoder_2, vae=base.vae, dtype=dtype,
    )
    if dtype == torch_float16():
        # SDXL's VAE overflows in fp16 (NaN, black pictures): have the pipelines decode in fp32.
        base.vae.register_to_config(force_upcast=True)
    base.set_progress_bar_config(disable=True)
    refiner.set_progress_bar_config(disable=True)
    return base.to(device), refiner.to(device)


def torch_float16():
    import torch

    return torch.float16


def svd(spec: str):
    """The SVD img2vid pipeline, loaded once per process."""
    return _get("svd", (spec,), lambda: _load_svd(spec))


def _load_svd(spec: str):
    from diffusers import StableVideoDiffusionPipeline

    device, dtype = device_and_dtype()
    pipe = StableVideoDiffusionPipeline.from_pretrained(str(resolve(spec)), dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def bark(spec: str):
    """Bark (model, processor), loaded once per process."""
    return _get("bark", (spec,), lambda: _load_bark(spec))


def _load_bark(spec: str):
    from transformers import BarkModel, BarkProcessor

    device, dtype = device_and_dtype()
    directory = resolve(spec, "transformers")
    model = BarkModel.from_pretrained(str(directory), dtype=dtype).to(device).eval()
    processor = BarkProcessor.from_pretrained(str(directory))
    return model, processor


def whisper(spec: str, compute_type: str = "default"):
    """A faster-whisper model, loaded once per process."""
    return _get("whisper", (spec, compute_type), lambda: _load_whisper(spec, compute_type))


def _load_whisper(spec: str, compute_type: str):
    from faster_whisper import WhisperModel

    device, _ = device_and_dtype()
    if compute_type == "default":  # fp16 on a GPU, fp32 on a CPU (int8 would change the times)
        compute_type = "float16" if device == "cuda" else "float32"
    return WhisperModel(str(resolve(spec, "ctranslate2")), device=device, compute_type=compute_type,
                        local_files_only=True)
