"""Model folders for benchmarks/gpu_check.py, per profile, and the derived profile that reads them.

Full size (on a CUDA GPU): every model family of the profile at its published size with random
weights, made straight on the GPU (no tens of GB of fp32 weights through host memory) and saved
as a folder the profile's own loaders read, so a render loads them exactly as it loads real
weights (a step costs the same whatever the weights hold):

- studio: SDXL base + refiner and SVD-XT in fp16, the IP-Adapter for cast references in
  h94/IP-Adapter's layout (its ViT-bigG/14 image encoder and the adapter's weights, fp16), Bark
  at suno/bark-small's sizes, Whisper at large-v3's (converted for faster-whisper);
- modern: FLUX.1-schnell in bf16 (its own dtype: T5-XXL overflows in fp16), Wan 2.2 TI2V-5B in
  bf16 with its VAE in fp32 (as wan.load keeps it), Kokoro-82M in fp32 (as published).

Toy size (--toy, on the CPU): the tiny twins the `tiny` and `modern-tiny` profiles build (the
IP-Adapter through the same builder as at full size, for the toy SDXL base just built).

The derived profile is the profile's YAML (studio.yaml / modern.yaml, tiny.yaml /
modern-tiny.yaml at toy size) with each model spec replaced by its folder, and what random
weights need to behave like real ones: Bark and Whisper capped (they never stop by
themselves), Kokoro's `speed` set so the random voice speaks a sentence in about the time a
real one does (its durations are random too, about 0.6 s a phoneme at speed 1; a shot longer
than Wan's 145 frames would be refused).
"""

from __future__ import annotations

import gc
import json
import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "tasks" / "models" / "configs"
BARK_TOKENS_PER_S = 49.9  # Bark's semantic tokens a second of audio

# The profile each check derives from, (full size, toy size), and the settings that name models.
SOURCES = {"studio": ("studio.yaml", "tiny.yaml"), "modern": ("modern.yaml", "modern-tiny.yaml"),
           "modern-quality": ("modern-quality.yaml", "modern-quality-tiny.yaml")}
MODEL_SETTINGS = {
    "studio": (("narrate", "model", "bark"), ("align", "model", "whisper"), ("keyframe", "base", "sdxl-base"),
               ("keyframe", "refiner", "sdxl-refiner"), ("animate", "model", "svd")),
    "modern": (("narrate", "model", "kokoro"), ("keyframe", "model", "flux-schnell"), ("animate", "model", "wan")),
}
# modern-quality runs modern's models (random weights: the distilled and the published Wan are
# the same architecture), with Wan's full sampler and its step cache.
MODEL_SETTINGS["modern-quality"] = MODEL_SETTINGS["modern"]


def quiet() -> None:
    from faceless.tasks.models import registry

    registry.quiet_libraries()


def free() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def _config(name: str) -> dict:
    data = json.loads((CONFIGS / f"{name}.json").read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if not k.startswith("_")}


def _make(cls, device: str, dtype, *args, **kwargs):
    """`cls(*args, **kwargs)` made on `device` in `dtype`, seeded, in eval mode."""
    import torch

    torch.manual_seed(0)
    with torch.device(device):
        module = cls(*args, **kwargs)
    # .to(device): a few parameters are made by constructors that ignore the default device.
    return module.to(device=device, dtype=dtype).eval()


def millions(module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


def folder_gib(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**30


def _timer(folder: Path, built: dict):
    """timed(family, work): run work() (it saves folder/family and returns a note), record its seconds."""
    def timed(family: str, work) -> None:
        started = time.perf_counter()
        note = work()
        free()
        built[family] = (folder / family, time.perf_counter() - started, note)
    return timed


# -- studio ------------------------------------------------------------------------------------

def full_size_pipelines(device: str, dtype):
    """Builders of the published SDXL base/refiner and SVD-XT pipelines with random weights,
    made straight on `device` (no 10 GB of fp32 weights through host memory): (sdxl, svd),
    where sdxl() returns (base, refiner) sharing text_encoder_2 and the VAE."""
    import torch
    from diffusers import (AutoencoderKL, AutoencoderKLTemporalDecoder, EulerDiscreteScheduler,
                           StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline, StableVideoDiffusionPipeline,
                           UNet2DConditionModel, UNetSpatioTemporalConditionModel)
    from transformers import (CLIPImageProcessor, CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection,
                              CLIPVisionConfig, CLIPVisionModelWithProjection)

    from faceless.tasks.models import tiny

    tokenizer_dir = Path(tempfile.mkdtemp(prefix="gpu-check-tokenizer-"))
    tiny._write_tokenizer(tokenizer_dir)  # a byte-level CLIP tokenizer: ids fit the real 49408 vocabulary
    tokenizer = tiny._load_tokenizer(tokenizer_dir)
    shutil.rmtree(tokenizer_dir, ignore_errors=True)

    def make(cls, *args, **kwargs):
        return _make(cls, device, dtype, *args, **kwargs)

    def sdxl():
        text_encoder_2 = make(CLIPTextModelWithProjection, CLIPTextConfig(**_config("sdxl-text-encoder-2")))
        vae = make(AutoencoderKL, **_config("sdxl-vae"))
        vae.register_to_config(force_upcast=True)  # as the real SDXL VAE: decode in fp32
        base = StableDiffusionXLPipeline(
            vae=vae, text_encoder=make(CLIPTextModel, CLIPTextConfig(**_config("sdxl-text-encoder"))),
            text_encoder_2=text_encoder_2, tokenizer=tokenizer, tokenizer_2=tokenizer,
            unet=make(UNet2DConditionModel, **_config("sdxl-base-unet")),
            scheduler=EulerDiscreteScheduler.from_config(_config("sdxl-scheduler")),
        )
        refiner = StableDiffusionXLImg2ImgPipeline(
            vae=vae, text_encoder=None, text_encoder_2=text_encoder_2, tokenizer=None, tokenizer_2=tokenizer,
            unet=make(UNet2DConditionModel, **_config("sdxl-refiner-unet")),
            scheduler=EulerDiscreteScheduler.from_config(_config("sdxl-scheduler")),
            requires_aesthetics_score=True,
        )
        return base, refiner

    def svd():
        return StableVideoDiffusionPipeline(
            vae=make(AutoencoderKLTemporalDecoder, **_config("svd-xt-vae")),
            image_encoder=make(CLIPVisionModelWithProjection, CLIPVisionConfig(**_config("svd-xt-image-encoder"))),
            unet=make(UNetSpatioTemporalConditionModel, **_config("svd-xt-unet")),
            scheduler=EulerDiscreteScheduler.from_config(_config("svd-xt-scheduler")),
            feature_extractor=CLIPImageProcessor(crop_size=224, size={"shortest_edge": 224}),
        )

    return sdxl, svd


def full_size_voice(device: str = "meta"):
    """Bark at suno/bark-small's sizes and Whisper at large-v3's, built on `device` (for counts)."""
    import torch
    from transformers import BarkModel, WhisperForConditionalGeneration

    from faceless.tasks.models.tiny_voice import bark_config, whisper_config

    with torch.device(device):
        return BarkModel(bark_config("small")), WhisperForConditionalGeneration(whisper_config("large-v3")[0])


def full_size_unet(device: str, dtype):
    """SDXL base's UNet at its published size (on the meta device: the shapes the adapter is made for)."""
    from diffusers import UNet2DConditionModel

    return _make(UNet2DConditionModel, device, dtype, **_config("sdxl-base-unet"))


def toy_unet(base: Path):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(str(base / "unet"))


def ip_adapter_encoder_config(full: bool) -> dict:
    """The IP-Adapter's image encoder: h94/IP-Adapter's sdxl_models/image_encoder at full size
    (OpenCLIP ViT-bigG/14, tasks/models/configs/ip-adapter-sdxl-image-encoder.json), else the
    tiny twin's."""
    from faceless.tasks.models import tiny

    return _config("ip-adapter-sdxl-image-encoder") if full else dict(tiny.TINY_IP_ADAPTER_ENCODER)


def ip_adapter(folder: Path, unet, full: bool, device: str, dtype) -> str:
    """The SDXL IP-Adapter for `unet` in h94/IP-Adapter's layout (sdxl_models/image_encoder and
    sdxl_models/ip-adapter_sdxl.safetensors) with random weights, through the builder of the
    tiny twin (tasks/models/tiny.py build_ip_adapter), its image encoder full size or tiny as
    `full` says. Returns a note."""
    from faceless.tasks.models import tiny

    counts = tiny.build_ip_adapter(folder, unet, ip_adapter_encoder_config(full), device=device, dtype=dtype)
    kind = "ViT-bigG/14 " if full else ""
    return (f"{kind}image encoder {count_text(counts['image_encoder'])}, adapter {count_text(counts['adapter'])}"
            + ("; fp16" if dtype is not None else "; tiny"))


def count_text(parameters: int) -> str:
    """A parameter count as the notes give it: millions, or the count itself below 100,000 (toy size)."""
    return f"{parameters / 1e6:.1f} M" if parameters >= 100_000 else f"{parameters:,}"


def build_studio(folder: Path, full: bool) -> dict:
    """Every studio model family saved as a model folder under `folder`: {family: (path, seconds, note)}."""
    import torch

    from faceless.tasks.models import tiny
    from faceless.tasks.models.tiny_voice import build_bark, build_whisper

    quiet()
    device, dtype = ("cuda", torch.float16) if full else ("cpu", None)
    folder.mkdir(parents=True, exist_ok=True)
    built: dict = {}

    timed = _timer(folder, built)

    if full:
        sdxl, svd = full_size_pipelines(device, dtype)

        def sdxl_pair():
            base, refiner = sdxl()
            note = (f"base UNet {millions(base.unet):.1f} M, refiner UNet {millions(refiner.unet):.1f} M, "
                    f"text encoders {millions(base.text_encoder):.1f} + {millions(base.text_encoder_2):.1f} M, "
                    f"VAE {millions(base.vae):.1f} M")
            base.save_pretrained(str(folder / "sdxl-base"))
            refiner.save_pretrained(str(folder / "sdxl-refiner"))
            return note

        def svd_xt():
            pipe = svd()
            note = (f"UNet {millions(pipe.unet):.1f} M, image encoder {millions(pipe.image_encoder):.1f} M, "
                    f"VAE {millions(pipe.vae):.1f} M")
            pipe.save_pretrained(str(folder / "svd"))
            return note

        timed("sdxl-base", sdxl_pair)
        built["sdxl-refiner"] = (folder / "sdxl-refiner", 0.0, "built with sdxl-base")
        timed("ip-adapter", lambda: ip_adapter(folder / "ip-adapter", full_size_unet("meta", dtype), True, device, dtype))
        timed("svd", svd_xt)
        bark, whisper = full_size_voice("meta")
        bark_note = f"{millions(bark):.1f} M (suno/bark-small sizes)"
        whisper_note = f"{millions(whisper):.1f} M (large-v3 sizes), CTranslate2 float16"
        del bark, whisper
        timed("bark", lambda: (build_bark(folder / "bark", "small", device, dtype), bark_note)[1])
        timed("whisper", lambda: (build_whisper(folder / "whisper", "large-v3", device, dtype), whisper_note)[1])
    else:
        timed("sdxl-base", lambda: (tiny._build_tiny_sdxl(folder / "sdxl-base", refiner=False), "tiny")[1])
        timed("sdxl-refiner", lambda: (tiny._build_tiny_sdxl(folder / "sdxl-refiner", refiner=True), "tiny")[1])
        timed("ip-adapter", lambda: ip_adapter(folder / "ip-adapter", toy_unet(folder / "sdxl-base"), False, "cpu", None))
        timed("svd", lambda: (tiny._build_tiny_svd(folder / "svd"), "tiny")[1])
        timed("bark", lambda: (build_bark(folder / "bark", "tiny"), "tiny")[1])
        timed("whisper", lambda: (build_whisper(folder / "whisper", "tiny"), "tiny")[1])
    return built




# -- modern --------------------------------------------------------------------------------------

def full_size_flux(device: str, dtype):
    """FLUX.1-schnell's published pipeline with random weights on `device`. Its tokenizers are
    made offline (flux_tiny.py): CLIP's real vocabulary and a T5-shaped one whose ids fit T5's
    32,128 rows; the pipeline pads T5's sequence to max_sequence_length, so the work is the real one."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel

    from faceless.tasks.models.flux_tiny import full_config, write_t5_tokenizer
    from faceless.tasks.text.prompts import write_clip_tokenizer_files

    with tempfile.TemporaryDirectory(prefix="gpu-check-flux-tokenizers-") as work:
        write_clip_tokenizer_files(Path(work) / "clip")
        clip_tokenizer = CLIPTokenizer.from_pretrained(str(Path(work) / "clip"), model_max_length=77)
        t5_tokenizer = write_t5_tokenizer(Path(work) / "t5")
    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler.from_config(full_config("scheduler")),
        vae=_make(AutoencoderKL, device, dtype, **full_config("vae")),
        text_encoder=_make(CLIPTextModel, device, dtype, CLIPTextConfig(**full_config("text-encoder"))),
        tokenizer=clip_tokenizer,
        text_encoder_2=_make(T5EncoderModel, device, dtype, T5Config(**full_config("text-encoder-2"))),
        tokenizer_2=t5_tokenizer,
        transformer=_make(FluxTransformer2DModel, device, dtype, **full_config("transformer")),
    )


def full_size_klein(device: str, dtype):
    """FLUX.2 [klein] 4B's published pipeline with random weights on `device` (the cast shots'
    model). Its tokenizer is the tiny twin's byte-level one with Qwen's chat template (ids fit
    Qwen3's 151,936 rows); the pipeline pads the prompt to max_sequence_length, so the text
    encoder's work is the real one."""
    from diffusers import AutoencoderKLFlux2, FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline, Flux2Transformer2DModel
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from faceless.tasks.models.tiny import published
    from faceless.tasks.models.writer_tiny import tokenizer

    return Flux2KleinPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler.from_config(published("flux2-klein-4b-scheduler")),
        vae=_make(AutoencoderKLFlux2, device, dtype, **published("flux2-klein-4b-vae")),
        text_encoder=_make(Qwen3ForCausalLM, device, dtype, Qwen3Config(**published("flux2-klein-4b-text-encoder"))),
        tokenizer=tokenizer(),
        transformer=_make(Flux2Transformer2DModel, device, dtype, **published("flux2-klein-4b-transformer")),
        is_distilled=True,
    )


def full_size_wan(device: str, dtype):
    """Wan 2.2 TI2V-5B's published folder layout (a WanPipeline with expand_timesteps, as
    modern_tiny builds its twin) with random weights on `device`; the VAE in fp32. Its tokenizer
    is the twin's character-level T5 one (ids fit UMT5's vocabulary; the pipeline pads the
    prompt to 512 tokens, so the encoder's work is the real one)."""
    import torch
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    from faceless.tasks.models.modern_tiny import tiny_t5_tokenizer, wan_config

    index = wan_config("model-index")
    return WanPipeline(
        tokenizer=tiny_t5_tokenizer(),
        text_encoder=_make(UMT5EncoderModel, device, dtype, UMT5Config(**wan_config("text-encoder"))),
        vae=_make(AutoencoderKLWan, device, torch.float32, **wan_config("vae")),
        scheduler=UniPCMultistepScheduler(**wan_config("scheduler")),
        transformer=_make(WanTransformer3DModel, device, dtype, **wan_config("transformer")),
        boundary_ratio=index["boundary_ratio"], expand_timesteps=index["expand_timesteps"],
    )


def save_kokoro(folder: Path, config: dict, seed: int = 0) -> str:
    """A Kokoro folder (config, weights, the af_heart voice) of `config` with random weights, in
    fp32 as published; returns a note."""
    import torch

    from faceless.tasks.models.kokoro_tiny import DEFAULT_VOICE, random_model, save_folder

    model = random_model(config, seed=seed)
    voice = torch.randn(510, 1, 2 * config["style_dim"], generator=torch.Generator().manual_seed(seed + 1)) * 0.15
    save_folder(model, config, folder, {DEFAULT_VOICE: voice})
    return f"{millions(model):.1f} M"


def build_modern(folder: Path, full: bool, klein: bool = True) -> dict:
    """Every modern model family saved as a model folder under `folder`: {family: (path, seconds, note)};
    without `klein` (a scratch disk too small for its 15 GiB beside the others) no FLUX.2 [klein]."""
    import torch

    from faceless.tasks.backends.kokoro import quiet as quiet_kokoro
    from faceless.tasks.models import flux_tiny, klein_tiny, kokoro_tiny, modern_tiny

    quiet()
    quiet_kokoro()  # KModel's constructor warns about its own layers: advice for kokoro's authors
    folder.mkdir(parents=True, exist_ok=True)
    built: dict = {}
    timed = _timer(folder, built)
    if not full:
        timed("kokoro", lambda: (kokoro_tiny.build_tiny_kokoro(folder / "kokoro"), "tiny")[1])
        timed("flux-schnell", lambda: (flux_tiny.build_tiny_flux(folder / "flux-schnell"), "tiny")[1])
        timed("flux2-klein", lambda: (klein_tiny.build_tiny_klein(folder / "flux2-klein"), "tiny")[1])
        timed("wan", lambda: (modern_tiny.build_tiny_wan(folder / "wan"), "tiny")[1])
        return built

    def flux():
        pipe = full_size_flux("cuda", torch.bfloat16)
        note = (f"transformer {millions(pipe.transformer):.1f} M, T5 encoder {millions(pipe.text_encoder_2):.1f} M, "
                f"CLIP {millions(pipe.text_encoder):.1f} M, VAE {millions(pipe.vae):.1f} M; bf16")
        pipe.save_pretrained(str(folder / "flux-schnell"))
        return note

    def make_klein():
        pipe = full_size_klein("cuda", torch.bfloat16)
        note = (f"transformer {millions(pipe.transformer):.1f} M, Qwen3 encoder {millions(pipe.text_encoder):.1f} M, "
                f"VAE {millions(pipe.vae):.1f} M; bf16")
        pipe.save_pretrained(str(folder / "flux2-klein"))
        return note

    def wan():
        pipe = full_size_wan("cuda", torch.bfloat16)
        note = (f"transformer {millions(pipe.transformer):.1f} M, UMT5 encoder {millions(pipe.text_encoder):.1f} M, "
                f"VAE {millions(pipe.vae):.1f} M; bf16, VAE fp32")
        pipe.save_pretrained(str(folder / "wan"))
        return note

    timed("kokoro", lambda: save_kokoro(folder / "kokoro", kokoro_tiny.full_config()) + ", fp32")
    timed("flux-schnell", flux)
    free()
    if klein:
        timed("flux2-klein", make_klein)  # the cast shots' model (the story has a cast member)
    free()
    timed("wan", wan)
    return built


BUILDERS = {"studio": build_studio, "modern": build_modern, "modern-quality": build_modern}


def build_models(name: str, folder: Path, full: bool, klein: bool = True) -> dict:
    return BUILDERS[name](folder, full, klein) if name.startswith("modern") else BUILDERS[name](folder, full)


def ip_adapter_sizes(device: str = "meta"):
    """(image encoder module, adapter parameter count) of the full-size IP-Adapter, made on
    `device` through the same builder as its folder (on the meta device: shapes only)."""
    import torch

    from faceless.tasks.models import tiny

    encoder, weights = tiny.ip_adapter_parts(full_size_unet(device, torch.float16), ip_adapter_encoder_config(True),
                                             device, torch.float16)
    return encoder, sum(t.numel() for t in weights.values())


def needed_gib(name: str, klein: bool = True) -> float:
    """Disk the full-size folders of profile `name` take (parameters counted on the meta device,
    2 bytes each, the IP-Adapter's included; Wan's VAE and Kokoro 4): a check refuses to start
    without it."""
    import torch

    from faceless.tasks.models import kokoro_tiny
    from faceless.tasks.models.modern_tiny import full_size_parameters

    if name == "studio":
        sdxl, svd = full_size_pipelines("meta", torch.float16)
        base, refiner = sdxl()
        pipe = svd()
        bark, whisper = full_size_voice("meta")
        encoder, adapter = ip_adapter_sizes()
        parts = [base.unet, base.text_encoder, base.text_encoder_2, base.vae, pipe.unet, pipe.image_encoder, pipe.vae,
                 bark, whisper, encoder]
        parts_m = sum(2 * millions(p) for p in parts) + 2 * adapter / 1e6
        # save_pretrained writes the refiner's shared text encoder and VAE again
        return (parts_m + 2 * (millions(refiner.unet) + millions(base.text_encoder_2)
                               + millions(base.vae))) * 1e6 / 2**30
    flux = full_size_flux("meta", torch.bfloat16)
    wan = full_size_parameters()
    total = 2 * sum(millions(m) for m in (flux.transformer, flux.text_encoder_2, flux.text_encoder, flux.vae)) * 1e6
    if klein:
        pipe = full_size_klein("meta", torch.bfloat16)
        total += 2 * sum(millions(m) for m in (pipe.transformer, pipe.text_encoder, pipe.vae)) * 1e6
    total += 2 * (wan["transformer"] + wan["text_encoder"]) + 4 * wan["vae"]
    total += 4 * kokoro_tiny.full_size_parameters()
    return total / 2**30


# -- the derived profile ----------------------------------------------------------------------

def story_sentences(story: Path) -> list[str]:
    from faceless.tasks.stages.plan import normalise_story, split_sentences

    return split_sentences(normalise_story(story.read_text(encoding="utf-8")))


def kokoro_speed(folder: Path, sentences: list[str], seconds: float, device: str | None = None) -> tuple[float, float]:
    """Kokoro's `speed` at which the random voice in `folder` speaks the sentences in about
    `seconds` each, and the mean length it gives. Random duration predictors saturate: every
    phoneme lasts about `max_dur` frames of 25 ms at speed 1 (1.25 s at full size, a minute a
    sentence, slow to decode), so the first guess is the speed that makes that 4 frames (a real
    phoneme's 0.1 s); audio then scales as 1/speed (until phonemes reach their one-frame floor),
    and a second round corrects the guess."""
    import dataclasses

    from faceless.tasks.backends import kokoro

    max_dur = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))["max_dur"]
    voice = kokoro.load(folder, {}, device)
    speed, mean = max_dur / 4, 0.0
    for round_ in range(2):
        if round_:
            speed = round(speed * mean / seconds, 3)
        voice = dataclasses.replace(voice, settings=dataclasses.replace(voice.settings, speed=speed))
        mean = sum(len(kokoro.speak(voice, s)[0]) for s in sentences) / kokoro.SAMPLE_RATE / len(sentences)
    del voice
    free()
    return speed, mean


def write_profile(name: str, path: Path, full: bool, built: dict, story: Path, speech_seconds: float) -> dict:
    """The profile's YAML with every model spec replaced by its folder, and the random-weight caps."""
    import torch
    import yaml

    source = ROOT / "tasks" / "profiles" / SOURCES[name][0 if full else 1]
    profile = yaml.safe_load(source.read_text(encoding="utf-8"))
    profile["name"] = f"gpu-check-{name}"
    profile["description"] = f"{source.name} with random-weight model folders (benchmarks/gpu_check.py)"
    for section, key, family in MODEL_SETTINGS[name]:
        profile[section][key] = str(built[family][0])
    if full and profile.get("storyboard", {}).get("writer") == "llm":
        # The shot writer has no full-size random twin yet (a Qwen checkpoint's tokenizer files
        # come with its weights): at full size the check writes the storyboard by rules. The toy
        # run keeps the tiny writer, so its code path stays checked.
        profile["storyboard"]["writer"] = "rules"
    if (profile["keyframe"].get("references") or {}).get("backend") == "flux2-klein":
        if "flux2-klein" in built:  # the cast shots' model, built beside schnell (at either size)
            profile["keyframe"]["references"]["model"] = str(built["flux2-klein"][0])
        else:  # not built (the scratch disk): every shot drawn by schnell
            del profile["keyframe"]["references"]
    if profile["keyframe"].get("references") and "ip-adapter" in built:
        # Cast references through the adapter built beside the SDXL base (at either size).
        profile["keyframe"]["references"]["ip_adapter"] = str(built["ip-adapter"][0])
    sentences = story_sentences(story)
    if name == "studio" and full:
        # Random weights never stop by themselves: give each Bark piece a real voice's length
        # and Whisper a real transcript's (about 1.5 tokens a word, plus timestamps).
        words = sum(len(s.split()) for s in sentences)
        profile["narrate"]["semantic_max_new_tokens"] = round(speech_seconds * BARK_TOKENS_PER_S)
        profile["align"]["max_new_tokens"] = min(440, 2 * words + 8)
    if name.startswith("modern"):
        device = "cuda" if full and torch.cuda.is_available() else "cpu"
        profile["narrate"]["speed"], _ = kokoro_speed(built["kokoro"][0], sentences, speech_seconds, device)
    path.write_text(yaml.safe_dump(profile, sort_keys=False), encoding="utf-8")
    from faceless.tasks.settings import load_profile

    return load_profile(str(path))  # resolved, as the render will see it


def random_weight_caps(profile: dict) -> str:
    """The settings write_profile set for random weights, as text."""
    keys = (("narrate", "semantic_max_new_tokens"), ("align", "max_new_tokens"), ("narrate", "speed"))
    return ", ".join(f"{section}.{key} {profile[section][key]}" for section, key in keys
                     if profile[section].get(key) is not None and not (key == "speed" and profile[section][key] == 1.0))
