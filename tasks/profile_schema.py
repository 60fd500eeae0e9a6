"""Every section and key a profile may set, with its type and its default.

Defaults live here and nowhere else. A profile is resolved once (tasks/settings.py) into a
plain dict holding every key, and the stages read `settings["key"]` from it: so a default is
part of the settings each task gets, hence of its cache key and of the manifest, and changing
a default here makes the stages it touches run again.

A key with no default is one the code never had a fallback for: the profile must set it.
Unknown keys are refused (`extra="forbid"`), so a typo cannot silently fall back to a default.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag, model_serializer,
                      model_validator)

from faceless.tasks.backends.flux import FluxSettings
from faceless.tasks.backends.kokoro import KokoroSettings
from faceless.tasks.backends.ltx import DEFAULT_DEGRADE as LTX_DEGRADE, LtxOptions
from faceless.tasks.backends.voice_tables import BARK_VOICES, ESPEAK_VOICES, ESPEAK_WORD_GAPS, KOKORO_VOICES, PIPER_VOICES
from faceless.tasks.backends import wan_sampler
from faceless.tasks.backends.wan import DEFAULT_DEGRADE as WAN_DEGRADE, WanOptions


# The published models' own defaults live with their backends (FluxSettings, KokoroSettings,
# WanOptions, LtxOptions); a profile's section takes them from there, so there is still one
# place for each.
_FLUX, _KOKORO, _WAN, _LTX = FluxSettings(), KokoroSettings(), WanOptions(), LtxOptions()
CLIP_CRF = 14  # a shot's clip is an intermediate that compose re-encodes: near-lossless by default


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- plan -------------------------------------------------------------------------------------

class ShotSeconds(Section):
    target: float = 4.0  # a shot spoken for less than half of this joins a neighbour
    max: float = 6.0  # a sentence spoken longer is cut between two words


class Plan(Section):
    shot_seconds: ShotSeconds = ShotSeconds()
    seed: int = 0  # a shot's seed is this plus a hash of its words (front matter `seed` overrides)
    style: str = ""  # front matter `style` replaces it
    negative_prompt: str = ""


class StoryboardWriter(Section):
    """Who writes each shot's prompts (tasks/stages/writer.py): `rules` (its words, cast,
    setting and style) or `llm` (a small instruction-tuned model writes what the camera sees,
    under a JSON schema; a shot whose answer is unusable keeps the rules prompt)."""
    writer: Literal["rules", "llm"] = "rules"
    model: str = "hf:Qwen/Qwen2.5-3B-Instruct"  # or hf:Qwen/Qwen3-4B-Instruct-2507, or a folder
    max_field_chars: int = Field(160, ge=8)  # each field of the description, at most
    max_new_tokens: int = Field(768, ge=16)  # an answer cut off here is unusable: the shot falls back
    temperature: float = Field(0.0, ge=0.0)  # 0: greedy, the same words every time
    cpu_threads: int | None = None  # torch threads on a CPU while generating (see SdxlKeyframe)


# -- narrate: one section per backend, told apart by `backend` ----------------------------------
# Each takes `voices`, the voice for each language: a BCP 47 tag (or `*`, every other language)
# -> a voice of the backend, or `espeak` / `espeak:<voice>` for eSpeak NG
# (tasks/backends/voices.py). `voice` (Bark: `voice_preset`), when set, reads every language.

Voices = dict[str, str]


class PiperNarrate(Section):
    backend: Literal["piper"]
    voice: str | None = None  # one voice for every language, instead of `voices`
    voices: Voices = PIPER_VOICES  # Piper's joe for English, eSpeak NG for the rest
    length_scale: float = 1.0
    noise_scale: float = 0.667
    noise_w_scale: float = 0.0  # 0: deterministic durations, so an edit elsewhere keeps a shot's length
    sentence_pause_s: float = 0.3


class BarkNarrate(Section):
    backend: Literal["bark"]
    model: str = "hf:suno/bark-small"
    voice_preset: str | None = None  # one preset for every language, instead of `voices`
    voices: Voices = BARK_VOICES  # a v2 speaker preset for each of Bark's thirteen languages
    max_chunk_chars: int = 180  # Bark stops after ~14 s: longer sentences are cut at clauses
    clause_pause_s: float = 0.12
    sentence_pause_s: float = 0.35
    # None: the checkpoint's own generation config decides.
    semantic_temperature: float | None = None
    coarse_temperature: float | None = None
    fine_temperature: float | None = None
    semantic_max_new_tokens: int | None = None  # a random-weight model never stops by itself
    seed: int = 0
    cpu_threads: int = 1  # torch threads while generating on a CPU


class KokoroNarrate(Section):
    """Kokoro-82M: word times from its own durations, so align stays `voice`
    (tasks/backends/kokoro.py)."""
    backend: Literal["kokoro"]
    model: str = "hf:hexgrad/Kokoro-82M"
    voice: str | None = None  # a voices/<voice>.pt file in the model folder, for every language
    voices: Voices = KOKORO_VOICES  # Kokoro's voice where it has one, eSpeak NG for the rest
    speed: float = _KOKORO.speed
    british: bool = _KOKORO.british  # misaki's British lexicon (for a b* voice)
    sentence_pause_s: float = _KOKORO.sentence_pause_s
    spacy_model: str | None = _KOKORO.spacy_model  # None: the installed English model
    espeak_fallback: bool = _KOKORO.espeak_fallback  # espeak-ng for words the lexicon lacks


class EspeakNarrate(Section):
    """eSpeak NG: about a hundred languages, robotic, word times from its own word events
    (tasks/backends/espeak.py). The fallback voice of the other backends' tables."""
    backend: Literal["espeak"]
    voice: str | None = None  # an eSpeak NG voice (es, pt-br, ...) for every language
    voices: Voices = ESPEAK_VOICES
    # eSpeak's own 175 is hurried: at 120 Whisper base heard 94 % of a Spanish story, not 50 %.
    words_per_minute: int = 120
    # A pause between words (ms), by language: without one, Whisper base heard eSpeak's German
    # as English (its words run together); with 60 ms it heard 85 % of them (benchmarks).
    word_gaps_ms: dict[str, int] = ESPEAK_WORD_GAPS
    sentence_pause_s: float = 0.3


Narrate = Annotated[Union[PiperNarrate, BarkNarrate, KokoroNarrate, EspeakNarrate], Field(discriminator="backend")]


# -- align ------------------------------------------------------------------------------------

class VoiceAlign(Section):
    """Subtitles timed by the voice's own word times (Piper) or estimates (Bark)."""
    backend: Literal["voice"] = "voice"


class WhisperAlign(Section):
    backend: Literal["faster-whisper"]
    model: str = "hf:Systran/faster-whisper-large-v3"
    language: str | None = None  # None: the story's language (front matter or detected)
    beam_size: int = 5
    temperature: float | list[float] = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]  # faster-whisper's fallback ladder
    max_new_tokens: int | None = None
    compute_type: str = "default"  # float16 on a GPU, float32 on a CPU
    min_matched: float = 0.5  # a sentence with fewer of its words heard keeps estimated times
    boundary_lag_s: float = 0.1  # Whisper places boundaries between running words early (measured, base)


Align = Annotated[Union[VoiceAlign, WhisperAlign], Field(discriminator="backend")]


# -- the GPU stages ---------------------------------------------------------------------------

class Rung(Section):
    """One rung of a degrade ladder: only the keys it sets. Unset keys are left out of the
    resolved settings, since a rung is applied over the stage's settings with dict.update."""
    model_cpu_offload: bool | None = None
    vae_tiling: bool | None = None
    attention_slicing: bool | None = None
    forward_chunking: bool | None = None

    @model_serializer(mode="wrap")
    def _only_what_it_sets(self, handler):
        return {key: value for key, value in handler(self).items() if value is not None}


class AnimateRung(Section):
    """A rung of SVD's ladder. SVD's temporal VAE cannot tile (diffusers raises
    NotImplementedError) and attention slicing does nothing in its UNet: neither is offered;
    `decode_chunk_size` is its decode knob."""
    model_cpu_offload: bool | None = None
    forward_chunking: bool | None = None
    decode_chunk_size: int | None = None
    num_frames: int | None = None

    @model_serializer(mode="wrap")
    def _only_what_it_sets(self, handler):
        return {key: value for key, value in handler(self).items() if value is not None}


# Both GPU stages also take the memory-saving switches of tasks/runtime/gpu.py `memory_knobs`
# (model_cpu_offload, vae_tiling, attention_slicing, forward_chunking; all off by default),
# which their degrade ladders turn on one rung at a time after an out-of-memory error.

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


class FluxRung(Section):
    """A rung of the flux-schnell ladder; only the keys it sets are kept."""
    vae_tiling: bool | None = None
    vae_slicing: bool | None = None
    model_cpu_offload: bool | None = None
    sequential_cpu_offload: bool | None = None

    @model_serializer(mode="wrap")
    def _only_what_it_sets(self, handler):
        return {key: value for key, value in handler(self).items() if value is not None}



class FluxKeyframe(Section):
    """FLUX.1-schnell: 4 steps, no guidance; CLIP reads `prompt`, T5 the shot's whole
    description (tasks/backends/flux.py)."""
    backend: Literal["flux-schnell"]
    model: str = "hf:black-forest-labs/FLUX.1-schnell"
    width: int = 720  # multiples of 16
    height: int = 1280
    num_inference_steps: int = _FLUX.num_inference_steps
    guidance_scale: float = _FLUX.guidance_scale
    max_sequence_length: int = _FLUX.max_sequence_length
    vae_tiling: bool = _FLUX.vae_tiling
    vae_slicing: bool = _FLUX.vae_slicing
    model_cpu_offload: bool = _FLUX.model_cpu_offload  # ignored without a GPU
    sequential_cpu_offload: bool = _FLUX.sequential_cpu_offload
    degrade: list[FluxRung] = [FluxRung(vae_tiling=True), FluxRung(model_cpu_offload=True),
                               FluxRung(sequential_cpu_offload=True)]


class SvdAnimate(Section):
    backend: Literal["svd"] = "svd"
    model: str
    width: int
    height: int
    num_frames: int
    num_inference_steps: int
    motion_bucket_id: int
    noise_aug_strength: float
    decode_chunk_size: int  # SVD's temporal VAE decodes all frames at once unless told
    fps_range: Annotated[list[int], Field(min_length=2, max_length=2)]  # SVD's fps conditioning, low and high
    max_windows: int = 2  # a second, chained window only for a shot too long for one at the lowest fps
    # How the window's frames come to the output rate: motion-compensated (minterpolate), or a
    # cross-fade of neighbouring frames, much cheaper, for pictures with no motion to follow.
    interpolation: Literal["motion", "blend"] = "motion"
    zoom: float = 0.0  # push-in over the shot, as a fraction of the frame
    clip_crf: int = CLIP_CRF  # x264 quality of the shot's clip, an intermediate compose re-encodes
    # The clip's size as a fraction of the output's: compose scales a smaller clip up as it
    # decodes it. Below 1 only where the pictures have no detail to keep (offline's noise).
    clip_scale: Annotated[float, Field(gt=0, le=1)] = 1.0
    cpu_threads: int | None = None  # torch threads on a CPU while generating (see SdxlKeyframe)
    model_cpu_offload: bool = False
    forward_chunking: bool = False  # (no vae_tiling, no attention_slicing: SVD has neither)
    degrade: list[AnimateRung] = []


class NativeRung(Section):
    """A rung of the wan/ltx ladder: how a pass runs, never how many frames it makes (a shot is
    one pass, whole). Only the keys it sets are kept."""
    vae_tiling: bool | None = None
    model_cpu_offload: bool | None = None
    resolution_scale: Annotated[float, Field(gt=0, le=1)] | None = None  # both sides, snapped to 32

    @model_serializer(mode="wrap")
    def _only_what_it_sets(self, handler):
        return {key: value for key, value in handler(self).items() if value is not None}


class WanAnimate(Section):
    """Wan 2.2 TI2V-5B: one native pass per shot at the output frame rate (tasks/backends/wan.py)."""
    backend: Literal["wan"]
    model: str = "hf:Wan-AI/Wan2.2-TI2V-5B-Diffusers"
    width: int = _WAN.width  # generation size, multiples of 32; frames are cropped to the output's
    height: int = _WAN.height
    num_inference_steps: int = _WAN.num_inference_steps
    guidance_scale: float = _WAN.guidance_scale
    negative_prompt: str = _WAN.negative_prompt
    max_sequence_length: int = _WAN.max_sequence_length  # UMT5 tokens of the shot's description
    max_frames: int = _WAN.max_frames  # a longer shot is refused, never split
    vae_tiling: bool = _WAN.vae_tiling
    vae_tile: int | None = _WAN.vae_tile
    model_cpu_offload: bool = _WAN.model_cpu_offload
    resolution_scale: float = _WAN.resolution_scale
    cpu_threads: int | None = _WAN.cpu_threads
    # `full`: the model's schedule with guidance; `distilled`: a step-distilled checkpoint at its
    # published timesteps, guidance off (tasks/backends/wan_sampler.py).
    sampler: Literal["full", "distilled"] = _WAN.sampler
    distilled_timesteps: list[int] = list(_WAN.distilled_timesteps)
    # diffusers' step caches, for the `full` sampler only (refused with `distilled`).
    step_cache: Literal["none", "firstblock", "magcache", "taylorseer"] = _WAN.step_cache
    step_cache_options: dict[str, Any] = {}  # the cache config's keyword arguments (threshold, ...)
    zoom: float = 0.0
    clip_crf: int = CLIP_CRF
    clip_scale: Annotated[float, Field(gt=0, le=1)] = 1.0
    degrade: list[NativeRung] = [NativeRung(**rung) for rung in WAN_DEGRADE]

    @model_validator(mode="after")
    def _sampler_runs(self):
        wan_sampler.check(self.sampler, self.step_cache, self.num_inference_steps, self.guidance_scale,
                          self.distilled_timesteps, self.step_cache_options)
        return self


class LtxAnimate(Section):
    """LTX-Video: one native pass per shot, told the frame rate (tasks/backends/ltx.py)."""
    backend: Literal["ltx"]
    model: str = "hf:Lightricks/LTX-Video"
    width: int = _LTX.width
    height: int = _LTX.height
    num_inference_steps: int = _LTX.num_inference_steps
    guidance_scale: float = _LTX.guidance_scale
    negative_prompt: str = _LTX.negative_prompt
    max_sequence_length: int = _LTX.max_sequence_length
    decode_timestep: float = _LTX.decode_timestep
    decode_noise_scale: float | None = _LTX.decode_noise_scale
    max_frames: int = _LTX.max_frames
    vae_tiling: bool = _LTX.vae_tiling
    vae_tile: int | None = _LTX.vae_tile
    model_cpu_offload: bool = _LTX.model_cpu_offload
    resolution_scale: float = _LTX.resolution_scale
    cpu_threads: int | None = _LTX.cpu_threads
    zoom: float = 0.0
    clip_crf: int = CLIP_CRF
    clip_scale: Annotated[float, Field(gt=0, le=1)] = 1.0
    degrade: list[NativeRung] = [NativeRung(**rung) for rung in LTX_DEGRADE]


def _backend_or(default: str):
    """A discriminator that reads `backend`, or takes `default` when a profile leaves it out
    (profiles written before there was a choice)."""
    def tag(value):
        found = value.get("backend") if isinstance(value, dict) else getattr(value, "backend", None)
        return found or default
    return Discriminator(tag)


Keyframe = Annotated[Union[Annotated[SdxlKeyframe, Tag("sdxl-ensemble")], Annotated[FluxKeyframe, Tag("flux-schnell")]],
                     _backend_or("sdxl-ensemble")]
Animate = Annotated[Union[Annotated[SvdAnimate, Tag("svd")], Annotated[WanAnimate, Tag("wan")],
                          Annotated[LtxAnimate, Tag("ltx")]], _backend_or("svd")]


class Memory(Section):
    release_between_stages: bool = False  # one model family on the GPU at a time


# -- compose ----------------------------------------------------------------------------------

class Loudness(Section):
    target_lufs: float = -14.0
    true_peak_db: float = -1.0


class Music(Section):
    level_db: float = -12.0  # relative to the voice's loudness
    duck_db: float = -10.0  # lower still while the voice speaks
    attack_s: float = 0.1
    release_s: float = 0.5


def _a_list(value):
    return [value] if isinstance(value, str) else value


class Captions(Section):
    # Each character is drawn with the first font that has it.
    fonts: Annotated[list[str], BeforeValidator(_a_list), Field(min_length=1)] = [
        "NotoSans[wdth,wght].ttf", "NotoSansArabic[wdth,wght].ttf", "NotoSansCJKjp-Bold.otf"]
    weight: str | None = None  # a variable font's named instance
    size: int  # for a 720-wide frame, scaled with the frame
    color: str
    highlight: str  # the word being spoken
    outline: str
    outline_width: int = 4
    max_words: int = 4
    bottom_margin: float = 0.22  # fraction of the height kept clear of the apps' own UI


class Compose(Section):
    width: int
    height: int
    fps: int
    transition_s: float = 0.0  # cross-fade between shots
    video_codec: str
    preset: str
    crf: int
    maxrate: str | int | None = None  # a bitrate cap for x264 (e.g. 12M), with its VBV buffer
    bufsize: str | int | None = None  # None: the same as maxrate
    audio_bitrate: str | int
    audio_rate: int
    audio_channels: int = 1
    loudness: Loudness = Loudness()
    music: Music = Music()
    captions: Captions


class Profile(Section):
    name: str | None = None  # None: the file's name
    description: str = ""
    plan: Plan
    storyboard: StoryboardWriter = StoryboardWriter()
    narrate: Narrate
    align: Align = VoiceAlign()
    keyframe: Keyframe
    animate: Animate
    memory: Memory = Memory()
    compose: Compose
