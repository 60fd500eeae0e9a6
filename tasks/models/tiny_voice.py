"""Tiny random-weight Bark and Whisper, built locally so the studio voice path runs offline.

Both are saved in the exact layout the real checkpoints have, so the studio code loads them
the same way:

- Bark (like ``suno/bark-small``): ``BarkModel`` + a BERT-style tokenizer + voice presets under
  ``speaker_embeddings/`` listed in ``speaker_embeddings_path.json``. Widths are shrunk but the
  token-id sizes are the real ones (semantic in 129600 / out 10048, coarse 12096, fine 1056):
  Bark's generate() offsets ids by those constants and breaks with smaller vocabularies.
- Whisper (like ``Systran/faster-whisper-large-v3``): a transformers Whisper converted to
  CTranslate2 with its ``tokenizer.json`` copied in (without it faster-whisper downloads one).
  The tokenizer has the byte alphabet and Whisper's special tokens, so any text round-trips.

The same builders make the full published sizes with random weights (``size="small"`` for
Bark as ``suno/bark-small``, ``size="large-v3"`` for Whisper), for benchmarks/gpu_check.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

BARK_PRESET = "v2/en_speaker_6"  # the studio preset; the tiny model ships a random one by that name


def _bert_tokenizer(directory: Path):
    """A WordPiece tokenizer over single characters: every word becomes its letters."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertTokenizerFast

    chars = [chr(c) for c in range(33, 127)]
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + ["##" + c for c in chars]
    vocab = {token: i for i, token in enumerate(tokens)}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=False)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tokenizer.decoder = decoders.WordPiece()
    return BertTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]",
                             cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")


# Widths of the three GPT sub-models and of the EnCodec codec, by size. "small" is
# suno/bark-small: 12 layers, 12 heads, hidden 768, 1024 positions, no biases, and the
# 24 kHz EnCodec (transformers' EncodecConfig defaults are facebook/encodec_24khz).
BARK_SIZES = {
    "tiny": (dict(hidden_size=32, num_layers=2, num_heads=2, block_size=1024),
             dict(hidden_size=16, num_filters=4, num_residual_layers=1, num_lstm_layers=1, codebook_size=1024,
                  codebook_dim=16)),
    "small": (dict(hidden_size=768, num_layers=12, num_heads=12, block_size=1024, bias=False, dropout=0.0),
              dict(codebook_size=1024)),
}


def bark_config(size: str = "tiny"):
    from transformers import BarkConfig, EncodecConfig

    widths, codec = BARK_SIZES[size]
    return BarkConfig(
        semantic_config=dict(input_vocab_size=129600, output_vocab_size=10048, **widths),
        coarse_acoustics_config=dict(input_vocab_size=12096, output_vocab_size=12096, **widths),
        fine_acoustics_config=dict(input_vocab_size=1056, output_vocab_size=1056, n_codes_total=8,
                                   n_codes_given=1, **widths),
        # EnCodec 24 kHz with 1024-entry codebooks (Bark's fine vocabulary is 1024 + 32).
        codec_config=EncodecConfig(**codec).to_dict(),
    )


def build_tiny_bark(directory: Path) -> None:
    build_bark(directory, "tiny")


def build_bark(directory: Path, size: str = "tiny", device: str = "cpu", dtype=None) -> None:
    """Bark at `size` with random weights, built on `device` and saved (in `dtype`) to `directory`."""
    import torch
    from transformers import BarkModel, GenerationConfig
    from transformers.models.bark.generation_configuration_bark import (
        BarkCoarseGenerationConfig, BarkFineGenerationConfig, BarkSemanticGenerationConfig)

    config = bark_config(size)
    torch.manual_seed(4)
    with torch.device(device):
        model = BarkModel(config)
    if dtype is not None:
        model.to(dtype)
    # A plain GenerationConfig holding Bark's nested settings: BarkGenerationConfig itself
    # cannot be saved by transformers 5.24, and BarkModel.generate only reads these dicts.
    model.generation_config = GenerationConfig(
        semantic_config=BarkSemanticGenerationConfig().to_dict(),
        coarse_acoustics_config=BarkCoarseGenerationConfig().to_dict(),
        fine_acoustics_config=BarkFineGenerationConfig().to_dict(),
        sample_rate=24_000, codebook_size=1024,
    )
    model.save_pretrained(str(directory))
    _bert_tokenizer(directory).save_pretrained(str(directory))

    # A voice preset in the published layout: semantic tokens, then 2 and 8 codebooks of codes.
    rng = np.random.default_rng(6)
    preset = {"semantic_prompt": rng.integers(0, 10_000, 120),
              "coarse_prompt": rng.integers(0, 1024, (2, 180)),
              "fine_prompt": rng.integers(0, 1024, (8, 180))}
    folder = directory / "speaker_embeddings" / "v2"
    folder.mkdir(parents=True)
    paths = {}
    for key, value in preset.items():
        name = f"{BARK_PRESET.split('/')[1]}_{key}.npy"
        np.save(folder / name, value)
        paths[key] = f"speaker_embeddings/v2/{name}"
    (directory / "speaker_embeddings_path.json").write_text(
        json.dumps({"repo_or_path": str(directory), BARK_PRESET: paths}), encoding="utf-8")


def _whisper_tokenizer(text_tokens: int | None = None):
    from faster_whisper.tokenizer import _LANGUAGE_CODES
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import WhisperTokenizerFast

    # Byte-level BPE with no merges: text tokens are bytes (ids below <|endoftext|>, as
    # faster-whisper expects), then Whisper's special tokens in their published order.
    vocab = {char: i for i, char in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    # The published vocabulary has 50257 text tokens: pad with tokens no text encodes to
    # (without merges BPE never builds them), so every special token gets its real id.
    for filler in range(len(vocab), text_tokens or 0):
        vocab[f"<|filler{filler}|>"] = filler
    specials = (["<|endoftext|>", "<|startoftranscript|>"] + [f"<|{code}|>" for code in _LANGUAGE_CODES]
                + ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>",
                   "<|notimestamps|>"])
    for token in specials:
        vocab[token] = len(vocab)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(token, special=True) for token in specials])
    eot = "<|endoftext|>"
    wrapped = WhisperTokenizerFast(tokenizer_object=tokenizer, bos_token=eot, eos_token=eot, unk_token=eot, pad_token=eot)
    return wrapped, vocab, [f"<|{code}|>" for code in _LANGUAGE_CODES]


# Whisper widths by size; "large-v3" is openai/whisper-large-v3 (1.55 B parameters): 128 mel
# bins, d_model 1280, 32 + 32 layers, 20 heads, FFN 5120, 50257 text tokens (vocabulary 51866).
WHISPER_SIZES = {
    "tiny": dict(num_mel_bins=80, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                 decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64),
    "large-v3": dict(num_mel_bins=128, d_model=1280, encoder_layers=32, decoder_layers=32,
                     encoder_attention_heads=20, decoder_attention_heads=20, encoder_ffn_dim=5120,
                     decoder_ffn_dim=5120),
}
WHISPER_TEXT_TOKENS = {"tiny": None, "large-v3": 50257}


def whisper_config(size: str = "tiny"):
    """(WhisperConfig, tokenizer, vocab, language tokens) for `size`."""
    from transformers import WhisperConfig

    tokenizer, vocab, languages = _whisper_tokenizer(WHISPER_TEXT_TOKENS[size])
    eot, sot = vocab["<|endoftext|>"], vocab["<|startoftranscript|>"]
    config = WhisperConfig(
        vocab_size=len(vocab) + 1501,  # + the timestamp tokens <|0.00|> .. <|30.00|>
        **WHISPER_SIZES[size],
        max_source_positions=1500, max_target_positions=448,  # 30 s windows, as published
        decoder_start_token_id=sot, eos_token_id=eot, pad_token_id=eot, bos_token_id=eot,
        suppress_tokens=[], begin_suppress_tokens=[eot],
    )
    return config, tokenizer, vocab, languages


def build_tiny_whisper(directory: Path) -> None:
    build_whisper(directory, "tiny")


def build_whisper(directory: Path, size: str = "tiny", device: str = "cpu", dtype=None) -> None:
    """Whisper at `size` with random weights, built on `device`, saved in `dtype` and converted
    for faster-whisper into `directory` (float16 when `dtype` is fp16, else as saved)."""
    import gc

    import torch
    from ctranslate2.converters import TransformersConverter
    from transformers import GenerationConfig, WhisperForConditionalGeneration

    config, tokenizer, vocab, languages = whisper_config(size)
    eot, sot = vocab["<|endoftext|>"], vocab["<|startoftranscript|>"]
    source = directory.parent / f"{directory.name}-transformers"
    shutil.rmtree(source, ignore_errors=True)
    try:
        tokenizer.save_pretrained(str(source))
        torch.manual_seed(5)
        with torch.device(device):
            model = WhisperForConditionalGeneration(config)
        if dtype is not None:
            model.to(dtype)
        model.generation_config = GenerationConfig(
            decoder_start_token_id=sot, eos_token_id=eot, pad_token_id=eot, suppress_tokens=[],
            begin_suppress_tokens=[eot], no_timestamps_token_id=vocab["<|notimestamps|>"],
            lang_to_id={token: vocab[token] for token in languages},
        )
        model.save_pretrained(str(source))
        del model
        gc.collect()
        if dtype is None:
            converter = TransformersConverter(str(source), copy_files=["tokenizer.json"])
            converter.convert(str(directory), force=True)
        else:
            converter = TransformersConverter(str(source), copy_files=["tokenizer.json"], load_as_float16=True,
                                              low_cpu_mem_usage=True)
            converter.convert(str(directory), quantization="float16", force=True)
        if config.num_mel_bins != 80:
            # faster-whisper assumes 80 mel bins unless the folder says otherwise (as
            # Systran/faster-whisper-large-v3 does).
            (directory / "preprocessor_config.json").write_text(json.dumps({
                "feature_size": config.num_mel_bins, "sampling_rate": 16000, "hop_length": 160,
                "chunk_length": 30, "n_fft": 400}), encoding="utf-8")
    finally:
        shutil.rmtree(source, ignore_errors=True)
