"""benchmarks/gpu_check.py (one line without a GPU; the whole procedure at toy size with --toy,
studio and modern), benchmarks/gpu_work.py and modern_work.py (TFLOP counted on the meta device:
old vs new design, studio vs modern), and the full-size architectures gpu_models.py builds on a
GPU (parameter counts, on the meta device)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_work  # noqa: E402
import modern_work  # noqa: E402
from faceless.tasks.settings import load_profile  # noqa: E402

SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
@pytest.mark.slow  # a fresh process importing torch, diffusers and prefect
def test_without_a_gpu_it_prints_one_line_and_exits_0():
    result = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu-check: no CUDA GPU here"), result.stdout
    assert "nothing measured" in lines[0] and not result.stderr.strip()


@pytest.mark.skipif(torch.cuda.is_available(), reason="--toy is the CPU check")
@pytest.mark.slow  # builds every model family of both profiles and renders each
def test_toy_run_goes_end_to_end_through_both_passes_of_both_profiles(tmp_path, prefect_server):
    # --skip-work: step 1's FLOP counts are the same on every machine, and counting them again in
    # a fresh process took minutes; test_work_section_prints_the_counts_and_both_tables checks them.
    # Its renders run on the session's server, as on a machine with a stack (a temporary server
    # for each of them cost ~20 CPU-s more).
    env = {**os.environ, "PREFECT_API_URL": prefect_server["url"], "PREFECT_HOME": str(prefect_server["home"])}
    started = time.monotonic()
    result = subprocess.run([sys.executable, str(SCRIPT), "--toy", "--skip-work", "--scratch", str(tmp_path / "scratch")],
                            capture_output=True, text=True, timeout=1200, env=env)
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "GPU work per denoising step" not in out
    # Each profile: both renders, their stage tables, windows or passes, families.
    assert out.count(": completed;") == 2, out  # one pass each: the second pass's memory cap is CUDA-only
    assert "=== studio ===" in out and "=== modern ===" in out
    studio, modern = out.split("=== modern ===")
    for stage in ("plan", "narrate", "align", "keyframe", "animate", "compose"):
        assert f"\n{stage} " in studio
    for stage in ("plan", "narrate", "keyframe", "animate", "compose"):
        assert f"\n{stage} " in modern
    assert studio.count("SVD windows per shot:") == 1 and modern.count("Wan passes per shot: 1 of ") == 1
    assert modern.count("per family: kokoro (narrate)") == 1 and "flux-schnell (keyframe)" in modern
    # The toy run keeps the tiny shot writer, released after its stage.
    assert "model families, in the order the flow released them: kokoro, writer, flux, flux2, wan" in modern
    assert "narrate.speed" in modern  # the random voice's pace, set from a measurement
    assert out.count("pass 2 skipped: the memory cap is CUDA-only") == 2 and "attempts  degraded" in out
    assert "pass 1 completed: studio yes, modern yes" in out
    # Studio's cast references: the IP-Adapter built like the other families (seconds, GiB on
    # disk), its reference drawn, and its load and weights reported under the render.
    built = next(line for line in studio.splitlines() if line.startswith("  ip-adapter "))
    assert " GiB on disk  image encoder 43,392, adapter 65,920; tiny" in built, built  # the tiny twin's sizes
    assert "\ncast " in studio and "sdxl-ensemble (cast) " in studio
    assert "left out at full size (no random-weight IP-Adapter" not in out
    assert "cast references: IP-Adapter loaded into the SDXL base in " in studio
    assert "image encoder 43,392 + adapter 65,920 parameters" in studio
    assert "its GPU memory is measured on CUDA only" in studio and "cast references" not in modern
    # Modern's cast shots: klein built beside schnell, and drawing the shots that show the member.
    assert "\n  flux2-klein " in modern and "\ncast " in modern and "flux-schnell (cast) " in modern
    assert "cast shots: FLUX.2 [klein] drew " in modern and "its GPU memory is measured on CUDA only" in modern
    # The models were built in the scratch folder and each profile points at its own.
    # (The shot writer stays the registry's tiny twin: at full size the check writes by rules.)
    studio_yaml, modern_yaml = ((tmp_path / "scratch" / name / "profile.yaml").read_text()
                                .replace("tiny:shot-writer", "") for name in ("studio", "modern"))
    for family in ("svd", "ip-adapter"):
        assert str(tmp_path / "scratch" / "studio" / "models" / family) in studio_yaml
    assert "tiny:" not in studio_yaml
    for family in ("kokoro", "flux-schnell", "flux2-klein", "wan"):
        assert str(tmp_path / "scratch" / "modern" / "models" / family) in modern_yaml
    assert "tiny:" not in modern_yaml
    assert seconds < 900


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_an_unknown_profile_is_refused():
    result = subprocess.run([sys.executable, str(SCRIPT), "--toy", "--profiles", "studio,nope"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "unknown nope" in result.stderr


@pytest.mark.slow  # counts FLOPs through full-size architectures
def test_meta_device_counts_match_the_published_tflop_per_step():
    for name, (counted, known) in gpu_work.known_tflop().items():
        assert abs(counted - known) / known < 0.15, (name, counted, known)
    per_step = gpu_work.step_tflop(load_profile("studio"))
    # Studio's 768x1344 keyframes have 1024x1024's pixel count: about the same work.
    assert 0.85 < per_step["sdxl_base"] / 13.4 < 1.15 and 0.85 < per_step["sdxl_refiner"] / 14.3 < 1.15
    assert 0.85 < per_step["svd"] / 160 < 1.15


def test_legacy_windows_chain_24_new_frames_a_window():
    assert gpu_work.legacy_windows(1.0) == 1  # 25 frames: one window
    assert gpu_work.legacy_windows(1.01) == 2
    assert gpu_work.legacy_windows(12.0) == 12  # a 12 s two-sentence scene
    assert gpu_work.legacy_windows(3.0, fps_conditioning=4, num_frames=8) == 2  # the tiny profile


@pytest.mark.slow  # counts FLOPs through full-size architectures on the meta device
def test_gpu_work_splits_the_sdxl_schedule_and_counts_svd_steps():
    studio = load_profile("studio")
    work = gpu_work.gpu_work(3, 5, studio)
    assert (work["sdxl_steps"], work["sdxl_base_steps"], work["sdxl_refiner_steps"]) == (300, 240, 60)
    assert (work["svd_windows"], work["svd_steps"]) == (5, 200)
    assert work["pflop"] == pytest.approx(work["sdxl_pflop"] + work["svd_pflop"])
    assert 30 < work["svd_pflop"] < 34  # 200 steps x ~160 TFLOP


@pytest.fixture(scope="module")
def night_train():
    """(plan, timing) of the 60 s story at studio settings: one Piper narration for the module."""
    return gpu_work.piper_timing(gpu_work.NIGHT_TRAIN, load_profile("studio"))


@pytest.mark.slow  # narrates a 60 s story
def test_one_window_per_shot_needs_at_most_a_third_of_the_svd_steps_for_the_60_second_story(night_train):
    studio = load_profile("studio")
    plan, timing = night_train
    assert 55 < timing["duration"] < 66 and len(timing["sentences"]) == 14
    result = gpu_work.before_after(studio, plan, timing)
    before, after = result["before"], result["after"]
    assert before["keyframes"] == 7 and after["keyframes"] >= 12
    assert all(s["seconds"] <= 6.0 + 1e-9 and s["windows"] == 1 for s in result["shots"]), result["shots"]
    assert after["svd_steps"] * 3 <= before["svd_steps"], (before, after)
    assert after["pflop"] < before["pflop"]


@pytest.mark.slow  # builds every full-size architecture
def test_full_size_architectures_match_the_published_parameter_counts():
    # Built on the meta device (shapes, no memory): what gpu_check builds on a GPU.
    from gpu_models import full_size_pipelines, full_size_voice, millions

    sdxl, svd = full_size_pipelines("meta", torch.float16)
    base, refiner = sdxl()
    pipe = svd()
    assert round(millions(base.unet), 1) == 2567.5
    assert round(millions(refiner.unet), 1) == 2259.5
    assert round(millions(base.text_encoder_2), 1) == 694.7
    assert round(millions(pipe.unet), 1) == 1524.6
    assert refiner.text_encoder_2 is base.text_encoder_2 and refiner.vae is base.vae
    assert base.vae.config.force_upcast and base.unet.dtype == torch.float16

    bark, whisper = full_size_voice("meta")
    # suno/bark-small: three GPTs of 12 layers x 768 (85 M in their blocks each, the model
    # card's "80 M"), the real token-id vocabularies and the 24 kHz EnCodec; 404 M in all
    # (its fp16 checkpoint is 809 MB). Whisper large-v3: 1,543,490,560 parameters ("1.55 B").
    assert round(millions(bark), 1) == 404.4
    assert round(millions(bark.codec_model), 1) == 14.9
    for sub in (bark.semantic, bark.coarse_acoustics, bark.fine_acoustics):
        assert millions(sub.layers) == pytest.approx(85.0, abs=0.1)
    assert sum(p.numel() for p in whisper.parameters()) == 1_543_490_560
    assert whisper.config.vocab_size == 51866 and whisper.config.num_mel_bins == 128


@pytest.mark.slow  # builds full-size architectures on the meta device
def test_the_full_size_ip_adapter_has_h94s_sizes_and_loads_into_the_sdxl_base_unet():
    # What gpu_models builds on a GPU, made on the meta device through the same builder
    # (tasks/models/tiny.py ip_adapter_parts) as its folder and the tiny twin.
    from gpu_models import full_size_unet, ip_adapter_sizes, millions

    from faceless.tasks.backends import sdxl
    from faceless.tasks.models import tiny

    encoder, adapter = ip_adapter_sizes()
    # h94/IP-Adapter's sdxl_models/image_encoder: OpenCLIP ViT-bigG/14, 1844.9 M (its model
    # card); ip-adapter_sdxl.safetensors: 703 MB in fp16.
    assert round(millions(encoder), 1) == 1844.9 and encoder.dtype == torch.float16
    assert (encoder.config.hidden_size, encoder.config.num_hidden_layers, encoder.config.projection_dim,
            encoder.config.image_size, encoder.config.patch_size) == (1664, 48, 1280, 224, 14)
    assert adapter == 351_285_248
    unet = full_size_unet("meta", torch.float16)
    plain = sum(p.numel() for p in unet.parameters())
    _, weights = tiny.ip_adapter_parts(unet, tiny.published("ip-adapter-sdxl-image-encoder"), "meta", torch.float16)
    assert weights["image_proj.proj.weight"].shape == (4 * 2048, 1280)
    assert len([k for k in weights if k.endswith("to_k_ip.weight")]) == 70  # every cross-attention of the base
    sdxl._load_adapter_weights(unet, weights)  # diffusers' loader takes every key, at these shapes
    assert sum(p.numel() for p in unet.parameters()) == plain + adapter


@pytest.mark.slow  # builds the tiny SDXL base
def test_the_ip_adapter_builder_makes_a_folder_load_ip_adapter_reads(tiny_home, tmp_path):
    # The same function at toy size, saved and loaded the way the keyframe backend loads it.
    from gpu_models import ip_adapter

    from faceless.tasks.backends import sdxl

    base, _ = sdxl.load_cached("tiny:sdxl-base", "tiny:sdxl-refiner")
    try:
        note = ip_adapter(tmp_path / "ip-adapter", base.unet, False, "cpu", None)
        assert note.endswith("; tiny") and (tmp_path / "ip-adapter" / "sdxl_models" / "image_encoder" / "config.json").is_file()
        sdxl.ensure_ip_adapter(base, str(tmp_path / "ip-adapter"))
        assert base.image_encoder is not None and base.unet.encoder_hid_proj is not None
    finally:
        base.unload_ip_adapter()
        base._faceless_ip_adapter = None


@pytest.mark.slow  # full-size architectures on the meta device, or a 60 s narration
def test_modern_full_size_architectures_match_the_published_parameter_counts():
    # What gpu_models builds on a GPU, here on the meta device (shapes, no memory).
    from gpu_models import full_size_flux, full_size_wan, millions

    flux = full_size_flux("meta", torch.bfloat16)
    # FLUX.1-schnell: the 12 B transformer (11,901,408,320 in the published checkpoint counts
    # its guidance-free variant's 11.9 B), T5-XXL's encoder, CLIP-L's text model, the 16-channel VAE.
    assert round(millions(flux.transformer), 1) == 11891.2
    assert round(millions(flux.text_encoder_2), 1) == 4762.3
    assert round(millions(flux.text_encoder), 1) == 123.1
    assert round(millions(flux.vae), 1) == 83.8
    assert flux.transformer.dtype == torch.bfloat16 and flux.tokenizer_2.model_max_length == 512
    assert len(flux.tokenizer_2) <= flux.text_encoder_2.config.vocab_size  # every id has a row
    wan = full_size_wan("meta", torch.bfloat16)
    # Wan 2.2 TI2V-5B: the 5 B transformer, UMT5-XXL's encoder, the 2.2 VAE (kept in fp32).
    assert round(millions(wan.transformer), 1) == 4999.8
    assert round(millions(wan.text_encoder), 1) == 5680.9
    assert round(millions(wan.vae), 1) == 704.7
    assert wan.vae.dtype == torch.float32 and wan.transformer.dtype == torch.bfloat16
    assert wan.config.expand_timesteps


@pytest.mark.slow  # full-size architectures on the meta device, or a 60 s narration
def test_wan_pass_work_from_three_counts_equals_a_direct_count():
    from wan_work import transformer_tflop

    fitted = modern_work.wan_pass(704, 1280, 49, 50)
    assert fitted["step_tflop"] == pytest.approx(transformer_tflop(704, 1280, 49), rel=1e-9)
    assert fitted["steps"] == 50 and fitted["extra_tflop"] > 0


@pytest.mark.slow  # counts FLOPs through full-size architectures, with the module's narration
def test_work_section_prints_the_counts_and_both_tables(night_train, capsys):
    # gpu_check's step 1, in this process: the counts are cached here, shared with the tests beside it.
    import gpu_check

    gpu_check.work_section(0.4 * 990, narration=night_train)
    out = capsys.readouterr().out
    # The GPU work section: per-step counts and the before/after table for the 60 s story.
    assert "SDXL base" in out and "SVD-XT" in out and "published 160.0" in out
    assert "60-second story at studio settings" in out
    for row in ("BEFORE", "AFTER", "SVD-XT windows", "SVD-XT steps", "estimated PFLOP", "SVD steps after / before"):
        assert row in out
    # ... and studio next to modern.
    assert "studio and modern side by side (FLOP counts" in out
    for row in ("keyframe TFLOP a step", "FLUX.1-schnell", "animate windows / passes", "Wan passes at 24 fps",
                "total PFLOP", "modern / studio"):
        assert row in out


@pytest.mark.slow  # full-size architectures on the meta device, or a 60 s narration
def test_studio_and_modern_side_by_side_for_the_60_second_story(night_train):
    side = modern_work.side_by_side(gpu_work.NIGHT_TRAIN, narration=night_train)
    studio, modern = side["studio"], side["modern"]
    assert studio["work"]["pflop"] == pytest.approx(gpu_work.before_after(
        load_profile("studio"), *night_train)["after"]["pflop"])  # the same count as the before/after table
    # Modern: shots of at most 5 s, each one Wan pass of the next 4k+1 frames over its clip, at most 145.
    assert all(s["seconds"] <= 5.0 + 1e-9 and s["windows"] == 1 for s in modern["shots"]), modern["shots"]
    assert all(s["frames"] <= s["native_frames"] <= min(145, s["frames"] + 3) and s["native_frames"] % 4 == 1
               for s in modern["shots"])
    work = modern["work"]
    # modern's distilled sampler: 3 steps a pass (modern-quality's 50 are in the story_work test).
    assert work["keyframe_steps"] == 4 * work["shots"] and work["animate_steps"] == 3 * work["shots"]
    assert 55 < work["keyframe_step_tflop"][0] < 65  # FLUX at 720x1280, 3,600 + 256 tokens, no guidance
    assert work["pflop"] == pytest.approx(work["keyframe_pflop"] + work["animate_pflop"] + work["extra_pflop"])
    assert side["ratio"] == pytest.approx(work["pflop"] / studio["work"]["pflop"])
    assert side["ratio"] < 1  # the distilled sampler: less GPU work than studio
    rows = dict((label, (a, b)) for label, a, b in modern_work.side_by_side_table(side))
    assert rows["total PFLOP"] == (f"{studio['work']['pflop']:.1f}", f"{work['pflop']:.1f}")


@pytest.mark.slow  # full-size architectures on the meta device, or a 60 s narration
def test_story_work_counts_every_stage_and_modern_fits_in_three_h200_minutes(night_train):
    import json

    import story_work

    result = story_work.story_work(gpu_work.NIGHT_TRAIN, narration=night_train)
    json.dumps(result)  # what --json prints
    studio, modern, quality = (result["profiles"][name] for name in ("studio", "modern", "modern-quality"))
    for row in (studio, modern, quality):
        assert set(row["pflop"]) == set(story_work.STAGES) and all(v > 0 for v in row["pflop"].values())
        assert row["total_pflop"] == pytest.approx(sum(row["pflop"].values()), abs=0.01)
        assert row["h200_minutes_at_40pct"] == pytest.approx(row["total_pflop"] * 1000 / 396 / 60, rel=1e-3)
    # The bar: an eighth of the 50-step count (647.6 PFLOP), three minutes of an H200.
    assert modern["total_pflop"] <= 81 and modern["h200_minutes_at_40pct"] <= 3
    assert (modern["sampler"], modern["steps"], modern["guided"]) == ("distilled", 3, False)
    # modern-quality: the same shots, Wan's 50 guided steps, counted without its step cache.
    assert quality["shots"] == modern["shots"] and not quality["step_cache_counted"]
    # (rows are rounded to the TFLOP for the JSON)
    assert quality["pflop"]["denoise"] == pytest.approx(modern["pflop"]["denoise"] * 50 * 2 / 3, rel=1e-4)
    assert quality["pflop"]["vae_decode"] == pytest.approx(modern["pflop"]["vae_decode"])
    # The same work as the side-by-side table's, but the text encoders once a run.
    side = modern_work.side_by_side(gpu_work.NIGHT_TRAIN, narration=night_train,
                                    modern=load_profile("modern-quality"))["modern"]["work"]
    assert quality["pflop"]["denoise"] == pytest.approx(side["animate_pflop"], rel=1e-4)
    assert studio["pflop"]["denoise"] == pytest.approx(gpu_work.before_after(
        load_profile("studio"), *night_train)["after"]["svd_pflop"], rel=1e-4)
