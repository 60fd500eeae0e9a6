"""One loader per model family, each loading once per process through the registry.

The diffusion pipelines load on the CPU, in the GPU's dtype when there is a GPU: the stage then
places them by the memory plan (tasks/runtime/placement.py), so nothing reaches the GPU that the
plan does not put there. Bark and Whisper are one piece each (the plan's placement is `gpu`)."""

from __future__ import annotations

from faceless.tasks.models.registry import load_once, device_and_dtype
from faceless.tasks.models.specs import resolve


def sdxl_ensemble(base_spec: str, refiner_spec: str):
    """SDXL base and refiner, sharing text_encoder_2 and the VAE; loaded once per process."""
    return load_once("sdxl", (base_spec, refiner_spec), lambda: _load_sdxl_ensemble(base_spec, refiner_spec))


def _load_sdxl_ensemble(base_spec: str, refiner_spec: str):
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

    _, dtype = device_and_dtype()
    base = StableDiffusionXLPipeline.from_pretrained(str(resolve(base_spec)), dtype=dtype)
    refiner = StableDiffusionXLImg2ImgPipeline.from_pretrained(
        str(resolve(refiner_spec)), text_encoder_2=base.text_encoder_2, vae=base.vae, dtype=dtype,
    )
    if dtype == torch_float16():
        # SDXL's VAE overflows in fp16 (NaN, black pictures): have the pipelines decode in fp32.
        base.vae.register_to_config(force_upcast=True)
    base.set_progress_bar_config(disable=True)
    refiner.set_progress_bar_config(disable=True)
    return base, refiner  # on the CPU: placed by the stage, both pipelines as one family


def torch_float16():
    import torch

    return torch.float16


def svd(spec: str):
    """The SVD img2vid pipeline, loaded once per process."""
    return load_once("svd", (spec,), lambda: _load_svd(spec))


def _load_svd(spec: str):
    from diffusers import StableVideoDiffusionPipeline

    _, dtype = device_and_dtype()
    pipe = StableVideoDiffusionPipeline.from_pretrained(str(resolve(spec)), dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe  # on the CPU: placed by the stage


def bark(spec: str):
    """Bark (model, processor), loaded once per process."""
    return load_once("bark", (spec,), lambda: _load_bark(spec))


def _load_bark(spec: str):
    from transformers import BarkModel, BarkProcessor

    device, dtype = device_and_dtype()
    directory = resolve(spec, "transformers")
    model = BarkModel.from_pretrained(str(directory), dtype=dtype).to(device).eval()
    processor = BarkProcessor.from_pretrained(str(directory))
    return model, processor


def whisper(spec: str, compute_type: str = "default"):
    """A faster-whisper model, loaded once per process."""
    return load_once("whisper", (spec, compute_type), lambda: _load_whisper(spec, compute_type))


def _load_whisper(spec: str, compute_type: str):
    from faster_whisper import WhisperModel

    device, _ = device_and_dtype()
    if compute_type == "default":  # fp16 on a GPU, fp32 on a CPU (int8 would change the times)
        compute_type = "float16" if device == "cuda" else "float32"
    return WhisperModel(str(resolve(spec, "ctranslate2")), device=device, compute_type=compute_type,
                        local_files_only=True)


def wan(spec: str):
    """Wan 2.2 TI2V (WanImageToVideoPipeline), loaded once per process."""
    from faceless.tasks.backends import wan as backend

    return load_once("wan", (spec,), lambda: _on_device(backend.load, spec))


def ltx(spec: str):
    """LTX-Video (LTXImageToVideoPipeline), loaded once per process."""
    from faceless.tasks.backends import ltx as backend

    return load_once("ltx", (spec,), lambda: _on_device(backend.load, spec))


def _on_device(load, spec: str):
    device, _ = device_and_dtype()  # also quiets the libraries and flushes denormals on a CPU
    return load(resolve(spec), device, place=False)  # the GPU's dtype, on the CPU: placed by the stage


def flux(spec: str):
    """FLUX.1-schnell (FluxPipeline), loaded once per process: bf16 on a GPU, fp32 on a CPU."""
    from faceless.tasks.backends import flux as backend

    def load():
        device_and_dtype()  # quiets the libraries, flushes denormals on a CPU
        return backend.load_pipeline(resolve(spec))

    return load_once("flux", (spec,), load)


def shot_writer(spec: str):
    """The shot writer's language model and tokenizer (tasks/backends/shot_llm.py), loaded once
    per process."""
    from faceless.tasks.backends import shot_llm

    return load_once(shot_llm.FAMILY, (spec,), lambda: shot_llm.load(resolve(spec, "transformers")))


def kokoro(spec: str, settings: dict):
    """Kokoro-82M with its G2P and the profile's voice, loaded once per process and voice."""
    from faceless.tasks.backends import kokoro as backend

    options = backend.KokoroSettings.from_mapping(settings)
    return load_once("kokoro", (spec, options), lambda: backend.load(resolve(spec, "kokoro"), options))
