"""The `sdxl-ensemble` keyframe backend: SDXL base then the SDXL refiner, in latent space.

The base runs the first `high_noise_frac` of one denoising schedule and returns latents; the
refiner continues the same schedule from those latents (the "ensemble of experts" use of the
refiner), so the image is decoded once, at the end. Base and refiner share `text_encoder_2` and
the VAE, and are placed on the GPU together (tasks/runtime/placement.py): one family, one set of
hooks.

With `references` set, the base is conditioned on cast reference pictures through the
IP-Adapter (h94/IP-Adapter's SDXL adapter, Apache-2.0, with its ViT-bigG image encoder): loaded
into the base once, before the family is placed, so the image encoder is placed with it. A shot
showing several members hands all their pictures to the one adapter (diffusers takes a list of
images per adapter and gives each its own image tokens), rather than a collage, which the image
encoder's centre crop would cut. A shot showing nobody runs at scale 0 (the adapter's attention
is skipped: the picture is the plain base's).
"""

from __future__ import annotations

from typing import Literal

from faceless.tasks.profile_sections import RungSection, Section

# The backend interface (tasks/backends/base.py).
NAME = "sdxl-ensemble"
STAGE = "keyframe"
LABEL = "SDXL base + refiner"

FAMILY = "sdxl"
SIZE_MULTIPLE = 8
MODELS = {"base": "diffusers", "refiner": "diffusers"}  # its model settings: the kind of folder each is
REFERENCES = True  # conditioned on cast references, when the section's `references` is set

# Where an IP-Adapter folder (h94/IP-Adapter's layout, and its tiny twin's) keeps the SDXL
# adapter; its image encoder is in the image_encoder folder beside it.
IP_ADAPTER_SUBFOLDER = "sdxl_models"
IP_ADAPTER_WEIGHTS = "ip-adapter_sdxl.safetensors"


def section_models(section: dict) -> list[tuple[str, str, str]]:
    """(setting, spec, kind) of the models a section loads beyond MODELS: the IP-Adapter."""
    references = section.get("references")
    return [("references.ip_adapter", references["ip_adapter"], "ip-adapter")] if references else []


def base_then_refiner(base, refiner, prompt: str, negative_prompt: str, seed: int, settings: dict,
                      on_step=None, prompt_2: str = "", ip_adapter_image=None):
    """Run the ensemble; returns (PIL image, base latents). `on_step` is a diffusers
    callback_on_step_end called after every denoising step of both models; `ip_adapter_image`,
    for a base with an IP-Adapter loaded, goes to the base only (the refiner has none)."""
    import torch

    generator = torch.Generator("cpu").manual_seed(seed)
    common = dict(
        prompt=prompt,
        # The second encoder's own prompt (the refiner has only that encoder); None: `prompt`.
        prompt_2=prompt_2 or None,
        negative_prompt=negative_prompt or None,
        num_inference_steps=settings["num_inference_steps"],
        guidance_scale=settings["guidance_scale"],
        generator=generator,
        callback_on_step_end=on_step,
    )
    split = settings["high_noise_frac"]
    adapter = {"ip_adapter_image": ip_adapter_image} if ip_adapter_image is not None else {}
    latents = base(
        **common, width=settings["width"], height=settings["height"],
        denoising_end=split, output_type="latent", **adapter,
    ).images
    if torch.isnan(latents).any():  # fp16 overflow shows up here first; a NaN image is black
        raise FloatingPointError("SDXL base produced NaN latents: corrupt weights, or an overflow in fp16")
    # The refiner has only the second (bigG) encoder, and diffusers feeds it `prompt` when the
    # first encoder is absent: hand it the second encoder's prompt under that name.
    image = refiner(**{**common, "prompt": prompt_2 or prompt, "prompt_2": None},
                    image=latents, denoising_start=split).images[0]
    return image, latents


def load_cached(base_spec: str, refiner_spec: str):
    """SDXL base and refiner, sharing text_encoder_2 and the VAE; loaded once per process, on
    the CPU in the GPU's dtype: the stage places both pipelines as one family."""
    from faceless.tasks.models.registry import load_once

    return load_once(FAMILY, (base_spec, refiner_spec), lambda: _load(base_spec, refiner_spec))


def _load(base_spec: str, refiner_spec: str):
    import torch
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

    from faceless.tasks.models.registry import device_and_dtype
    from faceless.tasks.models.specs import resolve

    _, dtype = device_and_dtype()
    base = StableDiffusionXLPipeline.from_pretrained(str(resolve(base_spec)), dtype=dtype)
    # The refiner's second text encoder, its tokenizer and the VAE are the base's own (the same
    # files in both repositories): shared, not loaded twice.
    refiner = StableDiffusionXLImg2ImgPipeline.from_pretrained(
        str(resolve(refiner_spec)), text_encoder_2=base.text_encoder_2, tokenizer_2=base.tokenizer_2, vae=base.vae,
        dtype=dtype,
    )
    if dtype == torch.float16:
        # SDXL's VAE overflows in fp16 (NaN, black pictures): have the pipelines decode in fp32.
        base.vae.register_to_config(force_upcast=True)
    base.set_progress_bar_config(disable=True)
    refiner.set_progress_bar_config(disable=True)
    return base, refiner


def ensure_ip_adapter(base, spec: str) -> None:
    """Load the IP-Adapter `spec` into the base pipeline once (the caller holds the model turn)."""
    from faceless.tasks.models.specs import resolve

    if getattr(base, "_faceless_ip_adapter", None) == spec:
        return
    if getattr(base, "_faceless_ip_adapter", None):  # another adapter, with its own image encoder
        base.unload_ip_adapter()
    base.load_ip_adapter(str(resolve(spec, "ip-adapter")), subfolder=IP_ADAPTER_SUBFOLDER,
                         weight_name=IP_ADAPTER_WEIGHTS)
    base._faceless_ip_adapter = spec


def adapter_inputs(base, settings: dict, references: list) -> object:
    """The base's `ip_adapter_image` for one picture (None without an adapter in the profile):
    the references' pictures at the profile's scale, or, for a picture with none, a grey
    stand-in at scale 0, since a UNet with an adapter loaded asks for image embeddings."""
    from PIL import Image

    if not settings.get("references"):
        if getattr(base, "_faceless_ip_adapter", None):  # loaded for other settings in this process
            base.unload_ip_adapter()
            base._faceless_ip_adapter = None
        return None
    ensure_ip_adapter(base, settings["references"]["ip_adapter"])
    pictures = [Image.open(path).convert("RGB") for _, path in references]
    base.set_ip_adapter_scale(settings["references"]["scale"] if pictures else 0.0)
    return [pictures or [Image.new("RGB", (224, 224), (128, 128, 128))]]  # one list: one adapter


def make_keyframe(shot: dict, index: int, settings: dict, progress, models, references: list = ()):
    """The keyframe stage's call: (PIL image, what the manifest records). `models`: the models
    package, passed in by the stage; `references`: (name, picture path) of the cast members the
    shot shows."""
    from faceless.tasks.runtime import gpu, placement

    def on_gpu():
        base, refiner = load_cached(settings["base"], settings["refiner"])
        device = getattr(base, "_execution_device", base.device)
        with models.model_turn(FAMILY, device, settings["cpu_threads"]):
            # Before placing: the adapter's image encoder is placed with the family.
            ip_adapter_image = adapter_inputs(base, settings, list(references))
            # Base and refiner share text_encoder_2 and the VAE: placed together, one set of hooks.
            where = placement.ensure_placed("keyframe", FAMILY, NAME, (base, refiner), settings)
            # Attention slicing would swap out the adapter's own attention processors (its
            # image tokens with them): with an adapter, only the refiner slices.
            base_knobs = {**settings, "attention_slicing": False} if ip_adapter_image is not None else settings
            with gpu.memory_knobs(base, base_knobs), gpu.memory_knobs(refiner, settings):
                gpu.inject_fault("keyframe", index)
                return where, *base_then_refiner(base, refiner, shot["prompt"], shot["negative_prompt"], shot["seed"],
                                                 settings, on_step=progress.step_callback(), prompt_2=shot["prompt_2"],
                                                 ip_adapter_image=ip_adapter_image)

    where, image, latents = gpu.on_gpu(f"keyframe[{index}]", on_gpu)
    return image, {"latent_shape": list(latents.shape), "placement": where}

# -- the profile's section (tasks/profile_schema.py builds the stage's union from the registry) --

class Rung(RungSection):
    """One rung of a degrade ladder: only the keys it sets. Unset keys are left out of the
    resolved settings, since a rung is applied over the stage's settings with dict.update."""
    model_cpu_offload: bool | None = None
    vae_tiling: bool | None = None
    attention_slicing: bool | None = None
    forward_chunking: bool | None = None


# The section also takes the memory-saving switches of tasks/runtime/gpu.py `memory_knobs`
# (model_cpu_offload, vae_tiling, attention_slicing, forward_chunking; all off by default),
# which its degrade ladder turns on one rung at a time after an out-of-memory error.

class References(Section):
    """The IP-Adapter that conditions the base on cast references (tasks/stages/cast.py)."""
    ip_adapter: str  # a model spec: a folder in h94/IP-Adapter's layout (sdxl_models/...)
    scale: float = 0.6  # how strongly a reference steers the picture (0: not at all, 1: mostly)


class SdxlKeyframe(Section):
    backend: Literal["sdxl-ensemble"] = "sdxl-ensemble"
    base: str
    refiner: str
    width: int
    height: int
    num_inference_steps: int  # one schedule, split between base and refiner
    high_noise_frac: float = 0.8  # base runs this fraction of the schedule, the refiner the rest
    guidance_scale: float = 5.0
    model_cpu_offload: bool = False  # ignored without a GPU
    # torch threads on a CPU (None: torch's own choice, every core). Tiny models make small
    # matrix products, where a second thread mostly waits: 1 used a quarter of the CPU time.
    cpu_threads: int | None = None
    vae_tiling: bool = False
    attention_slicing: bool = False
    forward_chunking: bool = False
    degrade: list[Rung] = []
    references: References | None = None  # condition shots on cast references (None: off)


SETTINGS = SdxlKeyframe


# -- memory facts (tasks/runtime/memory_plan.py) -------------------------------------------------

VAE_TILING = True  # its VAE decodes in tiles (vae.enable_tiling)


def activations(settings: dict) -> dict[str, float]:
    """Activation peak (bytes) of each phase of one keyframe at the profile's size."""
    from faceless.tasks.runtime.memory_plan import MIB, vae2d

    pixels = int(settings["width"]) * int(settings["height"])
    latent = pixels // 64
    # CFG: batch 2. The top level's resnets (320 wide) and the skip tensors, and the 64x64-ish
    # level's transformer (640 wide, GEGLU feed-forward 5120).
    unet = 2 * 2 * (latent * 320 * 12 + latent // 4 * (640 * 8 + 2 * 5120))
    decode = vae2d(pixels, 4)  # force_upcast: the VAE decodes in fp32
    tile = min(pixels, 1024 * 1024)  # the VAE's tile is its sample_size, 1024 px
    return {"encode": 128 * MIB, "unet": unet, "refiner_unet": unet, "decode": decode,
            "decode_tiled": vae2d(tile, 4) + pixels * 3 * 4 * 2}


def components() -> dict[str, tuple]:
    """For benchmarks/memory_table.py: {component: (module at its published size on the meta
    device, bytes per parameter as the loader puts it on a GPU, role[, extras])}. fp16; the VAE
    counted in fp32, as it decodes upcast (force_upcast).

    With `references` set (extras `when`), the IP-Adapter adds two: h94's ViT-bigG image
    encoder, an encoder placed with the family, and the adapter's weights (`image_proj` and
    each cross-attention's `to_k_ip`/`to_v_ip`), which diffusers loads into the base UNet
    (extras `joins`): given as that UNet with the adapter loaded, so the table holds what the
    adapter adds to it, block by block."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from faceless.tasks.models.tiny import ip_adapter_parts, published

    with torch.device("meta"):
        found = {
            "text_encoder": (CLIPTextModel(CLIPTextConfig(**published("sdxl-text-encoder"))), 2, "encoder"),
            "text_encoder_2": (CLIPTextModelWithProjection(CLIPTextConfig(**published("sdxl-text-encoder-2"))), 2,
                               "encoder"),
            "unet": (UNet2DConditionModel(**published("sdxl-base-unet")), 2, "denoiser"),
            "refiner_unet": (UNet2DConditionModel(**published("sdxl-refiner-unet")), 2, "denoiser"),
            "vae": (AutoencoderKL(**published("sdxl-vae")), 4, "vae"),
        }
        adapted = UNet2DConditionModel(**published("sdxl-base-unet"))
    encoder, weights = ip_adapter_parts(adapted, published("ip-adapter-sdxl-image-encoder"), "meta")
    _load_adapter_weights(adapted, weights)
    found["image_encoder"] = (encoder, 2, "encoder", {"when": "references"})
    found["ip_adapter"] = (adapted, 2, "adapter", {"when": "references", "joins": "unet"})
    return found


def _load_adapter_weights(unet, weights: dict) -> None:
    """Load adapter weights in h94's flat layout (`image_proj.*`, `ip_adapter.*`) into `unet`
    the way `load_ip_adapter` does (its attention processors and image projection); on the meta
    device too."""
    state = {part: {k.removeprefix(f"{part}."): v for k, v in weights.items() if k.startswith(f"{part}.")}
             for part in ("image_proj", "ip_adapter")}
    unet._load_ip_adapter_weights([state], low_cpu_mem_usage=True)
