"""Model wiring of the studio path on tiny models: ensemble hand-over in latents, chained SVD
windows, models reused across scenes and released, and the missing-weights check."""

from __future__ import annotations

import pytest
from PIL import Image

from faceless.tasks import models
from faceless.tasks.backends import sdxl, svd
from faceless.tasks.backends.svd import generate, window_plan
from faceless.tasks.backends.sdxl import base_then_refiner
from faceless.tasks.stages.keyframe import keyframe
from faceless.tasks.settings import load_profile


def test_refiner_takes_the_base_latents_not_a_decoded_picture(tiny_home):
    base, refiner = sdxl.load_cached("tiny:sdxl-base", "tiny:sdxl-refiner")
    settings = {"width": 64, "height": 96, "num_inference_steps": 10, "high_noise_frac": 0.8, "guidance_scale": 5.0}
    seen = {"encode": 0, "decode": 0, "refiner_inputs": []}
    hooks = [
        base.vae.encoder.register_forward_hook(lambda *a: seen.__setitem__("encode", seen["encode"] + 1)),
        base.vae.decoder.register_forward_hook(lambda *a: seen.__setitem__("decode", seen["decode"] + 1)),
        refiner.unet.register_forward_pre_hook(lambda module, args: seen["refiner_inputs"].append(args[0].clone())),
    ]
    try:
        image, latents = base_then_refiner(base, refiner, "a fox", "blurry", 11, settings)
    finally:
        for hook in hooks:
            hook.remove()
    # Nothing was encoded back from pixels, and pixels were made once, at the very end.
    assert seen["encode"] == 0 and seen["decode"] == 1
    # 100 steps split at 0.8 is 80 + 20: here 10 steps, 8 base + 2 refiner UNet calls, the first
    # of which denoises exactly the latents the base handed over (scaled by the scheduler).
    assert len(seen["refiner_inputs"]) == 2
    first = seen["refiner_inputs"][0]
    assert first.shape[0] == 2 and first.shape[1:] == latents.shape[1:]  # with and without the prompt
    ratio = (first[:1] / latents).flatten()
    assert float(ratio.std()) < 1e-3, "the refiner's first input is the base latents, only rescaled"
    assert image.size == (64, 96)


class Recorder:
    """The real SVD pipeline, with each window's conditioning image and output kept for the test."""

    def __init__(self, pipe):
        self.pipe, self.calls = pipe, []

    def __call__(self, image, **kwargs):
        result = self.pipe(image, **kwargs)
        self.calls.append((image.copy(), [frame.copy() for frame in result.frames[0]]))
        return result


def test_chained_windows_continue_from_the_last_frame_without_repeating_it(tiny_home):
    pipe = Recorder(svd.load_cached("tiny:svd"))
    settings = {"width": 64, "height": 64, "num_frames": 4, "num_inference_steps": 2, "motion_bucket_id": 180,
                "noise_aug_strength": 0.02, "decode_chunk_size": 4, "fps_range": [2, 24], "max_windows": 2}
    keyframe_image = Image.new("RGB", (90, 160), (200, 120, 40))
    # A 2 s shot: one window's 3 frame intervals would come 1.5 a second, under fps_range's 2,
    # so a second window continues the first: 4 frames, then 3 new ones, at 3 frames a second.
    windows, fps = window_plan(2.0, settings)
    assert (windows, fps) == (2, 3)
    frames = generate(pipe, keyframe_image, settings, windows, fps, seed=5)
    assert len(pipe.calls) == 2
    assert len(frames) == 4 + 3
    windows = [out for _, out in pipe.calls]
    expected = windows[0] + windows[1][1:]
    assert [f.tobytes() for f in frames] == [f.tobytes() for f in expected]
    for (condition, _), previous in zip(pipe.calls[1:], windows):
        assert condition.tobytes() == previous[-1].tobytes(), "each window starts from the last frame"
    # The first window is conditioned on the keyframe cropped to SVD's size, not stretched.
    assert pipe.calls[0][0].size == (64, 64)


def test_models_are_loaded_once_for_all_scenes_and_released_on_request(tiny_home, tmp_path):
    settings = {**load_profile("tiny")["keyframe"], "width": 64, "height": 64,
                "num_inference_steps": 2, "high_noise_frac": 0.5}
    sdxl.load_cached(settings["base"], settings["refiner"])
    loads = models.LOADS["sdxl"]
    for index in range(3):
        folder = tmp_path / f"scene-{index}"
        folder.mkdir()
        keyframe({"prompt": f"shot {index}", "prompt_2": "", "description": f"shot {index}", "negative_prompt": "",
                  "seed": index}, index, settings, folder)
        assert (folder / "keyframe.png").is_file()
    assert models.LOADS["sdxl"] == loads, "three scenes, no reload"
    pipelines = sdxl.load_cached(settings["base"], settings["refiner"])
    assert models.release("sdxl") == ["sdxl"]
    again = sdxl.load_cached(settings["base"], settings["refiner"])
    assert models.LOADS["sdxl"] == loads + 1 and again[0] is not pipelines[0]


def test_missing_weights_are_named_together_with_how_to_fetch_them(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf" / "hub"))
    profile = load_profile("studio")
    profile["keyframe"]["refiner"] = str(tmp_path / "no-such-folder")
    with pytest.raises(models.ModelMissingError) as raised:
        models.require(profile)
    message = str(raised.value)
    for repo in ("stabilityai/stable-diffusion-xl-base-1.0", "stabilityai/stable-video-diffusion-img2vid-xt",
                 "suno/bark-small", "Systran/faster-whisper-large-v3"):
        assert repo in message and f"hf download {repo}" in message
    assert "keyframe.refiner" in message and "no-such-folder" in message
    assert "\n" not in message


def test_tiny_profile_needs_nothing_from_the_hub():
    models.require(load_profile("tiny"))


def test_the_refiner_reads_the_second_encoders_prompt(tiny_home):
    """The refiner has only SDXL's second text encoder: it must be given prompt_2 (style and
    setting), not the first encoder's prompt."""
    settings = {"width": 64, "height": 64, "num_inference_steps": 2, "high_noise_frac": 0.5, "guidance_scale": 5.0}
    base, refiner = sdxl.load_cached("tiny:sdxl-base", "tiny:sdxl-refiner")
    calls = []

    def spy(**kwargs):
        calls.append(kwargs)
        return refiner(**kwargs)

    base_then_refiner(base, spy, "a fox, a pine forest", "", 1, settings, prompt_2="a fox, oil painting")
    assert calls[0]["prompt"] == "a fox, oil painting" and calls[0]["prompt_2"] is None
