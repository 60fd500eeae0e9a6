"""Align: the story's own words on the narration's clock, as SRT and WebVTT cues.

The text is always the story's (its spelling and punctuation); only the times come from
the narration: from the voice itself (Piper), or heard in the audio by faster-whisper and
mapped onto the story's words (tasks/whisper_align.py; Bark gives no word times). Cues follow common timed-text rules: at most 2 lines of 42 characters, at
most 7 seconds, a cue never spans two sentences, and consecutive cues never overlap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prefect import task

from faceless.tasks.runtime import store
from faceless.tasks.runtime.caching import ArtifactPolicy, run_stage
from faceless.tasks.stages.results import AlignmentResult, NarrationResult

STAGE_VERSION = 2  # 2: faster-whisper word times settled (whisper_align.settle)

MAX_LINE = 42
MAX_LINES = 2
MAX_CUE_S = 7.0
MIN_CUE_S = 5 / 6
GAP_S = 2 / 24  # two frames between cues


@dataclass
class Cue:
    start: float
    end: float
    lines: list[str]
    words: list[int]  # indexes into the story's word list


def wrap(words: list[str], width: int = MAX_LINE) -> list[str]:
    """Break words into lines of at most `width` characters, balanced for two lines."""
    text = " ".join(words)
    if len(text) <= width:
        return [text]
    if len(words) == 1:  # a script written without spaces (a Japanese sentence is one "word"):
        return _between_characters(text, width)  # broken between characters, in even lines
    # Two lines: choose the break that makes the longer line shortest.
    best: tuple[int, int] | None = None
    for cut in range(1, len(words)):
        first, second = " ".join(words[:cut]), " ".join(words[cut:])
        longest = max(len(first), len(second))
        if best is None or longest < best[0]:
            best = (longest, cut)
    cut = best[1] if best else 1
    return [" ".join(words[:cut]), " ".join(words[cut:])]


def _between_characters(text: str, width: int) -> list[str]:
    count = -(-len(text) // width)
    size = -(-len(text) // count)
    return [text[i:i + size] for i in range(0, len(text), size)]


def _fits(group: list[dict], max_chars: int) -> bool:
    texts = [w["text"] for w in group]
    return (
        len(" ".join(texts)) <= max_chars
        and all(len(line) <= MAX_LINE for line in wrap(texts))
        and group[-1]["end"] - group[0]["start"] <= MAX_CUE_S
    )


def _split_sentence(words: list[dict], max_chars: int) -> list[list[dict]]:
    """Fewest cues that fit, with the words shared out evenly by length (so a sentence
    does not end in a cue of two stray words)."""
    for count in range(1, len(words) + 1):
        target = len(" ".join(w["text"] for w in words)) / count
        groups: list[list[dict]] = [[]]
        for word in words:
            length = len(" ".join(w["text"] for w in groups[-1] + [word]))
            if groups[-1] and length > target + 1 and len(groups) < count:
                groups.append([])
            groups[-1].append(word)
        if all(_fits(g, max_chars) for g in groups):
            return groups
    return [[w] for w in words]


def build_cues(words: list[dict], max_chars: int = MAX_LINE * MAX_LINES) -> list[Cue]:
    sentences: list[list[dict]] = []
    for word in words:
        if sentences and sentences[-1][-1]["sentence"] == word["sentence"]:
            sentences[-1].append(word)
        else:
            sentences.append([word])
    groups = [group for sentence in sentences for group in _split_sentence(sentence, max_chars)]

    cues = [
        Cue(g[0]["start"], g[-1]["end"], wrap([w["text"] for w in g]), [w["index"] for w in g])
        for g in groups
    ]
    for i, cue in enumerate(cues):
        limit = cues[i + 1].start - GAP_S if i + 1 < len(cues) else float("inf")
        # Stretch short cues so they can be read, but never into the next one.
        cue.end = min(max(cue.end, cue.start + MIN_CUE_S), limit)
        if cue.end <= cue.start:  # words spoken back to back: no room for a gap
            cue.end = cues[i + 1].start if i + 1 < len(cues) else cue.start + MIN_CUE_S
    return cues


def _clock(seconds: float, separator: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def to_srt(cues: list[Cue]) -> str:
    blocks = [
        f"{n}\n{_clock(c.start, ',')} --> {_clock(c.end, ',')}\n" + "\n".join(c.lines)
        for n, c in enumerate(cues, 1)
    ]
    return "\n\n".join(blocks) + "\n"


def to_vtt(cues: list[Cue]) -> str:
    blocks = [
        f"{_clock(c.start, '.')} --> {_clock(c.end, '.')}\n" + "\n".join(_vtt_escape(l) for l in c.lines)
        for c in cues
    ]
    return "WEBVTT\n\n" + "\n\n".join(blocks) + "\n"


def _vtt_escape(line: str) -> str:
    return line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def reading_speed(cues: list[Cue]) -> float:
    """Characters per second over all cues (spaces included), for the manifest."""
    chars = sum(len(" ".join(c.lines)) for c in cues)
    seconds = sum(c.end - c.start for c in cues)
    return round(chars / seconds, 2) if seconds > 0 else 0.0


def align(words_file: Path, directory: Path, settings: dict | None = None, wav: Path | None = None) -> dict:
    timing = store.read_json(words_file)
    settings = settings or {"backend": "voice"}
    backend = settings["backend"]
    if backend == "faster-whisper":
        from faceless.tasks.runtime import gpu
        from faceless.tasks.backends import whisper_align

        heard = gpu.on_gpu("align", lambda: whisper_align.recognise(wav or words_file.parent / "narration.wav", settings))
        words, counts = whisper_align.fit_words(timing, heard, settings["min_matched"])
        timing = {**timing, "words": words, "timed_by": "faster-whisper"}
        extra = {"aligner": "faster-whisper", "heard_words": len(heard), **counts}
    elif backend == "voice":
        extra = {"aligner": "voice"}
    else:
        raise ValueError(f"unknown align backend {backend!r} (voice or faster-whisper)")
    cues = build_cues(timing["words"])
    (directory / "subtitles.srt").write_text(to_srt(cues), encoding="utf-8")
    (directory / "subtitles.vtt").write_text(to_vtt(cues), encoding="utf-8")
    store.write_json(directory / "words.json", {
        **timing,
        "cues": [{"start": c.start, "end": c.end, "lines": c.lines, "words": c.words} for c in cues],
    })
    return {"cues": len(cues), "words": len(timing["words"]), "chars_per_second": reading_speed(cues), **extra}


@task(name="align", cache_policy=ArtifactPolicy(stage="align", version=STAGE_VERSION))
def align_task(narration: NarrationResult, settings: dict, model: str) -> AlignmentResult:
    return AlignmentResult.of(run_stage("align", lambda directory: align(
        narration.path("words.json"), directory, settings, narration.path("narration.wav"))))
