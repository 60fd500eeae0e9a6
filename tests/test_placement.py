"""Placements on the tiny SDXL ensemble: each moves the components it claims and installs the
hooks it claims, base and refiner share one set of hooks, a family never climbs back up, and a
load-time OOM falls to the next placement.

There is no GPU here: the "GPU" is the device label `cpu:0`, distinct from the offload device
`cpu`, so every move the hooks make is seen (Placed.moves) while the tensors stay in host memory.
"""

from __future__ import annotations

import pytest
import torch

from faceless.tasks.backends import sdxl
from faceless.tasks.backends.native_pass import run_device
from faceless.tasks.runtime import placement as pl
from faceless.tasks.runtime.memory_plan import Placement
from faceless.tasks.backends.sdxl import base_then_refiner

pytestmark = pytest.mark.slow
GPU = "cpu:0"
SETTINGS = dict(num_inference_steps=2, guidance_scale=5.0, high_noise_frac=0.5, width=64, height=64)


@pytest.fixture(scope="module")
def pipes(tiny_home):
    base, refiner = sdxl.load_cached("tiny:sdxl-base", "tiny:sdxl-refiner")
    yield base, refiner
    pl.forget()


def run(pipes, placed) -> list[set[str]]:
    """Run the ensemble once and return what sat on the "GPU" after each move."""
    seen: list[set[str]] = []
    move = placed.move

    def watched(name, device):
        move(name, device)
        seen.append(placed.on_device())

    placed.move = watched
    try:
        base_then_refiner(*pipes, "a lighthouse at dusk", "", 1, SETTINGS)
    finally:
        placed.move = move
    return seen


def test_loaders_leave_the_pipelines_on_the_cpu(pipes):
    for _, module, _ in pl.members("sdxl-ensemble", pipes):
        assert {p.device.type for p in module.parameters()} == {"cpu"}


def test_members_list_shared_modules_once(pipes):
    names = [name for name, _, _ in pl.members("sdxl-ensemble", pipes)]
    assert sorted(names) == ["refiner_unet", "text_encoder", "text_encoder_2", "unet", "vae"]
    base, refiner = pipes
    assert base.text_encoder_2 is refiner.text_encoder_2 and base.vae is refiner.vae


def test_gpu_moves_everything_and_hooks_nothing(pipes):
    placed = pl.apply("sdxl-ensemble", pipes, Placement("gpu"), device=GPU)
    try:
        assert placed.on_device() == set(placed.modules)
        assert not any(hasattr(m, "_hf_hook") for m in placed.modules.values())
    finally:
        placed.undo()
    assert placed.on_device() == set()


def test_model_offload_keeps_one_component_at_a_time_through_both_pipelines(pipes):
    placed = pl.apply("sdxl-ensemble", pipes, Placement("model_offload"), device=GPU)
    try:
        assert placed.on_device() == set()  # nothing moves before it is called
        assert pipes[0]._execution_device == torch.device(GPU) == run_device(pipes[1])
        seen = run(pipes, placed)
        assert max(len(s) for s in seen) == 1
        came = [name for name, device in placed.moves if device == GPU]
        # the base's encoders, its UNet, the refiner's (shared) second encoder, its UNet, the VAE
        assert came == ["text_encoder", "text_encoder_2", "unet", "text_encoder_2", "refiner_unet", "vae"]
    finally:
        placed.undo()
    assert not any(hasattr(m, "_hf_hook") for m in placed.modules.values())


def test_encoders_leave_after_encoding(pipes):
    placed = pl.apply("sdxl-ensemble", pipes, Placement("encoders_leave"), device=GPU)
    try:
        staying = {"unet", "refiner_unet", "vae"}
        assert placed.on_device() == staying
        seen = run(pipes, placed)
        for on in seen:
            assert staying <= on and len(on - staying) <= 1  # one encoder visits at a time
        assert placed.on_device() == staying  # the encoders left once the UNets ran
    finally:
        placed.undo()


@pytest.mark.parametrize("kind", ["group_offload", "sequential_offload"])
def test_library_offloads_hook_every_component_and_undo(pipes, kind):
    placed = pl.apply("sdxl-ensemble", pipes, Placement(kind, vae_tiling=True), device="cpu")
    try:
        for name, module in placed.modules.items():
            hook = "_diffusers_hook" if kind == "group_offload" else "_hf_hook"  # block or leaf level
            assert any(getattr(sub, hook, None) is not None for sub in module.modules()), name
        assert placed.modules["vae"].use_tiling
        base_then_refiner(*pipes, "a lighthouse at dusk", "", 1, SETTINGS)
    finally:
        placed.undo()
    assert not placed.modules["vae"].use_tiling
    base_then_refiner(*pipes, "a lighthouse at dusk", "", 1, SETTINGS)  # runs plain again


def test_a_family_keeps_its_placement_and_only_moves_down(pipes):
    ladder = [Placement("gpu"), Placement("encoders_leave"), Placement("model_offload")]
    try:
        first = pl.place("sdxl", "sdxl-ensemble", pipes, ladder, ladder[1], device=GPU)
        assert str(first.placement) == "encoders_leave"
        assert pl.place("sdxl", "sdxl-ensemble", pipes, ladder, ladder[0], device=GPU) is first  # never up
        lower = pl.place("sdxl", "sdxl-ensemble", pipes, ladder, ladder[2], device=GPU)
        assert str(lower.placement) == "model_offload" and lower.on_device() == set()
        assert first.on_device() == set()  # the old placement was undone, not left on the GPU
    finally:
        pl.placed("sdxl").undo()
        pl.forget("sdxl")


def test_a_load_time_oom_falls_to_the_next_placement(pipes, monkeypatch):
    ladder = [Placement("gpu"), Placement("encoders_leave"), Placement("model_offload")]
    real = pl.apply

    def apply(backend, pipes_, placement, device="cuda"):
        if placement.name != "model_offload":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")
        return real(backend, pipes_, placement, device)

    monkeypatch.setattr(pl, "apply", apply)
    try:
        placed = pl.place("sdxl", "sdxl-ensemble", pipes, ladder, ladder[0], device=GPU)
        assert str(placed.placement) == "model_offload"
    finally:
        pl.placed("sdxl").undo()
        pl.forget("sdxl")
    monkeypatch.setattr(pl, "apply", lambda *a, **k: (_ for _ in ()).throw(torch.OutOfMemoryError("OOM")))
    with pytest.raises(torch.OutOfMemoryError):
        pl.place("sdxl", "sdxl-ensemble", pipes, ladder, ladder[0], device=GPU)


def test_without_a_gpu_the_stage_records_cpu_and_moves_nothing(pipes):
    assert pl.ensure_placed("keyframe", "sdxl", "sdxl-ensemble", pipes, {}) == {
        "placement": "cpu", "predicted_peak_gib": None}
    assert pl.placed("sdxl") is None


def test_the_ip_adapter_image_encoder_is_placed_with_the_family_and_its_weights_with_the_unet(pipes):
    base, refiner = pipes
    settings = {**SETTINGS, "references": {"ip_adapter": "tiny:ip-adapter-sdxl", "scale": 0.6}}
    try:
        image = sdxl.adapter_inputs(base, settings, [])  # loaded as the stage loads it (a grey stand-in, scale 0)
        names = [name for name, _, _ in pl.members("sdxl-ensemble", pipes)]
        # the image encoder is a member (an encoder); the adapter's weights are inside the base UNet
        assert "image_encoder" in names and "ip_adapter" not in names
        assert any(name.startswith("encoder_hid_proj") for name, _ in base.unet.named_parameters())
        placed = pl.apply("sdxl-ensemble", pipes, Placement("model_offload"), device=GPU)
        try:
            base_then_refiner(base, refiner, "a lighthouse at dusk", "", 1, SETTINGS, ip_adapter_image=image)
            came = [name for name, device in placed.moves if device == GPU]
            assert came.index("image_encoder") < came.index("unet")  # it visited the GPU to encode the picture
        finally:
            placed.undo()
    finally:
        base.unload_ip_adapter()
        base._faceless_ip_adapter = None
    assert "image_encoder" not in [name for name, _, _ in pl.members("sdxl-ensemble", pipes)]
