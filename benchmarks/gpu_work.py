"""GPU work of a render, counted from the published architectures: TFLOP per denoising step,
SDXL and SVD steps, and the old (chained windows per scene) versus new (one window per shot)
design for a story.

Per-step figures are counted, not assumed: each UNet is built from its published config in
tasks/model_configs/ on PyTorch's meta device (shapes only, no memory, no weights) and one
forward pass at the profile's size runs under `torch.utils.flop_counter.FlopCounterMode`,
which adds up 2 x multiply-accumulates of every matrix product and convolution, attention
included (element-wise work is not counted; it is a few per cent). Classifier-free guidance
runs the UNet on a batch of two (SDXL when guidance_scale > 1; the SVD pipeline always, its
max_guidance_scale is 3). Known figures at the published sizes, with guidance: SDXL base
13.4 TFLOP a step at 1024x1024, refiner 14.3, SVD-XT 160 at 576x1024 with 25 frames; the
counts here come out at 13.5, 14.6 and 159.9.

    from benchmarks.gpu_work import step_tflop, gpu_work, legacy_windows, after_shots
"""

from __future__ import annotations

import functools
import json
import math
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CONFIGS = ROOT / "tasks" / "model_configs"
NIGHT_TRAIN = ROOT / "benchmarks" / "stories" / "night-train.txt"

# Published per-step figures (with classifier-free guidance), for comparison.
KNOWN_TFLOP = {"sdxl_base": (13.4, 1024, 1024), "sdxl_refiner": (14.3, 1024, 1024), "svd": (160.0, 576, 1024, 25)}

# Shots of the new design (see after_shots).
SHOT_MIN_S, SHOT_MAX_S, ONE_WINDOW_MAX_S = 2.0, 6.0, 6.25


def _config(name: str) -> dict:
    data = json.loads((CONFIGS / f"{name}.json").read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if not k.startswith("_")}


@functools.lru_cache(maxsize=None)
def unet_tflop(model: str, width: int, height: int, num_frames: int = 0, batch: int = 2) -> float:
    """TFLOP of one forward pass of a published UNet (`sdxl-base-unet`, `sdxl-refiner-unet`,
    `svd-xt-unet`) on `batch` latents for a `width` x `height` picture, counted on the meta device."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from diffusers import UNet2DConditionModel, UNetSpatioTemporalConditionModel

    config = _config(model)
    dtype = torch.float16
    h, w = height // 8, width // 8
    with torch.device("meta"):
        if model == "svd-xt-unet":
            # .to("meta"): a few mixing factors are made with the legacy torch.Tensor([...])
            # constructor, which ignores the default device.
            unet = UNetSpatioTemporalConditionModel(**config).to(device="meta", dtype=dtype)
            inputs = dict(sample=torch.empty(batch, num_frames, config["in_channels"], h, w, dtype=dtype),
                          timestep=torch.empty(batch), encoder_hidden_states=torch.empty(
                              batch, 1, config["cross_attention_dim"], dtype=dtype),
                          added_time_ids=torch.empty(batch, 3, dtype=dtype))
        else:
            unet = UNet2DConditionModel(**config).to(device="meta", dtype=dtype)
            time_ids = 6 if config["projection_class_embeddings_input_dim"] == 2816 else 5  # base / refiner
            pooled = config["projection_class_embeddings_input_dim"] - time_ids * config["addition_time_embed_dim"]
            inputs = dict(sample=torch.empty(batch, config["in_channels"], h, w, dtype=dtype), timestep=torch.empty(batch),
                          encoder_hidden_states=torch.empty(batch, 77, config["cross_attention_dim"], dtype=dtype),
                          added_cond_kwargs={"text_embeds": torch.empty(batch, pooled, dtype=dtype),
                                             "time_ids": torch.empty(batch, time_ids, dtype=dtype)})
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            unet(**inputs)
    return counter.get_total_flops() / 1e12


def step_tflop(profile: dict) -> dict:
    """TFLOP of one denoising step of each model at the profile's keyframe and animate settings
    (with classifier-free guidance where the profile's settings use it)."""
    keyframe, animate = profile["keyframe"], profile["animate"]
    sdxl_batch = 2 if float(keyframe.get("guidance_scale", 5.0)) > 1 else 1
    svd_batch = 2 if float(animate.get("max_guidance_scale", 3.0)) > 1 else 1
    return {
        "sdxl_base": unet_tflop("sdxl-base-unet", keyframe["width"], keyframe["height"], batch=sdxl_batch),
        "sdxl_refiner": unet_tflop("sdxl-refiner-unet", keyframe["width"], keyframe["height"], batch=sdxl_batch),
        "svd": unet_tflop("svd-xt-unet", animate["width"], animate["height"], animate["num_frames"], batch=svd_batch),
        "keyframe_size": f"{keyframe['width']}x{keyframe['height']}",
        "animate_size": f"{animate['width']}x{animate['height']}x{animate['num_frames']}",
    }


def known_tflop() -> dict:
    """Counted TFLOP per step at the published sizes (the KNOWN_TFLOP settings), with the known figure."""
    counted = {
        "sdxl_base": unet_tflop("sdxl-base-unet", 1024, 1024),
        "sdxl_refiner": unet_tflop("sdxl-refiner-unet", 1024, 1024),
        "svd": unet_tflop("svd-xt-unet", 576, 1024, 25),
    }
    return {name: (counted[name], KNOWN_TFLOP[name][0]) for name in counted}


def gpu_work(n_keyframes: int, svd_windows_total: int, profile: dict) -> dict:
    """Denoising steps and PFLOP of `n_keyframes` SDXL keyframes and `svd_windows_total` SVD windows."""
    keyframe, animate = profile["keyframe"], profile["animate"]
    steps = int(keyframe["num_inference_steps"])
    base_steps = round(steps * float(keyframe.get("high_noise_frac", 0.8)))  # 100 at 0.8: 80 + 20
    per_step = step_tflop(profile)
    svd_steps = svd_windows_total * int(animate["num_inference_steps"])
    sdxl_tflop = n_keyframes * (base_steps * per_step["sdxl_base"] + (steps - base_steps) * per_step["sdxl_refiner"])
    svd_tflop = svd_steps * per_step["svd"]
    return {
        "keyframes": n_keyframes,
        "sdxl_steps": n_keyframes * steps,
        "sdxl_base_steps": n_keyframes * base_steps,
        "sdxl_refiner_steps": n_keyframes * (steps - base_steps),
        "svd_windows": svd_windows_total,
        "svd_steps": svd_steps,
        "sdxl_pflop": sdxl_tflop / 1000,
        "svd_pflop": svd_tflop / 1000,
        "pflop": (sdxl_tflop + svd_tflop) / 1000,
    }


def legacy_windows(scene_seconds: float, fps_conditioning: int = 24, num_frames: int = 25) -> int:
    """SVD windows of the old design: a scene covered by chained windows of `num_frames` at
    `fps_conditioning`, each window after the first adding num_frames - 1 new frames."""
    needed = math.ceil(scene_seconds * fps_conditioning) + 1
    return 1 + max(0, math.ceil((needed - num_frames) / (num_frames - 1)))


# -- the story: sentence spans ----------------------------------------------------------------

def piper_sentence_spans(story_file: Path = NIGHT_TRAIN) -> tuple[list[dict], float]:
    """([{index, text, start, end}], duration) from the offline Piper narration of the story
    (what `narrate_piper` writes to words.json): about 0.2x real time on a CPU."""
    from tasks import store
    from tasks.narrate import narrate_piper
    from tasks.plan import normalise_story, split_sentences
    from tasks.profiles import load_profile

    texts = split_sentences(normalise_story(Path(story_file).read_text(encoding="utf-8")))
    sentences = [{"index": i, "text": t, "words": t.split()} for i, t in enumerate(texts)]
    with tempfile.TemporaryDirectory(prefix="gpu-work-piper-") as folder:
        narrate_piper(sentences, load_profile("offline")["narrate"], Path(folder))
        timing = store.read_json(Path(folder) / "words.json")
    spans = [{**span, "text": texts[span["index"]]} for span in timing["sentences"]]
    return spans, float(timing["duration"])


def proportional_spans(texts: list[str], duration: float, pause: float = 0.3) -> list[dict]:
    """Sentence spans with times proportional to characters (when Piper is not at hand)."""
    speaking = duration - pause * (len(texts) - 1)
    total = sum(len(t) for t in texts)
    spans, cursor = [], 0.0
    for index, text in enumerate(texts):
        seconds = speaking * len(text) / total
        spans.append({"index": index, "text": text, "start": cursor, "end": cursor + seconds})
        cursor += seconds + pause
    return spans


def _tiles(spans: list[dict], duration: float) -> list[float]:
    # As the flow's timeline: each part lasts from its start to the next one's (the pause
    # after a sentence belongs to it), the first from 0, the last to the narration's end.
    starts = [0.0] + [s["start"] for s in spans[1:]]
    return [max(0.0, end - start) for start, end in zip(starts, starts[1:] + [duration])]


def before_scenes(spans: list[dict], duration: float, sentences_per_scene: int = 2) -> list[float]:
    """Scene lengths in seconds of the old design: consecutive sentences grouped by two."""
    firsts = spans[::sentences_per_scene]
    return _tiles(firsts, duration)


def _clauses(text: str) -> list[str]:
    parts = re.split(r"(?<=[,;:—–])\s+", text)
    return [p for p in parts if p]


def _cut(text: str, seconds: float, low: float, high: float) -> list[float]:
    """Lengths of the pieces of a sentence longer than `high`: cut at the clause boundaries
    nearest to an even split into the fewest pieces of `low`..`high` seconds (times
    proportional to characters), or evenly when no clause boundaries fit."""
    clauses = _clauses(text)
    total = sum(len(c) for c in clauses)
    boundaries, chars = [], 0
    for clause in clauses[:-1]:
        chars += len(clause)
        boundaries.append(seconds * chars / total)
    count = math.ceil(seconds / high)
    for n in range(count, count + 3):
        cuts = [min(boundaries, key=lambda b: abs(b - k * seconds / n)) for k in range(1, n)] if boundaries else []
        edges = [0.0, *cuts, seconds]
        parts = [b - a for a, b in zip(edges, edges[1:])]
        if len(cuts) == n - 1 and all(low <= p <= high for p in parts):
            return parts
    return [seconds / count] * count


def after_shots(sentence_spans: list[dict], profile: dict) -> list[dict]:
    """Shots of the new design: one keyframe and one SVD window per shot.

    The lead will replace this body by a call to the new storyboard module (being written on
    main) when merging; until then it applies the same rules to real sentence times: a shot is
    one sentence of 2-6 s; a longer sentence is cut at clause boundaries (, ; : dashes) into
    the fewest pieces of 2-6 s (times proportional to characters within the sentence; cut
    evenly where its clauses do not allow that); a sentence under 2 s is joined to its shorter
    neighbour (which may make a shot longer than 6 s).
    A shot gets one window, two if it lasts more than 6.25 s. Each sentence lasts from its
    start to the next one's (the pause after it is its own), the last to its end.
    `profile` may carry `shots: {min_s, max_s, one_window_max_s}`; studio has none (defaults).
    """
    limits = profile.get("shots") or {}
    low, high = float(limits.get("min_s", SHOT_MIN_S)), float(limits.get("max_s", SHOT_MAX_S))
    one_window = float(limits.get("one_window_max_s", ONE_WINDOW_MAX_S))
    if not sentence_spans:
        return []
    ends = [float(s["start"]) for s in sentence_spans[1:]] + [float(sentence_spans[-1]["end"])]
    seconds = [max(0.0, end - float(s["start"])) for s, end in zip(sentence_spans, ends)]
    pieces: list[dict] = []
    for span, length in zip(sentence_spans, seconds):
        text = span.get("text") or ""
        if length <= high or not text:
            pieces.append({"sentences": [span["index"]], "seconds": length})
            continue
        pieces.extend({"sentences": [span["index"]], "seconds": part} for part in _cut(text, length, low, high))
    # Join shots under the minimum to their shorter neighbour, shortest first.
    while len(pieces) > 1:
        short = [i for i, p in enumerate(pieces) if p["seconds"] < low]
        if not short:
            break
        i = min(short, key=lambda k: pieces[k]["seconds"])
        neighbours = [j for j in (i - 1, i + 1) if 0 <= j < len(pieces)]
        j = min(neighbours, key=lambda k: pieces[k]["seconds"])
        a, b = sorted((i, j))
        pieces[a] = {"sentences": sorted(set(pieces[a]["sentences"] + pieces[b]["sentences"])),
                     "seconds": pieces[a]["seconds"] + pieces[b]["seconds"]}
        del pieces[b]
    for piece in pieces:
        piece["windows"] = 1 if piece["seconds"] <= one_window else 2
    return pieces


def before_after(profile: dict, spans: list[dict], duration: float) -> dict:
    """The old and the new design's GPU work for one story at `profile`'s settings."""
    scenes = before_scenes(spans, duration, int(profile.get("plan", {}).get("sentences_per_scene", 2)))
    animate = profile["animate"]
    before_windows = sum(legacy_windows(s, animate.get("fps", 24), animate["num_frames"]) for s in scenes)
    shots = after_shots(spans, profile)
    before = gpu_work(len(scenes), before_windows, profile)
    after = gpu_work(len(shots), sum(s["windows"] for s in shots), profile)
    return {"before": before, "after": after, "scenes": scenes, "shots": shots, "duration": duration,
            "sentences": len(spans), "svd_step_ratio": after["svd_steps"] / max(1, before["svd_steps"])}


def table(result: dict, tflops: float | None = None) -> list[str]:
    """The before/after table as lines of text; with `tflops` (effective), estimated GPU minutes."""
    before, after = result["before"], result["after"]
    rows = [
        ("keyframes (SDXL base + refiner)", before["keyframes"], after["keyframes"], "d"),
        ("SDXL steps (base + refiner)", f"{before['sdxl_steps']} ({before['sdxl_base_steps']}+{before['sdxl_refiner_steps']})",
         f"{after['sdxl_steps']} ({after['sdxl_base_steps']}+{after['sdxl_refiner_steps']})", "s"),
        ("SVD-XT windows", before["svd_windows"], after["svd_windows"], "d"),
        ("SVD-XT steps", before["svd_steps"], after["svd_steps"], "d"),
        ("estimated PFLOP (SDXL + SVD)", f"{before['pflop']:.1f} ({before['sdxl_pflop']:.1f}+{before['svd_pflop']:.1f})",
         f"{after['pflop']:.1f} ({after['sdxl_pflop']:.1f}+{after['svd_pflop']:.1f})", "s"),
    ]
    if tflops:
        rows.append((f"est. GPU minutes at {tflops:.0f} TFLOPS", f"{before['pflop'] * 1000 / tflops / 60:.1f}",
                     f"{after['pflop'] * 1000 / tflops / 60:.1f}", "s"))
    lines = [f"{'':<36}{'BEFORE':>22}{'AFTER':>22}"]
    for label, b, a, _ in rows:
        lines.append(f"{label:<36}{str(b):>22}{str(a):>22}")
    lines.append(f"{'SVD steps after / before':<36}{result['svd_step_ratio']:>44.3f}")
    return lines
