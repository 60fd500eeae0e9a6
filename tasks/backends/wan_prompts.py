"""Every shot's prompt through Wan's UMT5-XXL encoder in one batch a run, then the encoder off the GPU.

Left to itself the pipeline encodes a shot's prompt (and, with guidance, the negative prompt
again) at every shot, and keeps its 5.7 B-parameter encoder (11 GB in bf16) on the GPU for the
whole run although it works for a second. Instead the flow names the run's prompts before the
animate tasks start (`expect`); the first shot that runs encodes all of them, and the negative
prompt once where a pass is guided, in one batch, then moves the encoder to the CPU (where the
memory plan put it on the GPU; an offloaded encoder leaves by itself). Later shots take their
embeddings from here. A prompt that was not named (a task run on its own, or in another
process) is encoded on its own, and the encoder stays where it is.

    expect(["a fox runs", "the fox sleeps"])       # the flow, once a run
    text = inputs(pipe, "a fox runs", options)      # keyword arguments for pipe(...)
"""

from __future__ import annotations

import threading

_LOCK = threading.Lock()
_EXPECTED: list[str] = []
_EMBEDS: dict[tuple, object] = {}  # (id(pipe), max_sequence_length, text) -> (1, L, D) embeddings
ENCODES = {"batches": 0, "prompts": 0}  # how often the batch encoder ran (tests, logs)


def expect(prompts) -> None:
    """The prompts of this run's shots; forgets the last run's embeddings."""
    with _LOCK:
        _EXPECTED[:] = list(dict.fromkeys(prompts))
        _EMBEDS.clear()


def forget() -> None:
    expect([])


def _encode(pipe, texts: list[str], length: int, device, leave: bool) -> None:
    """One batch through the text encoder, every row kept under its text; `leave`: the run's
    prompts are all encoded, so the encoder leaves the GPU."""
    import torch

    encoder = pipe.text_encoder
    hooked = hasattr(encoder, "_hf_hook") or hasattr(encoder, "_diffusers_hook")  # offloaded: moves itself
    # An encoder this module already sent to the CPU encodes there (a prompt named late).
    where = encoder.device if encoder.device.type == "cpu" and not hooked else device
    with torch.no_grad():
        embeds, _ = pipe.encode_prompt(prompt=texts, do_classifier_free_guidance=False, num_videos_per_prompt=1,
                                       max_sequence_length=length, device=where)
    for text, row in zip(texts, embeds):
        _EMBEDS[(id(pipe), length, text)] = row.unsqueeze(0).to(device)
    ENCODES["batches"] += 1
    ENCODES["prompts"] += len(texts)
    if leave and encoder.device.type == "cuda" and not hooked:  # placed on the GPU whole
        encoder.to("cpu")
        torch.cuda.empty_cache()


def inputs(pipe, prompt: str, options, device) -> dict:
    """The text inputs of one pass (`prompt_embeds`, and `negative_prompt_embeds` where guided):
    from the run's batch, or, for a prompt the run did not name, encoded on its own."""
    guided = options.guidance_scale > 1
    length = options.max_sequence_length
    with _LOCK:
        named = prompt in _EXPECTED
        wanted = (list(_EXPECTED) if named else [prompt]) + ([options.negative_prompt] if guided else [])
        missing = [t for t in dict.fromkeys(wanted) if (id(pipe), length, t) not in _EMBEDS]
        if missing:
            _encode(pipe, missing, length, device, leave=named)
        text = {"prompt_embeds": _EMBEDS[(id(pipe), length, prompt)]}
        if guided:
            text["negative_prompt_embeds"] = _EMBEDS[(id(pipe), length, options.negative_prompt)]
        return text
