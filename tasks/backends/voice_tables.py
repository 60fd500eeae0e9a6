"""The installed voice tables by narrate backend: data only, read by the profile schema (each
section's default `voices`) and by tasks/backends/voices.py (the choice). Kept apart from the
choice so the schema imports no code that imports the schema."""

ANY = "*"
ESPEAK = "espeak"

# The installed defaults, by backend (tasks/profile_schema.py gives each section its table).
# Kokoro-82M's voices by language (VOICES.md of hexgrad/Kokoro-82M). Japanese needs misaki's
# `ja` extra, whose dictionaries (unidic, Open JTalk) download at first use, and Mandarin its
# `zh` extra (not installed, not tried): both go to eSpeak NG like every language Kokoro lacks.
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
# it on every render). German also wants a pause between words (ESPEAK_WORD_GAPS, ms) and a
# slower pace (ESPEAK_RATES, words a minute): at 120 and 60 ms Whisper base heard 76-85 % of the
# test story, too close to the 80 % asked; at 100 it heard 88-94 % with gaps of 60 to 100 ms,
# from the narration and from the video's AAC alike.
ESPEAK_VARIANTS = {"es": "es+klatt", "fr": "fr+klatt6", "de": "de+m1"}
ESPEAK_WORD_GAPS = {"de": 80}
ESPEAK_RATES = {"de": 100}
