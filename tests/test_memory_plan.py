"""The memory plan and `faceless gpu-plan`: placements chosen from the table, before anything loads.

Fast: the plan reads only tasks/runtime/memory_table.json (no torch, no model)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from faceless.flows import cli
from faceless.tasks.runtime import memory_plan as mp
from faceless.tasks.settings import load_profile


def plan(profile: str, gib: float) -> mp.MemoryPlan:
    return mp.make_plan(load_profile(profile), gib, profile)


def test_table_counts_the_published_sizes():
    table = mp.table()
    # FACTS.md: SDXL base UNet 2567.5 M, refiner 2259.5 M, bigG 694.7 M, SVD-XT UNet 1524.6 M.
    assert round(table["sdxl-ensemble"]["unet"]["parameters"] / 1e6, 1) == 2567.5
    assert round(table["sdxl-ensemble"]["refiner_unet"]["parameters"] / 1e6, 1) == 2259.5
    assert round(table["sdxl-ensemble"]["text_encoder_2"]["parameters"] / 1e6, 1) == 694.7
    assert round(table["svd"]["unet"]["parameters"] / 1e6, 1) == 1524.6
    flux_gib = sum(p["parameters"] * p["bytes_per_parameter"] for p in table["flux-schnell"].values()) / mp.GIB
    assert 31 < flux_gib < 32  # "FLUX.1-schnell in bf16 is about 31 GiB of weights"


def test_the_ip_adapter_is_counted_only_with_references():
    table = mp.table()["sdxl-ensemble"]
    # h94/IP-Adapter's sdxl_models: the ViT-bigG/14 image encoder (1844.9 M, its model card) and
    # the adapter, 4 image tokens of 2048 from a 1280 embedding and to_k_ip/to_v_ip for each of
    # the base UNet's 70 cross-attentions (its 703 MB fp16 file).
    assert round(table["image_encoder"]["parameters"] / 1e6, 1) == 1844.9
    assert round(table["ip_adapter"]["parameters"] / 1e6, 1) == 351.3
    assert table["ip_adapter"]["joins"] == "unet" and table["image_encoder"]["when"] == "references"
    studio = load_profile("studio")["keyframe"]
    plain = {k: v for k, v in studio.items() if k != "references"}
    assert studio["references"] and set(mp.components("sdxl-ensemble", plain)) == {
        "text_encoder", "text_encoder_2", "unet", "refiner_unet", "vae"}
    parts = mp.components("sdxl-ensemble", studio)
    assert set(parts) == {"text_encoder", "text_encoder_2", "unet", "refiner_unet", "vae", "image_encoder"}
    assert parts["unet"]["parameters"] == table["unet"]["parameters"] + table["ip_adapter"]["parameters"]
    # Everything on the GPU: both more; one component at a time: the UNet carries the adapter.
    gpu, offload = mp.Placement("gpu"), mp.Placement("model_offload")
    more = lambda placement: mp.predict_peak("sdxl-ensemble", studio, placement) - mp.predict_peak(  # noqa: E731
        "sdxl-ensemble", plain, placement)
    assert more(gpu) == 2 * (table["image_encoder"]["parameters"] + table["ip_adapter"]["parameters"])
    assert more(offload) == 2 * table["ip_adapter"]["parameters"]
    assert mp.make_plan(load_profile("fast"), 24).stage("keyframe").predicted_peak_gib == pytest.approx(
        mp.predict_peak("sdxl-ensemble", plain, gpu) / mp.GIB, abs=0.01)  # fast takes no references


def test_modern_on_24_gib_fits_every_stage():
    result = plan("modern", 24)
    assert result.fits
    # The keyframe stage twice: schnell, then klein for the shots showing cast members.
    assert [(s.stage, s.backend) for s in result.stages] == [
        ("narrate", "kokoro"), ("storyboard", "shot-writer"), ("keyframe", "flux-schnell"),
        ("keyframe", "flux2-klein"), ("animate", "wan")]
    for stage in result.stages:
        assert stage.predicted_peak_gib + mp.RESERVE_GIB <= 24
        # FLUX.1 and Wan must offload there; klein (4B) fits whole; the voice and the shot
        # writer are one piece each.
        assert stage.placement != "gpu" or stage.backend in ("kokoro", "shot-writer", "flux2-klein")


@pytest.mark.parametrize("gib, placement", [(12, "model_offload"), (16, "model_offload"), (24, "gpu")])
def test_klein_is_planned_for_its_own_components_at_the_keyframe_size(gib, placement):
    profile = load_profile("modern")
    [klein] = [s for s in mp.make_plan(profile, gib).stages if s.backend == "flux2-klein"]
    assert klein.fits and klein.placement == placement, klein
    section = {**profile["keyframe"]["references"], "width": 720, "height": 1280}
    assert klein.candidates == mp.candidates("flux2-klein", section)
    # klein's own table rows (Qwen3-4B, a 4B transformer), not schnell's: about 15 GiB of weights.
    weights = sum(p["parameters"] * p["bytes_per_parameter"] for p in mp.components("flux2-klein", section).values())
    assert 14 < weights / mp.GIB < 16
    assert dict(klein.candidates)["gpu"] == pytest.approx(mp.predict_peak("flux2-klein", section, mp.Placement()) / mp.GIB,
                                                          abs=0.01)
    # More references, more tokens: a larger transformer peak.
    assert mp.predict_peak("flux2-klein", {**section, "max_references": 1}, mp.Placement()) < \
        mp.predict_peak("flux2-klein", section, mp.Placement())


def test_studio_on_12_gib_fits():
    assert plan("studio", 12).fits


def test_modern_on_141_gib_keeps_flux_and_wan_wholly_on_the_gpu():
    result = plan("modern", 141)
    assert result.stage("keyframe").placement == "gpu"
    assert result.stage("animate").placement == "gpu"


def test_modern_on_8_gib_does_not_fit_and_says_what_does():
    result = plan("modern", 8)
    assert not result.fits
    need = result.smallest_fitting_gib()
    assert need > 8
    assert plan("modern", need).fits and not plan("modern", need - 1).fits
    assert f"at least {need} GiB" in result.needs_line()


def test_placements_get_leaner_down_the_ladder():
    for profile in ("studio", "modern", "fast"):
        for stage in plan(profile, 24).stages:
            peaks = [peak for _, peak in stage.candidates]
            assert peaks == sorted(peaks, reverse=True) and len(set(peaks)) == len(peaks)
            names = [name.split("+")[0] for name, _ in stage.candidates]
            assert names == sorted(names, key=mp.PLACEMENTS.index)


def test_svd_never_tiles_its_vae():
    assert not any(p.vae_tiling for p in mp.ladder("svd"))
    assert any(p.vae_tiling for p in mp.ladder("wan"))


def test_a_smaller_size_needs_less():
    big, small = load_profile("modern"), load_profile("modern")
    small["animate"] = {**small["animate"], "resolution_scale": 0.5}
    peak = lambda s: mp.predict_peak("wan", s["animate"], mp.Placement("model_offload"))  # noqa: E731
    assert peak(small) < peak(big)


def test_placement_names_round_trip():
    for placement in mp.ladder("flux-schnell"):
        assert mp.Placement.parse(str(placement)) == placement
    with pytest.raises(ValueError):
        mp.Placement.parse("everywhere")


def test_below_lists_the_rest_of_the_ladder():
    stage = plan("modern", 24).stage("keyframe")
    assert [str(p) for p in mp.placements_below(stage)] == ["group_offload", "sequential_offload"]


@pytest.mark.parametrize("gib,code", [(24, 0), (141, 0), (8, 3)])
def test_cli_exit_codes_and_json(gib, code, capsys):
    assert cli.main(["gpu-plan", "modern", "--gpu-memory", str(gib), "--json"]) == code
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert {s["stage"] for s in data["stages"]} == {"storyboard", "narrate", "keyframe", "animate"}
    for stage in data["stages"]:
        assert set(stage) == {"stage", "backend", "placement", "predicted_peak_gib", "fits"}
    if code == 3:
        assert len(err.strip().splitlines()) == 1 and "needs at least" in err


def test_cli_table_and_studio(capsys):
    assert cli.main(["gpu-plan", "studio", "--gpu-memory", "12"]) == 0
    out = capsys.readouterr().out
    assert "keyframe" in out and "sdxl-ensemble" in out and "GiB" in out


def test_cli_without_a_gpu_needs_the_flag(capsys, monkeypatch):
    monkeypatch.setattr(mp, "local_gpu_gib", lambda: None)
    assert cli.main(["gpu-plan", "modern"]) == 2
    assert "--gpu-memory" in capsys.readouterr().err


def test_gpu_plan_does_not_import_torch():
    code = ("import sys; from faceless.flows import cli; "
            "rc = cli.main(['gpu-plan', 'modern', '--gpu-memory', '24']); "
            "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_gpu_check_sets_predicted_beside_measured(capsys):
    from conftest import ROOT

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gpu_check

    result = {"settings": load_profile("modern"), "cap_gib": 24.0, "total_gib": 80.0,
              "stage_peaks": {"keyframe": 21.7, "animate": 17.9}, "family_peaks": {"flux": 21.5, "flux2": 16.2},
              "stages": [{"stage": "keyframe", "backend": "flux-schnell",
                          "placement": {"placement": "model_offload", "predicted_peak_gib": 22.59}},
                         {"stage": "keyframe", "backend": "flux2-klein",
                          "placement": {"placement": "gpu", "predicted_peak_gib": 17.52}},
                         {"stage": "animate", "placement": {"placement": "model_offload", "predicted_peak_gib": 18.47}}]}
    rows = {(row["stage"], row["backend"]): row for row in gpu_check.prediction_rows(result)}
    schnell, klein = rows[("keyframe", "flux-schnell")], rows[("keyframe", "flux2-klein")]
    assert schnell["planned"] == "model_offload" and schnell["used"] == "model_offload"
    # Two backends in one stage: each measured by its family's peak, each with its own placement.
    assert schnell["measured_gib"] == 21.5 and klein["measured_gib"] == 16.2 and klein["used"] == "gpu"
    assert klein["planned"] == "gpu" and rows[("narrate", "kokoro")]["measured_gib"] is None
    assert rows[("animate", "wan")]["predicted_gib"] == plan("modern", 24).stage("animate").predicted_peak_gib
    assert rows[("animate", "wan")]["measured_gib"] == 17.9
    gpu_check.print_prediction(result)
    out = capsys.readouterr().out
    assert "predicted" in out and "measured" in out and "16.20" in out


def test_run_summary_shows_each_gpu_stage_placement():
    from faceless.flows import report

    stages = [{"stage": "plan", "scene": None, "placement": None},
              {"stage": "keyframe", "scene": 0, "placement": {"placement": "model_offload", "predicted_peak_gib": 22.59}},
              {"stage": "keyframe", "scene": 1, "placement": {"placement": "model_offload", "predicted_peak_gib": 22.59}},
              {"stage": "animate", "scene": 0, "placement": {"placement": "cpu", "predicted_peak_gib": None}}]
    assert report.placements(stages) == ("keyframe: `model_offload` (predicted peak 22.59 GiB); animate: `cpu`")
    assert report.placements([{"stage": "plan", "scene": None}]) == "none"
