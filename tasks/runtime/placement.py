"""Putting a loaded pipeline's components where the memory plan says, and nothing more.

Loaders load on the CPU (in the GPU's dtype when there is one); `place` then moves each
component by the stage's placement (tasks/runtime/memory_plan.py):

- ``gpu``: every component on the GPU;
- ``encoders_leave``: the denoisers and the VAE on the GPU; each encoder visits the GPU when it
  is called and goes back to the CPU when another component runs;
- ``model_offload``: one component on the GPU at a time, whichever is called;
- ``group_offload``: diffusers' group offload, block level with CUDA streams for the diffusers
  models (leaf level for the transformers encoders, which have no top-level block list);
- ``sequential_offload``: accelerate's leaf offload, one layer's weights at a time;
- ``+vae_tiling``: the VAE decodes in tiles.

The pipelines of one family are placed together from their *unique* modules: SDXL's base and
refiner share `text_encoder_2` and the VAE, so they get one set of hooks (one offload chain),
never two pipelines' hooks fighting over the shared modules. The hooks for the first three
placements are accelerate ModelHooks (so diffusers' `encode`/`decode` wrappers and the
pipelines' `_execution_device` see them) that move modules themselves; `Placed.moves` logs each
move, which the CPU tests read.

A family keeps its placement between shots: undoing one never loads more than the plan allows
(`place` only goes down the ladder, removing the old hooks first). A torch.OutOfMemoryError while
placing (a load-time OOM) falls to the next placement down.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Callable

from faceless.tasks.runtime.memory_plan import Placement, table

log = logging.getLogger("faceless")
_LOCK = threading.RLock()
_PLACED: dict[str, "Placed"] = {}  # family -> its current placement, for the rest of the process


def members(backend: str, pipes) -> list[tuple[str, object, str]]:
    """(name, module, role) of each unique component of `backend`'s pipelines, in the table's
    order: `refiner_unet` is the second pipeline's unet; a component found in several pipelines
    (SDXL's text_encoder_2, VAE) is listed once; one a pipeline does not have (SDXL's
    image_encoder without an IP-Adapter loaded) is not listed."""
    pipes = pipes if isinstance(pipes, (list, tuple)) else [pipes]
    found, seen = [], set()
    for name, part in table()[backend].items():
        if part.get("joins"):  # loaded into another component (the IP-Adapter's weights): placed with it
            continue
        if name.startswith("refiner_"):
            module = getattr(pipes[1], name.removeprefix("refiner_"), None) if len(pipes) > 1 else None
        else:
            module = next((getattr(p, name) for p in pipes if getattr(p, name, None) is not None), None)
        if module is None or id(module) in seen:
            continue
        seen.add(id(module))
        found.append((name, module, part["role"]))
    return found


def _model_hook_class():
    from accelerate.hooks import ModelHook

    class Visit(ModelHook):
        """Before its module runs: send `evicts` that are on the GPU back to the CPU, bring the
        module (if it is a visitor) to the GPU, and move the inputs there."""

        def __init__(self, placed: "Placed", name: str, evicts: list[str], visitor: bool):
            super().__init__()
            self.placed, self.name, self.evicts, self.visitor = placed, name, evicts, visitor
            self.execution_device = placed.device

        def pre_forward(self, module, *args, **kwargs):
            from accelerate.utils import send_to_device

            for other in self.evicts:
                self.placed.move(other, self.placed.offload_device)
            if self.visitor:
                self.placed.move(self.name, self.placed.device)
            return send_to_device(args, self.placed.device), send_to_device(kwargs, self.placed.device)

    return Visit


@dataclass
class Placed:
    """One family's components and where they are."""

    backend: str
    placement: Placement
    device: str
    modules: dict[str, object]
    roles: dict[str, str]
    offload_device: str = "cpu"
    where: dict[str, str] = field(default_factory=dict)  # name -> device, for modules this code moves
    moves: list[tuple[str, str]] = field(default_factory=list)  # (name, device), in order
    undo_steps: list[Callable[[], None]] = field(default_factory=list)

    def move(self, name: str, device: str) -> None:
        if self.where.get(name) == device:
            return
        self.modules[name].to(device)
        self.where[name] = device
        self.moves.append((name, device))

    def on_device(self) -> set[str]:
        return {name for name, device in self.where.items() if device == self.device}

    def undo(self) -> None:
        """Remove every hook and put every component back on the CPU."""
        for step in reversed(self.undo_steps):
            step()
        self.undo_steps.clear()
        for name in self.modules:
            self.move(name, self.offload_device)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def apply(backend: str, pipes, placement: Placement, device: str = "cuda") -> Placed:
    """Place `backend`'s pipelines by `placement` on `device` (from the CPU). The CPU tests pass
    device="cpu": the hooks and moves are the same, only the device differs."""
    import torch
    from accelerate.hooks import add_hook_to_module, remove_hook_from_module

    found = members(backend, pipes)
    placed = Placed(backend, placement, device, {n: m for n, m, _ in found}, {n: r for n, _, r in found})
    placed.where = {name: placed.offload_device for name in placed.modules}
    names = list(placed.modules)
    encoders = [n for n in names if placed.roles[n] == "encoder"]
    kind = placement.name

    def hook_all(evicts_of: Callable[[str], list[str]], visitor: Callable[[str], bool]) -> None:
        Visit = _model_hook_class()
        for name in names:
            add_hook_to_module(placed.modules[name], Visit(placed, name, evicts_of(name), visitor(name)))
            placed.undo_steps.append(lambda m=placed.modules[name]: remove_hook_from_module(m))

    if kind == "gpu" or len(names) == 1:
        for name in names:
            placed.move(name, device)
    elif kind == "encoders_leave":
        for name in names:
            if name not in encoders:
                placed.move(name, device)
        hook_all(lambda n: [e for e in encoders if e != n], lambda n: n in encoders)
    elif kind == "model_offload":
        hook_all(lambda n: [o for o in names if o != n], lambda n: True)
    elif kind == "group_offload":
        from diffusers.hooks import apply_group_offloading

        stream = torch.device(device).type == "cuda"
        for name in names:
            module = placed.modules[name]
            blocks = table()[backend][name]["largest_block_parameters"] > 0
            apply_group_offloading(module, onload_device=torch.device(device), offload_device=torch.device("cpu"),
                                   offload_type="block_level" if blocks else "leaf_level",
                                   num_blocks_per_group=1 if blocks else None, use_stream=stream)
            placed.where[name] = "group"
            placed.undo_steps.append(lambda m=module: _remove_group_offload(m))
    elif kind == "sequential_offload":
        from accelerate import cpu_offload

        for name in names:
            module = placed.modules[name]
            cpu_offload(module, execution_device=torch.device(device), offload_buffers=False)
            placed.where[name] = "sequential"
            placed.undo_steps.append(lambda m=module: _remove_sequential(m))
    else:
        raise ValueError(f"unknown placement {placement}")
    vae = placed.modules.get("vae")
    if placement.vae_tiling and vae is not None and hasattr(vae, "enable_tiling"):
        vae.enable_tiling()
        placed.undo_steps.append(vae.disable_tiling)
    return placed


def _remove_group_offload(module) -> None:
    from diffusers.hooks import HookRegistry

    registry = getattr(module, "_diffusers_hook", None)
    if registry is None:
        return
    for sub in module.modules():
        hooks = getattr(sub, "_diffusers_hook", None)
        if isinstance(hooks, HookRegistry):
            for name in list(hooks.hooks):
                hooks.remove_hook(name, recurse=False)


def _remove_sequential(module) -> None:
    from accelerate.hooks import remove_hook_from_module

    remove_hook_from_module(module, recurse=True)  # accelerate puts the offloaded weights back on detach


def place(family: str, backend: str, pipes, ladder: list[Placement], start: Placement,
          device: str | None = None) -> Placed | None:
    """Place a family at `start`, or where it already is if that is lower down `ladder` (a
    family never climbs back up within a run). Without a GPU nothing moves (None). A
    torch.OutOfMemoryError while placing goes on down the ladder; the last one is raised."""
    import torch

    if device is None and not _cuda():
        return None
    device = device or "cuda"
    names = [str(p) for p in ladder]
    with _LOCK:
        current = _PLACED.get(family)
        if current is not None and str(current.placement) in names and str(start) in names \
                and names.index(str(current.placement)) >= names.index(str(start)):
            return current
        if current is not None:
            current.undo()
            _PLACED.pop(family, None)
        at = names.index(str(start)) if str(start) in names else 0
        error: BaseException | None = None
        for placement in ladder[at:]:
            try:
                placed = apply(backend, pipes, placement, device)
            except torch.OutOfMemoryError as oom:
                error = oom
                log.warning("%s: out of memory placing at %s; trying the next placement", family, placement)
                _free_after_failed(backend, pipes)
                continue
            _PLACED[family] = placed
            log.info("%s placed: %s", family, placement)
            return placed
        raise error  # type: ignore[misc]


def _free_after_failed(backend: str, pipes) -> None:
    from accelerate.hooks import remove_hook_from_module

    for _, module, _ in members(backend, pipes):
        remove_hook_from_module(module, recurse=True)
        module.to("cpu")
    from faceless.tasks.runtime.gpu import free_memory

    free_memory()


def placed(family: str) -> Placed | None:
    return _PLACED.get(family)


def forget(*families: str) -> None:
    """Drop the records of released families (the models registry calls this on release): a
    family loaded again is planned and placed again."""
    with _LOCK:
        for family in families or list(_PLACED):
            _PLACED.pop(family, None)
            _PLANNED.pop(family, None)


# -- the stage's side ---------------------------------------------------------------------------

_PLANNED: dict[str, object] = {}  # family -> its StagePlan, made once per process before it first loads


def gpu_memory_gib() -> float | None:
    """The GPU memory the plan may use: FACELESS_GPU_MEMORY (GiB) if set, else the free memory
    of this machine's GPU (None without one)."""
    import os

    from faceless.tasks.runtime.memory_plan import local_gpu_gib

    given = os.environ.get("FACELESS_GPU_MEMORY")
    return float(given) if given else local_gpu_gib()


def stage_plan(stage: str, family: str, backend: str, settings: dict):
    """The family's StagePlan, made the first time (from the memory free before it loads)."""
    from faceless.tasks.runtime.memory_plan import plan_stage

    with _LOCK:
        if family not in _PLANNED:
            gib = gpu_memory_gib()
            _PLANNED[family] = plan_stage(stage, backend, settings, gib) if gib else None
        return _PLANNED[family]


def ensure_placed(stage: str, family: str, backend: str, pipes, settings: dict) -> dict:
    """Place `family` for one run of `stage`: at the plan's placement, or lower when the
    settings (a degrade rung's model_cpu_offload / sequential_cpu_offload) or an earlier
    placement of the family ask for less. Returns what the manifest records: the placement and
    its predicted peak (GiB); without a GPU, placement "cpu"."""
    from faceless.tasks.runtime.memory_plan import PLACEMENTS, Placement

    plan = stage_plan(stage, family, backend, settings) if _cuda() else None
    if plan is None:
        return {"placement": "cpu", "predicted_peak_gib": None}
    ladder = [Placement.parse(name) for name, _ in plan.candidates]
    start = Placement.parse(plan.placement)
    floor = (settings.get("sequential_cpu_offload") and "sequential_offload") or \
        (settings.get("model_cpu_offload") and "model_offload") or None
    if floor and PLACEMENTS.index(start.name) < PLACEMENTS.index(floor):
        start = next((p for p in ladder if PLACEMENTS.index(p.name) >= PLACEMENTS.index(floor)), ladder[-1])
    done = place(family, backend, pipes, ladder, start)
    peaks = dict(plan.candidates)
    return {"placement": str(done.placement), "predicted_peak_gib": peaks.get(str(done.placement))}


def forget_plans() -> None:
    with _LOCK:
        _PLANNED.clear()
