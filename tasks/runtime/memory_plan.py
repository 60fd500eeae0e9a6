"""The memory plan: where each GPU stage's components live, decided before anything loads.

For every model stage of a profile that runs on a GPU (a Bark or Kokoro narration, a Whisper
alignment, the keyframe and animate backends) the plan predicts the peak of GPU memory that
torch's allocator will reach under each *placement*, best first, and picks the first that fits
the GPU's free memory (or `--gpu-memory`):

    gpu                 every component on the GPU for the whole stage
    encoders_leave      the text/image encoders visit the GPU to encode, then go back to the CPU
    model_offload       diffusers' model CPU offload: one component on the GPU at a time
    group_offload       diffusers' block-level group offload with CUDA streams: a component's
                        non-block modules plus two blocks (the running one, the prefetched one)
    sequential_offload  diffusers' sequential (leaf) offload: one layer's weights at a time

each with `+vae_tiling` after it where the backend's VAE can decode in tiles (its module's
VAE_TILING; SVD's temporal VAE cannot: its knob is `decode_chunk_size`, a profile setting).
Backends that are one piece (every component's role `model` in the table: Bark, Kokoro,
Whisper through CTranslate2, the shot writer) have the one placement `gpu`.

The prediction (docs/gpu-memory.md):

- weights: each component's parameter count, counted on PyTorch's meta device from the
  published configs by benchmarks/memory_table.py (tasks/runtime/memory_table.json), times
  the bytes of the dtype the loaders use on a GPU; a component a setting brings (SDXL's
  IP-Adapter image encoder and adapter weights, with `references`) only when it is set, and
  weights that load into another component (the adapter's, into the base UNet) counted with it
  (`components`);
- activations: estimated analytically at the profile's size by each backend's module (its
  `activations`: tokens x widths of the widest block, the VAE's widest feature maps at the
  decoded resolution, with the helpers below), with attention counted as
  the fused kernels (flash / memory-efficient SDPA) a GPU uses, whose memory is linear in the
  sequence: the CPU's math path, which builds the T x T score matrix, is never the model;
  times ACTIVATION_MARGIN;
- peak = max over the stage's phases (encode, each denoiser, decode) of the weights the
  placement keeps on the GPU in that phase plus that phase's activations.

A placement fits when its peak plus RESERVE_GIB (the CUDA context, cuBLAS/cuDNN workspaces
and allocator fragmentation, which torch's peak does not count) is within the GPU's memory.
This module reads only JSON and the backends' modules (which import torch only inside their
functions): `faceless gpu-plan` answers without importing torch.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from faceless.tasks.backends import base as backends

GIB = 2 ** 30
TABLE_PATH = Path(__file__).with_name("memory_table.json")
RESERVE_GIB = 1.0
ACTIVATION_MARGIN = 1.25
PLACEMENTS = ("gpu", "encoders_leave", "model_offload", "group_offload", "sequential_offload")
# The GPU stages, in render order; the backends in each that run on a GPU are those in the table
# (piper, espeak and `voice` are CPU work).
GPU_STAGES = ("narrate", "align", "storyboard", "keyframe", "animate")


@dataclass(frozen=True)
class Placement:
    name: str = "gpu"
    vae_tiling: bool = False

    def __str__(self) -> str:
        return self.name + ("+vae_tiling" if self.vae_tiling else "")

    @classmethod
    def parse(cls, text: str) -> "Placement":
        name, _, extra = str(text).partition("+")
        if name not in PLACEMENTS or extra not in ("", "vae_tiling"):
            raise ValueError(f"unknown placement {text!r} (known: {', '.join(PLACEMENTS)}, each +vae_tiling)")
        return cls(name, extra == "vae_tiling")

    @property
    def offloads(self) -> bool:
        return self.name != "gpu"


@dataclass
class StagePlan:
    stage: str
    backend: str
    placement: str
    predicted_peak_gib: float
    fits: bool
    # Every placement the backend offers, best first, with its predicted peak (GiB).
    candidates: list[tuple[str, float]] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "candidates"}


@dataclass
class MemoryPlan:
    profile: str
    gpu_memory_gib: float
    stages: list[StagePlan]

    @property
    def fits(self) -> bool:
        return all(s.fits for s in self.stages)

    def stage(self, name: str) -> StagePlan | None:
        return next((s for s in self.stages if s.stage == name), None)

    def smallest_fitting_gib(self) -> int:
        """The least whole GiB of GPU memory every stage fits in (each at its leanest placement)."""
        need = max((s.candidates[-1][1] for s in self.stages), default=0.0)
        return math.ceil(need + RESERVE_GIB)

    def needs_line(self) -> str:
        worst = max(self.stages, key=lambda s: s.candidates[-1][1])
        leanest = worst.candidates[-1]
        return (f"{self.profile} does not fit {self.gpu_memory_gib:g} GiB: it needs at least "
                f"{self.smallest_fitting_gib()} GiB ({worst.stage}/{worst.backend} at {leanest[0]} "
                f"predicts {leanest[1]:.1f} GiB plus {RESERVE_GIB:g} GiB reserve)")

    def as_dict(self) -> dict:
        return {"profile": self.profile, "gpu_memory_gib": self.gpu_memory_gib, "fits": self.fits,
                "reserve_gib": RESERVE_GIB, "stages": [s.as_dict() for s in self.stages]}


_TABLE: dict | None = None


def table() -> dict:
    global _TABLE
    if _TABLE is None:
        _TABLE = json.loads(TABLE_PATH.read_text(encoding="utf-8"))["backends"]
    return _TABLE


def components(backend: str, settings: dict) -> dict:
    """The table's components of `backend` for a stage's settings: one that a setting brings
    (its `when`) only when that setting is set, and one that loads into another (its `joins`:
    the IP-Adapter's weights into the base UNet) folded into that one, which then holds both
    (it is on the GPU, offloaded and split into blocks with them)."""
    rows = table()[backend]
    kept = {name: part for name, part in rows.items() if not part.get("when") or settings.get(part["when"])}
    parts = {name: part for name, part in kept.items() if not part.get("joins")}
    for name, part in kept.items():
        if not part.get("joins"):
            continue
        target = parts[part["joins"]]
        if target["bytes_per_parameter"] != part["bytes_per_parameter"]:
            raise ValueError(f"{backend}: {name} joins {part['joins']} in another dtype")
        parts[part["joins"]] = {
            **target, **{key: target[key] + part[key] for key in
                         ("parameters", "unmatched_parameters", "largest_block_parameters")},
            "largest_leaf_parameters": max(target["largest_leaf_parameters"], part["largest_leaf_parameters"])}
    return parts


def one_piece(backend: str) -> bool:
    """Whether `backend` is one piece (no encoders, denoisers or VAE to place apart)."""
    return all(part["role"] == "model" for part in table()[backend].values())


def ladder(backend: str) -> list[Placement]:
    """The placements `backend` offers, best (fastest, most memory) first."""
    if one_piece(backend):
        return [Placement("gpu")]
    tiling = (False, True) if getattr(backends.get(backend), "VAE_TILING", False) else (False,)
    return [Placement(name, tiled) for name in PLACEMENTS for tiled in tiling]


# -- activations, estimated analytically (bytes): each backend's `activations(settings)` ------

MIB = 2 ** 20


def dit(tokens: int, hidden: int, ffn: int, batch: int = 1, dtype: int = 2) -> float:
    """One transformer block's live tensors at its peak: the residual stream, the normed input,
    q, k, v, the attention output and the projection (about 8 x hidden a token) and the
    feed-forward's inner tensor before and after its activation (2 x ffn). Fused attention keeps
    no T x T matrix."""
    return batch * dtype * tokens * (8 * hidden + 2 * ffn)


def vae2d(pixels: int, dtype: int, channels: int = 256) -> float:
    """An image VAE decode at full resolution: its widest feature maps (the last up blocks,
    `channels` wide at full size) with about three alive at once."""
    return pixels * channels * 3 * dtype


def activations(backend: str, settings: dict) -> dict[str, float]:
    """Activation peak (bytes, before the margin) of each phase of one stage: `encode`, one per
    denoiser component (by its name), `decode` and `decode_tiled`; `model` for one-piece backends."""
    estimate = getattr(backends.get(backend), "activations", None)
    if estimate is None:
        raise ValueError(f"no memory model for backend {backend!r}")
    return estimate(settings)


# -- weights each placement keeps on the GPU (bytes) ---------------------------------------------

def _weights(part: dict) -> float:
    return part["parameters"] * part["bytes_per_parameter"]


def _resident(placement: Placement, parts: dict, active: str | None) -> float:
    """Weights on the GPU while component `active` runs (None: between components)."""
    name = placement.name
    if name == "gpu":
        return sum(_weights(p) for p in parts.values())
    if name == "encoders_leave":
        staying = sum(_weights(p) for p in parts.values() if p["role"] != "encoder")
        visiting = _weights(parts[active]) if active and parts[active]["role"] == "encoder" else 0
        return staying + visiting
    if active is None:
        return 0.0
    part, size = parts[active], parts[active]["bytes_per_parameter"]
    if name == "model_offload":
        return _weights(part)
    if name == "group_offload":
        if part["largest_block_parameters"]:  # block level: the rest as one group, two blocks (streams)
            return (part["unmatched_parameters"] + 2 * part["largest_block_parameters"]) * size
        return 2 * part["largest_leaf_parameters"] * size  # no blocks: leaf level, with prefetch
    return 2 * part["largest_leaf_parameters"] * size  # sequential: one layer, and the next in flight


def predict_peak(backend: str, settings: dict, placement: Placement) -> float:
    """Predicted peak GPU memory (bytes) of one stage run under `placement`."""
    parts = components(backend, settings)
    acts = activations(backend, settings)
    if one_piece(backend):
        return sum(_weights(p) for p in parts.values()) + ACTIVATION_MARGIN * acts["model"]
    phases: list[tuple[str, float]] = []
    for name, part in parts.items():
        if part["role"] == "encoder":
            phases.append((name, acts["encode"]))
        elif part["role"] == "denoiser":
            phases.append((name, acts[name]))
        elif part["role"] == "vae":
            phases.append((name, acts["decode_tiled" if placement.vae_tiling else "decode"]))
    return max(_resident(placement, parts, name) + ACTIVATION_MARGIN * act for name, act in phases)


def gpu_stages(settings: dict) -> list[tuple[str, str, dict]]:
    """(stage, backend, stage settings) of each model stage of a resolved profile that runs on
    a GPU, in render order; a keyframe section whose `references` name another backend gives
    that backend's too (klein, after schnell)."""
    found = []
    for stage in GPU_STAGES:
        section = settings.get(stage) or {}
        backend = backends.of_section(stage, section)  # the shot writer only when a model writes the shots
        if backend in table():
            found.append((stage, backend, section))
        # The keyframe backend that draws the shots showing cast members (modern's klein), a
        # family of its own: planned for its own components, at the section's size.
        references = backends.reference_section(section) if stage == "keyframe" else None
        if references and references["backend"] in table():
            found.append((stage, references["backend"], references))
    return found


def candidates(backend: str, settings: dict) -> list[tuple[str, float]]:
    """The placements worth trying for one stage, best first, with their predicted peaks (GiB):
    a placement is kept only if it predicts less than every one before it (a slower placement
    that saves nothing, such as tiling a VAE whose decode is not the peak, is left out)."""
    kept: list[tuple[str, float]] = []
    for placement in ladder(backend):
        peak = round(predict_peak(backend, settings, placement) / GIB, 2)
        if not kept or peak < kept[-1][1]:
            kept.append((str(placement), peak))
    return kept


def placements_below(stage_plan: StagePlan) -> list[Placement]:
    """The placements after the chosen one, in order: where a load-time or run-time OOM goes next."""
    names = [name for name, _ in stage_plan.candidates]
    at = names.index(stage_plan.placement) if stage_plan.placement in names else -1
    return [Placement.parse(name) for name in names[at + 1:]]


def plan_stage(stage: str, backend: str, settings: dict, gpu_memory_gib: float) -> StagePlan:
    budget = (gpu_memory_gib - RESERVE_GIB) * GIB
    candidates_ = candidates(backend, settings)
    chosen = next(((name, peak) for name, peak in candidates_ if peak * GIB <= budget), None)
    if chosen is None:
        name, peak = candidates_[-1]
        return StagePlan(stage, backend, name, peak, False, candidates_)
    return StagePlan(stage, backend, chosen[0], chosen[1], True, candidates_)


def make_plan(settings: dict, gpu_memory_gib: float, profile: str | None = None) -> MemoryPlan:
    """The plan of a resolved profile (tasks/settings.py) for a GPU with `gpu_memory_gib` free."""
    stages = [plan_stage(stage, backend, section, gpu_memory_gib) for stage, backend, section in gpu_stages(settings)]
    return MemoryPlan(profile or settings.get("name") or "profile", float(gpu_memory_gib), stages)


def local_gpu_gib() -> float | None:
    """This machine's free GPU memory in GiB (None without a CUDA GPU)."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    free, _total = torch.cuda.mem_get_info()
    return free / GIB
