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

from faceless.tasks.backends.voice_tables import ANY, ESPEAK, ESPEAK_VARIANTS
from faceless.tasks.text.language import primary


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
        rates = chosen.pop("rates_wpm")  # likewise the one pace
        chosen["words_per_minute"] = lookup(rates, language) or chosen["words_per_minute"]
    else:
        chosen = {**narrate, key: spec}
    chosen.pop("voices", None)  # the table stays in the profile; narrate's key holds the one voice used
    return {**chosen, "language": language}


def describe(narrate: dict) -> str:
    """The chosen voice in words, for messages: `Kokoro voice ef_dora`."""
    return f"{_label(narrate)} voice {narrate[override_key(narrate)]}"
