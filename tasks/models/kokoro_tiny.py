"""Kokoro-82M: its published config, and a tiny random-weight twin laid out like the hub folder.

A Kokoro folder (the hub's `hexgrad/Kokoro-82M` snapshot, or the twin) holds `config.json`
(architecture and the 114-symbol phoneme vocabulary), `kokoro-v1_0.pth` (one state dict per
part: bert, bert_encoder, predictor, text_encoder, decoder) and `voices/<name>.pt` (a voice
is a (510, 1, 256) tensor: one 256-wide style vector per phoneme-sequence length). The twin
is built through kokoro's own `KModel` class from a shrunk config and saved in that layout,
so `tasks/backends/kokoro.py` loads it exactly as it loads the real folder.

What the twin keeps: the phoneme vocabulary (misaki's phonemes map to the same ids), the
512-token context, the 128-wide style halves (KModel slices the voice vector at 128), the
widths kokoro's decoder hard-wires (hidden 512: its residual 1x1 convolution takes 512
inputs; 1024-wide decode blocks; a vocoder that starts at 512 channels) and the iSTFTNet
strides (24 kHz audio, 600 samples per duration frame, so the timing arithmetic is the real
one). What it shrinks: the phoneme BERT (12 layers of 768 -> 1 of 32), the duration/prosody
depth (3 -> 1), the vocoder's resblocks (3 kernels -> 1) and `max_dur` (50 -> 8), which with
random weights puts each phoneme at about 0.1 s, near real speech, instead of about 0.6 s.
So the twin is not small (about 49 M parameters, stored in float16: 100 MB); kokoro's fixed
widths allow no less.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
REPO_ID = "hexgrad/Kokoro-82M"
WEIGHTS_FILE = "kokoro-v1_0.pth"  # the file KModel.MODEL_NAMES gives for REPO_ID
DEFAULT_VOICE = "af_heart"
SAMPLE_RATE = 24000
PARTS = ("bert", "bert_encoder", "predictor", "text_encoder", "decoder")


def full_config() -> dict:
    """The published Kokoro-82M config.json, without `_` keys."""
    raw = json.loads((CONFIGS_DIR / "kokoro-82m.json").read_text(encoding="utf-8"))
    return {k: v for k, v in raw.items() if not k.startswith("_")}


def tiny_config() -> dict:
    config = full_config()
    config.update(
        n_layer=1,
        max_dur=8,
        plbert={**config["plbert"], "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64,
                "num_hidden_layers": 1},
        istftnet={**config["istftnet"], "resblock_kernel_sizes": [3], "resblock_dilation_sizes": [[1, 3, 5]]},
    )
    return config


def random_model(config: dict, seed: int = 0):
    """A KModel with random weights: kokoro's constructor always loads a weights file, so it
    is given an empty one (nothing loaded, every part keeps its initialisation)."""
    import torch
    from kokoro import KModel

    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "empty.pth"
        torch.save({}, empty)
        torch.manual_seed(seed)
        return KModel(repo_id=REPO_ID, config=config, model=str(empty)).eval()


def full_size_parameters() -> int:
    """Parameters of the full-size architecture (about 81.8 M; random weights, ~2 s)."""
    model = random_model(full_config())
    return sum(p.numel() for p in model.parameters())


def save_folder(model, config: dict, directory: Path, voices: dict, dtype=None) -> None:
    """Write a Kokoro folder: config.json, kokoro-v1_0.pth, voices/<name>.pt. `dtype`: store
    the weights in it (KModel copies them into its float32 parameters when loading)."""
    import torch

    def stored(state: dict) -> dict:
        if dtype is None:
            return state
        return {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}

    directory = Path(directory)
    (directory / "voices").mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config, ensure_ascii=False, indent=1), encoding="utf-8")
    torch.save({part: stored(getattr(model, part).state_dict()) for part in PARTS}, directory / WEIGHTS_FILE)
    for name, pack in voices.items():
        torch.save(pack, directory / "voices" / f"{name}.pt")


def build_tiny_kokoro(directory: Path, voices: tuple[str, ...] = (DEFAULT_VOICE,)) -> None:
    """Build the twin into `directory`."""
    import torch

    config = tiny_config()
    model = random_model(config, seed=20)
    generator = torch.Generator().manual_seed(21)
    packs = {name: torch.randn(510, 1, 2 * config["style_dim"], generator=generator) * 0.15 for name in voices}
    save_folder(model, config, directory, packs, dtype=torch.float16)
