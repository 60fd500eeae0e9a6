"""Which voice reads a story in its language: the profile's `narrate.voices` table, or the
voice the user names (`--voice`, `narrate.voice`; Bark's is `narrate.voice_preset`).

A table maps a BCP 47 tag (or `*`, every other language) to a voice of the profile's own
narrate backend, or to eSpeak NG: `espeak` (eSpeak NG's voice for the story's language) or
`espeak:<voice>`. A story's tag is looked up whole (`pt-BR`), then by its language alone
(`pt`), then as any regional form of its language in the table (a `pt` story takes the
`pt-BR` voice when the table has only that), then `*`.

The choice is made by preflight, before any stage runs: it replaces the profile's narrate
section by the chosen voice's section, plus `language` (so narrate's cache key names both), and
a story no voice speaks is refused in one line naming the languages the profile speaks.
"""

from __future__ import annotations

from faceless.tasks.text.language import primary

ANY = "*"
ESPEAK = "espeak"

# The installed defaults, by backend (tasks/profile_schema.py gives each section its table).
# Kokoro-82M's voices by language (VOICES.md of hexgrad/Kokoro-82M): Japanese and Mandarin
# need misaki's `ja` and `zh` extras, whose dictionaries are downloaded at run time, so those
# two go to eSpeak NG like every language Kokoro lacks.
KOKORO_VOICES = {"en": "af_heart", "en-GB": "bf_emma", "es": "ef_dora", "fr": "ff_siwis",
                 "it": "if_sara", "pt-BR": "pf_dora", "hi": "hf_alpha", ANY: ESPEAK}
# Bark's v2 speaker presets: thirteen languages.
BARK_VOICES = {"en": "v2/en_speaker_6", "de": "v2/de_speaker_3", "es": "v2/es_speaker_1",
               "fr": "v2/fr_speaker_1", "hi": "v2/hi_speaker_2", "it": "v2/it_speaker_4",
               "ja": "v2/ja_speaker_1", "ko": "v2/ko_speaker_0", "pl": "v2/pl_speaker_4",
               "pt": "v2/pt_speaker_0", "ru": "v2/ru_speaker_0", "tr": "v2/tr_speaker_0",
               "zh": "v2/zh_speaker_0"}
PIPER_VOICES = {"en": "en_US-joe-medium", ANY: ESPEAK}
ESPEAK_VOICES = {ANY: ESPEAK}
# `espeak` reads a language with eSpeak NG's voice of that name, or with the variant here: of
# those tried, the ones Whisper base understood best (tests/test_languages_render.py measures
# it on every render). German also wants a pause between words (ESPEAK_WORD_GAPS, ms).
ESPEAK_VARIANTS = {"es": "es+klatt", "fr": "fr+klatt6", "de": "de+m1"}
ESPEAK_WORD_GAPS = {"de": 60}

# Kokoro's language of a voice: the first letter of its name (KPipeline's lang_code), as the
# eSpeak NG language misaki's G2P uses for it; `a`/`b` are misaki's own English G2P.
KOKORO_LANGUAGES = {"a": "en-us", "b": "en-gb", "e": "es", "f": "fr-fr", "h": "hi", "i": "it", "p": "pt-br"}


class VoiceError(ValueError):
    """No voice of the profile speaks the story's language."""


def override_key(narrate: dict) -> str:
    """The setting that names one voice for every language."""
    return "voice_preset" if narrate["backend"] == "bark" else "voice"


def lookup(table: dict[str, str], language: str) -> str | None:
    """The table's voice for `language` (see the module's docstring for the order)."""
    lowered = {tag.lower(): voice for tag, voice in table.items()}
    if language.lower() in lowered:
        return lowered[language.lower()]
    if primary(language) in lowered:
        return lowered[primary(language)]
    regional = [voice for tag, voice in lowered.items() if tag != ANY and primary(tag) == primary(language)]
    if regional:
        return regional[0]
    return lowered.get(ANY)


def _espeak_voice(spec: str, language: str) -> str | None:
    from faceless.tasks.backends import espeak

    named = spec.partition(":")[2]
    voice = named or espeak.voice_for(language)
    return ESPEAK_VARIANTS.get(voice, voice) if not named else voice


def speaks(narrate: dict) -> list[str]:
    """The languages the profile's table speaks: its own entries, and eSpeak NG's languages
    when `*` goes to eSpeak NG."""
    table = narrate.get("voices") or {}
    own = [tag for tag in table if tag != ANY]
    if str(table.get(ANY, "")).startswith(ESPEAK):
        from faceless.tasks.backends import espeak

        others = dict.fromkeys(primary(tag) for tag in espeak.languages())  # es, not es-419 and es-mx
        return own + [tag for tag in others if lookup({t: t for t in own}, tag) is None]
    if ANY in table:
        return own + ["any other (one voice)"]
    return own


def _label(narrate: dict) -> str:
    return {"piper": "Piper", "kokoro": "Kokoro-82M", "bark": "Bark", "espeak": "eSpeak NG"}.get(narrate["backend"],
                                                                                           narrate["backend"])


def choose(narrate: dict, language: str, voice: str = "", profile: str = "the profile") -> dict:
    """The narrate settings that read a story in `language`: the profile's section with its
    voice chosen, or an eSpeak NG section; `language` added. `voice` (the `--voice` option)
    overrides the table, as `narrate.voice` does when the profile sets it."""
    from faceless.tasks.settings import section

    key = override_key(narrate)
    named = voice or narrate.get(key)
    spec = named or lookup(narrate.get("voices") or {}, language)
    espeak_voice = _espeak_voice(spec, language) if spec and spec.split(":")[0] == ESPEAK else None
    if spec is None or (spec.split(":")[0] == ESPEAK and espeak_voice is None):
        spoken = speaks(narrate)
        raise VoiceError(
            f"profile {profile!r} cannot narrate a story in {language}: its voices speak "
            f"{', '.join(spoken) if spoken else 'no language'}; name a voice with --voice "
            f"(narrate.{key}) to read it anyway")
    if espeak_voice is not None:
        chosen = section("narrate", backend=ESPEAK, voice=espeak_voice,
                         sentence_pause_s=narrate.get("sentence_pause_s", 0.3))
        if narrate["backend"] == ESPEAK:
            chosen = {**narrate, "voice": espeak_voice}
        gaps = chosen.pop("word_gaps_ms")  # the one gap this story's language takes, for the cache key
        chosen["word_gap_ms"] = lookup(gaps, language) or 0
    else:
        chosen = {**narrate, key: spec}
    chosen.pop("voices", None)  # the table stays in the profile; narrate's key holds the one voice used
    return {**chosen, "language": language}


def describe(narrate: dict) -> str:
    """The chosen voice in words, for messages: `Kokoro voice ef_dora`."""
    return f"{_label(narrate)} voice {narrate[override_key(narrate)]}"
