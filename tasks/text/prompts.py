"""Prompts that fit SDXL's text encoders: counted with the real CLIP tokenizer, never cut blindly.

Both SDXL text encoders (CLIP ViT-L and OpenCLIP bigG) read at most 77 tokens, start and end
tokens included; the pipelines silently drop the rest. A shot's prompt is its subject (what
the narration says), then the cast and setting, then the style. When all of it fits, it goes
to both encoders. When it does not, the two encoders get different prompts (SDXL's
`prompt` and `prompt_2`) so that nothing required is lost: `prompt` keeps the setting and
fills up with the subject, then the cast; `prompt_2` (the bigG encoder, which also gives the
pooled embedding that steers the whole picture, and the only encoder the refiner has) keeps the
style and the setting and fills up with the cast, last member first, then the subject. So each
cast description is whole in one of the two whenever it fits at all, and the subject is cut (at
a word boundary) only in the second, or in both when it alone would not fit.

The tokenizer is CLIP's byte-level BPE. Its vocabulary file ships beside this module
(bpe_simple_vocab_16e6.txt.gz, OpenAI's CLIP file as open_clip_torch ships it; MIT, see
CLIP-VOCAB-LICENSE.txt): the same merges as SDXL's tokenizers, so counts here equal those of
the real models. The tiny models are built with it too (tasks/models/), so offline counts equal
studio's.
"""

from __future__ import annotations

import functools
import gzip
import json
from dataclasses import dataclass
from pathlib import Path

from faceless.tasks.runtime import store

MAX_TOKENS = 77  # CLIP's context, start and end tokens included
_VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
_MERGES = 49152 - 256 - 2  # CLIP keeps the first 48,894 merges of that file


def _vocab_file() -> Path:
    # Package data, not open_clip_torch: that package cannot be a dependency (it pulls
    # torchvision, which does not import beside the CPU torch), and a plain `pip install .`
    # must render offline.
    return Path(__file__).resolve().parent / _VOCAB_FILE


def _bytes_to_unicode() -> dict[int, str]:
    # The reversible byte -> printable character table of byte-level BPE tokenizers.
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars)))


def write_clip_tokenizer_files(directory: Path) -> None:
    """vocab.json and merges.txt of CLIP's tokenizer (49,408 tokens), as the hub's SDXL
    tokenizer folders hold them."""
    lines = gzip.decompress(_vocab_file().read_bytes()).decode("utf-8").split("\n")
    merges = lines[1:_MERGES + 1]
    symbols = list(_bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps({v: i for i, v in enumerate(vocab)}, ensure_ascii=False),
                                          encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")


def clip_tokenizer_dir() -> Path:
    """A folder with CLIP's tokenizer files, written once per FACELESS_HOME."""
    return store.build_folder_once(store.models_dir() / "clip-tokenizer-v1", "merges.txt", write_clip_tokenizer_files)


@functools.lru_cache(maxsize=1)
def clip_tokenizer():
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(clip_tokenizer_dir()), model_max_length=MAX_TOKENS)


def count_tokens(text: str) -> int:
    """CLIP tokens of `text`, start and end tokens included."""
    return len(clip_tokenizer()(text, truncation=False, verbose=False)["input_ids"])


def join_parts(parts: list[str]) -> str:
    """The non-empty parts, comma-separated: how a prompt is put together."""
    return ", ".join(p for p in parts if p)


def _trim(parts: list[str], index: int, budget: int) -> str:
    """parts[index] cut to its longest word prefix with which the joined parts fit."""
    words = parts[index].split()
    low, high = 0, len(words)
    while low < high:  # the longest prefix that fits
        middle = (low + high + 1) // 2
        trial = parts[:index] + [" ".join(words[:middle]).rstrip(",;:")] + parts[index + 1:]
        if count_tokens(join_parts(trial)) <= budget:
            low = middle
        else:
            high = middle - 1
    return " ".join(words[:low]).rstrip(",;:")


def fit(parts: list[str], priority: list[int], budget: int = MAX_TOKENS) -> str:
    """Join `parts` (in their order) into at most `budget` tokens. `priority` lists part indexes
    from the most to the least important: each is added whole if it fits, otherwise cut at a
    word boundary to what is left, and the less important ones are dropped."""
    kept = [""] * len(parts)
    for index in priority:
        trial = kept[:index] + [parts[index]] + kept[index + 1:]
        if count_tokens(join_parts(trial)) <= budget:
            kept = trial
        else:
            kept[index] = _trim(trial, index, budget)
    return join_parts(kept)


@dataclass
class ShotPrompt:
    prompt: str
    prompt_2: str  # empty: the second encoder reads `prompt` too
    tokens: int  # the larger of the two counts, start and end tokens included
    description: str  # every part whole, for T5 encoders (FLUX's, Wan's) that read hundreds of tokens


def shot_prompt(subject: str, cast: list[str], setting: str, style: str) -> ShotPrompt:
    """Subject first, then cast and setting, then style, within both encoders' 77 tokens."""
    parts = [subject, *cast, setting, style]
    full = join_parts(parts)
    if count_tokens(full) <= MAX_TOKENS:
        return ShotPrompt(full, "", count_tokens(full), full)
    n = len(parts)
    cast_indexes = list(range(1, n - 2))
    # Encoder 1: the setting, then the whole subject, then the cast in order; the style is
    # left to encoder 2.
    prompt = fit(parts[:-1], [n - 2, 0, *cast_indexes])
    # Encoder 2: the style, the setting, the cast from the last (the ones encoder 1 had no
    # room for), then as much of the subject as fits.
    prompt_2 = fit(parts, [n - 1, n - 2, *reversed(cast_indexes), 0])
    return ShotPrompt(prompt, prompt_2, max(count_tokens(prompt), count_tokens(prompt_2)), full)
