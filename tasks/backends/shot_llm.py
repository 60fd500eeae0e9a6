"""The shot writer's language model: a small instruction-tuned causal LM (Qwen2.5-3B-Instruct,
Qwen3-4B-Instruct, or a tiny random Qwen2 twin) writing JSON constrained to a schema.

Constraint: lm-format-enforcer (`lmformatenforcer`), a maintained pure-Python library: at each
step its TokenEnforcer lists the tokens that keep the text a valid prefix of the schema, and a
logits processor masks every other token. Chosen over xgrammar (which pulls triton, hundreds of
MB, onto CPU machines) and outlines (a heavier stack for the same job). Its own transformers
helper imports `transformers.tokenization_utils`, which transformers 5 no longer has, so the
few lines that build its tokenizer data are here, on the library's public core classes.

The model loads once per process (family `writer` in the models registry) and writes every
shot of a story; the stage holds the GPU slot for the whole story (tasks/stages/writer.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from faceless.tasks.profile_sections import Section

NAME = "shot-writer"
STAGE = "storyboard"
FAMILY = "writer"
LABEL = "shot writer"
MODELS = {"model": "transformers"}  # its model setting: the kind of folder it is


@dataclass
class Writer:
    model: object
    tokenizer: object
    enforcer_data: object  # lm-format-enforcer's per-tokenizer tables, built once per load
    device: str


def load(directory) -> Writer:
    """The model and tokenizer from a folder (save_pretrained layout), in the GPU's dtype on a
    GPU (one piece: the memory plan's placement is `gpu`), fp32 on a CPU."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from faceless.tasks.models.registry import device_and_dtype

    device, dtype = device_and_dtype()
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    model = AutoModelForCausalLM.from_pretrained(str(directory), dtype=dtype).to(device).eval()
    return Writer(model, tokenizer, enforcer_data(tokenizer, model.config.vocab_size), device)


def load_cached(spec: str) -> Writer:
    """The shot writer's language model and tokenizer, loaded once per process."""
    from faceless.tasks.models.registry import load_once
    from faceless.tasks.models.specs import resolve

    return load_once(FAMILY, (spec,), lambda: load(resolve(spec, "transformers")))


def enforcer_data(tokenizer, vocab_size: int):
    """lm-format-enforcer's tokenizer tables: every regular token with the text it adds (decoded
    after a "0" so that a leading space survives) and whether it starts a word."""
    from lmformatenforcer import TokenEnforcerTokenizerData

    special = set(tokenizer.all_special_ids)
    zero = tokenizer.encode("0", add_special_tokens=False)[-1]
    regular = []
    for token in range(min(vocab_size, len(tokenizer))):
        if token in special:
            continue
        after_zero = tokenizer.decode([zero, token])[1:]
        alone = tokenizer.decode([token])
        regular.append((token, after_zero, len(after_zero) > len(alone)))

    def decode(tokens: list[int]) -> str:
        return tokenizer.decode(tokens).rstrip("\ufffd")  # a half-decoded multibyte character

    eos = [tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>") if t in tokenizer.get_vocab()]
    return TokenEnforcerTokenizerData(regular, decode, eos or tokenizer.eos_token_id, False, vocab_size)


class _SchemaOnly:
    """A transformers logits processor that keeps only the tokens lm-format-enforcer allows
    after the generated part of the sequence (the prompt is not JSON: it is not shown to it)."""

    def __init__(self, enforcer, prompt_length: int):
        self.enforcer, self.prompt_length = enforcer, prompt_length

    def __call__(self, input_ids, scores):
        import torch

        mask = torch.full_like(scores, float("-inf"))
        for row, sequence in enumerate(input_ids.tolist()):
            allowed = self.enforcer.get_allowed_tokens(sequence[self.prompt_length:]).allowed_tokens
            mask[row, allowed] = 0
        return scores + mask


def generate_json(writer: Writer, messages: list[dict], schema: dict, *, max_new_tokens: int,
                  temperature: float, seed: int) -> str:
    """The model's answer to `messages`, constrained to `schema` (at most `max_new_tokens`: a
    cut-off answer is unparseable and the caller falls back). Greedy at temperature 0."""
    import torch
    from lmformatenforcer import CharacterLevelParserConfig, JsonSchemaParser, TokenEnforcer
    from transformers import LogitsProcessorList

    prompt = writer.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = writer.tokenizer(prompt, return_tensors="pt").to(writer.device)
    length = inputs["input_ids"].shape[1]
    # Fields in the schema's order (what is seen before how it is filmed), and at most one
    # whitespace in a row: whitespace is free under the schema, and a weak model spends its
    # tokens on it.
    # TokenEnforcer sets its parser's config (the tokenizer's alphabet): ours goes on after it.
    parser = JsonSchemaParser(schema)
    enforcer = TokenEnforcer(writer.enforcer_data, parser)
    parser.config = CharacterLevelParserConfig(alphabet=writer.enforcer_data.tokenizer_alphabet,
                                               max_consecutive_whitespaces=1, force_json_field_order=True)
    torch.manual_seed(seed)
    sampling = dict(do_sample=True, temperature=temperature) if temperature > 0 else dict(do_sample=False)
    with torch.inference_mode():
        output = writer.model.generate(
            **inputs, max_new_tokens=max_new_tokens, logits_processor=LogitsProcessorList([_SchemaOnly(enforcer, length)]),
            pad_token_id=writer.tokenizer.pad_token_id or writer.tokenizer.eos_token_id, **sampling)
    return writer.tokenizer.decode(output[0, length:], skip_special_tokens=True)


# -- the profile's section (tasks/profile_schema.py) ------------------------------------------

class StoryboardWriter(Section):
    """Who writes each shot's prompts (tasks/stages/writer.py): `rules` (its words, cast,
    setting and style) or `llm` (a small instruction-tuned model writes what the camera sees,
    under a JSON schema; a shot whose answer is unusable keeps the rules prompt)."""
    writer: Literal["rules", "llm"] = "rules"
    model: str = "hf:Qwen/Qwen2.5-3B-Instruct"  # or hf:Qwen/Qwen3-4B-Instruct-2507, or a folder
    max_field_chars: int = Field(160, ge=8)  # each field of the description, at most
    max_new_tokens: int = Field(768, ge=16)  # an answer cut off here is unusable: the shot falls back
    temperature: float = Field(0.0, ge=0.0)  # 0: greedy, the same words every time
    cpu_threads: int | None = None  # torch threads on a CPU while generating (see SdxlKeyframe)


SETTINGS = StoryboardWriter


# -- memory facts (tasks/runtime/memory_plan.py) -------------------------------------------------

def activations(settings: dict) -> dict[str, float]:
    """Activation peak (bytes) of the one-piece model at work."""
    from faceless.tasks.runtime.memory_plan import MIB

    return {"model": 512 * MIB}  # a few thousand tokens of KV cache and one row of logits


def components() -> dict[str, tuple]:
    """For benchmarks/memory_table.py: {component: (module at its published size on the meta
    device, bytes per parameter as the loader puts it on a GPU, role)}.
    Qwen2.5-3B-Instruct in bf16, one piece (Qwen3-4B is larger; a profile naming it is planned
    as this, see docs/gpu-memory.md)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from faceless.tasks.models.tiny import published

    with torch.device("meta"):
        return {"model": (Qwen2ForCausalLM(Qwen2Config(**published("qwen2.5-3b-instruct"))), 2, "model")}


# -- the tiny twin (tasks/models/tiny.py: `tiny:shot-writer` in a profile) -------------------------

def _build_tiny(directory) -> None:
    from faceless.tasks.models.writer_tiny import build_tiny_writer
    from faceless.tasks.models.registry import quiet_libraries

    quiet_libraries()
    build_tiny_writer(directory)


TINY_MODELS = {"shot-writer": (_build_tiny, "config.json", 1)}
