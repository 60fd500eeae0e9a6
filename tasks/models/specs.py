"""Model specs in profiles, and where their weights are.

- ``tiny:<name>``: a tiny random-weight twin (tiny.py), built on first use.
- ``hf:<repo id>``: weights from the Hugging Face cache (``HF_HOME``), never downloaded.
- a directory path: the model's own folder (``save_pretrained`` output, or a CTranslate2
  Whisper for faster-whisper).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from faceless.tasks.models.tiny import ensure_tiny, tiny_models, tiny_version


class ModelMissingError(RuntimeError):
    """Weights that are not on this machine; the message says how to get them."""


# What a model folder must hold, by the library that loads it.
MARKERS = {"diffusers": "model_index.json", "transformers": "config.json", "ctranslate2": "model.bin",
           "kokoro": "kokoro-v1_0.pth",
           # An IP-Adapter folder in h94/IP-Adapter's layout (tasks/backends/sdxl.py), its image
           # encoder in sdxl_models/image_encoder.
           "ip-adapter": "sdxl_models/ip-adapter_sdxl.safetensors"}

# Repositories of which a profile needs only some files (h94/IP-Adapter holds every variant,
# many gigabytes): the download names them. Their folder is checked for its marker file too.
PARTS = {"h94/IP-Adapter": ("sdxl_models/ip-adapter_sdxl.safetensors", "sdxl_models/image_encoder/config.json",
                              "sdxl_models/image_encoder/model.safetensors")}


def fetch_hint(repo_id: str) -> str:
    return f"`hf download {' '.join((repo_id, *PARTS.get(repo_id, ())))}`"


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
        path = _hf_snapshot(spec.removeprefix("hf:"))
        if kind == "ip-adapter" and not (path / MARKERS[kind]).is_file():  # a snapshot without the file we need
            raise ModelMissingError(f"model {spec.removeprefix('hf:')} has no {MARKERS[kind]} in the Hugging Face "
                                    f"cache ({hf_home()}); fetch it with {fetch_hint(spec.removeprefix('hf:'))}")
        return path
    path = Path(spec).expanduser()
    if not (path / MARKERS[kind]).is_file():
        raise ModelMissingError(f"model directory {path} has no {MARKERS[kind]}")
    return path


MODEL_STAGES = ("storyboard", "narrate", "align", "keyframe", "animate")  # in render order


def profile_models(profile: dict) -> list[tuple[str, str, str]]:
    """(setting, spec, kind) of every model the profile's stages load: each stage's backend's
    MODELS (tasks/backends/base.py)."""
    from faceless.tasks.backends import base as backends

    found = []
    for stage in MODEL_STAGES:
        name = backends.of_section(stage, profile[stage])
        for setting, kind in (getattr(backends.get(name), "MODELS", {}) if name else {}).items():
            found.append((f"{stage}.{setting}", profile[stage][setting], kind))
        # Models a section loads beyond MODELS, by its settings (SDXL's IP-Adapter, when set).
        extra = getattr(backends.get(name), "section_models", None) if name else None
        found += [(f"{stage}.{setting}", spec, kind) for setting, spec, kind in (extra(profile[stage]) if extra else [])]
    return found


# Repositories that ask you to accept their licence on huggingface.co before they download.
GATED = {"stabilityai/stable-video-diffusion-img2vid-xt", "stabilityai/stable-video-diffusion-img2vid"}


def _gated_note(ids: list[str]) -> str:
    gated = [i for i in ids if i in GATED]
    if not gated:
        return ""
    return (f" ({', '.join(gated)} {'is' if len(gated) == 1 else 'are'} gated: accept the licence on "
            "huggingface.co and run `hf auth login` first)")


def require(profile: dict) -> None:
    """Fail at once, before any stage, naming every model this machine lacks and how to get it.
    Tiny models are not checked: they are built on first use."""
    missing_hub, missing_dirs = [], []
    for setting, spec, kind in profile_models(profile):
        if spec.startswith("tiny:"):
            if spec.removeprefix("tiny:") not in tiny_models():
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
    name = profile["name"]
    if missing_hub:
        ids = list(dict.fromkeys(missing_hub))
        parts.append(
            f"profile {name!r} needs model weights that are not in the Hugging Face cache ({hf_home()}): "
            f"{', '.join(ids)}. Fetch them on a connected machine with "
            + "; ".join(fetch_hint(i) for i in ids)
            + _gated_note(ids) + ", then copy that cache here or point "
            "HF_HOME at it; or set each model in the profile to a local directory")
    if missing_dirs:
        parts.append(f"profile {name!r} has model folders that are missing or incomplete: {'; '.join(missing_dirs)}")
    raise ModelMissingError(". ".join(parts))


def identity(spec: str, kind: str = "diffusers") -> str:
    """What a cache key needs to know about a model: its spec plus a hash of its configs,
    so rebuilding or swapping weights under the same name is noticed."""
    if spec.startswith("tiny:"):
        return f"{spec}@v{tiny_version(spec.removeprefix('tiny:'))}"
    directory = resolve(spec, kind)
    digest = hashlib.sha256()
    for config in sorted(directory.rglob("*.json")):
        digest.update(config.relative_to(directory).as_posix().encode())
        digest.update(config.read_bytes())
    return f"{spec}@{digest.hexdigest()[:16]}"
