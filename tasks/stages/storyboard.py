"""Storyboard: the narration cut into shots of a few seconds, each with its own prompt and seed.

Short-form video changes picture every 2-5 seconds. A shot is, by default, one sentence; a
sentence spoken for longer than `plan.shot_seconds.max` is cut between words, preferably at a
clause mark (, ; : dashes) near the middle, until every piece fits; a sentence spoken for less
than half the target joins a neighbour when the two together still fit. The cuts are put on
the narration's times (in the middle of the pause between two sentences, or of the silence
between two words), so the lengths are what is really spoken, not estimates.

Every decision is local to a sentence and its neighbours, and a shot's seed comes from its own
words: editing one sentence changes only the shots it touches (their keyframes and clips);
the others keep their prompts and seeds and come back cached.

A shot's prompt says what the narration says (its words), who is in it (the cast members it
names, or the last one named before it when it says "she", "he", "they"...), where (the
setting), and how it looks (the style), within the text encoders' 77 tokens (tasks/prompts.py).
A story in another language than English that describes its cast or setting in front matter
leaves its words out: the encoders read English best, and the front matter can be in English.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

from prefect import task

from faceless.tasks.runtime import store
from faceless.tasks.runtime.caching import ArtifactPolicy, run_stage_keeping
from faceless.tasks.stages.results import AlignmentResult, PlanResult, Storyboard
from faceless.tasks.text.language import primary
from faceless.tasks.text.prompts import shot_prompt

STAGE_VERSION = 3  # 3: each shot's whole description, for the T5-read prompts of flux-schnell and wan

_CLAUSE_END = re.compile(r"[,;:\u2014\u2013\u2026\uff0c\u3001\uff1b\uff1a]['\"\u2019\u201d)\]]*$|^[\u2014\u2013-]{1,2}$")
_PRONOUNS = {**dict.fromkeys(("she", "her", "hers", "herself"), "she"),
             **dict.fromkeys(("he", "him", "his", "himself"), "he"),
             **dict.fromkeys(("they", "them", "their", "theirs", "themselves"), "they")}
_FEMININE = {"mrs", "ms", "miss", "lady", "queen", "princess", "aunt", "girl", "woman", "women", "mother", "daughter",
             "sister", "wife", "grandmother", "grandma", "she", "her", "widow", "nun", "mum", "mom"}
_MASCULINE = {"mr", "sir", "lord", "king", "prince", "uncle", "boy", "man", "men", "father", "son", "brother",
              "husband", "grandfather", "grandpa", "he", "his", "him", "widower", "monk", "dad"}


@dataclass
class Shot:
    index: int
    sentences: list[int]
    words: tuple[int, int]  # story word indexes [first, last + 1)
    text: str
    start: float  # seconds into the narration where the picture cuts to this shot
    end: float
    cast: list[str]
    prompt: str
    prompt_2: str
    prompt_tokens: int
    description: str  # subject, cast, setting and style whole: for text encoders that read more than 77 tokens
    negative_prompt: str
    seed: int
    # Who wrote the prompts (the llm writer, tasks/stages/writer.py, may rewrite them), what it
    # wrote, and whether a person changed the shot in the review (flows/review.py).
    writer: str = "rules"
    writer_note: str | None = None
    visual: dict | None = None
    edited: bool = False


def cut_times(words: list[dict], duration: float, sentences: list[dict] | None = None) -> list[float]:
    """cut[j] is where a shot starting at word j begins; cut[len(words)] is the end of the
    narration. Between two sentences the cut is halfway through the pause, measured from the
    sentences' own audio (`sentences`: their spans), so a shot's length depends only on how its
    own sentences are spoken: an edit elsewhere cannot move it by a frame. Inside a sentence it
    is halfway through the silence between the two words."""
    spans = {s["index"]: s for s in sentences or []}
    cuts = [0.0]
    for before, after in zip(words, words[1:]):
        if before["sentence"] != after["sentence"] and before["sentence"] in spans and after["sentence"] in spans:
            cut = (spans[before["sentence"]]["end"] + spans[after["sentence"]]["start"]) / 2
        else:
            cut = (before["end"] + after["start"]) / 2
        cuts.append(max(cuts[-1], cut))
    cuts.append(max(cuts[-1], duration))
    return cuts


def _split(first: int, last: int, words: list[dict], cuts: list[float], longest: float) -> list[tuple[int, int]]:
    """Words [first, last) as pieces no longer than `longest` seconds where word gaps allow:
    the longest piece is cut at the best gap, again and again. The best gap is near the middle,
    at a clause mark if there is one, and leaves no piece under a second."""
    pieces = [(first, last)]
    while True:
        too_long = [(i, (a, b)) for i, (a, b) in enumerate(pieces) if cuts[b] - cuts[a] > longest and b - a > 1]
        if not too_long:  # a single word spoken for longer stays one shot (and gets two windows)
            return pieces
        index, (a, b) = max(too_long, key=lambda item: cuts[item[1][1]] - cuts[item[1][0]])
        length = cuts[b] - cuts[a]
        middle = (cuts[a] + cuts[b]) / 2

        def score(j: int) -> float:
            distance = abs(cuts[j] - middle) / length  # 0 at the middle, 0.5 at either end
            clause = 0.25 if _CLAUSE_END.search(words[j - 1]["text"]) else 0.0
            too_short = 1.0 if min(cuts[j] - cuts[a], cuts[b] - cuts[j]) < 1.0 else 0.0
            return distance - clause + too_short

        best = min(range(a + 1, b), key=score)
        pieces[index:index + 1] = [(a, best), (best, b)]


def _join_short(pieces: list[tuple[int, int]], cuts: list[float], shortest: float, longest: float,
                sentence_of: list[int]) -> list[tuple[int, int]]:
    """A whole sentence spoken for less than `shortest` seconds joins the next shot, or else the
    previous one, when the two together are not longer than `longest`."""
    def length(first: int, last: int) -> float:
        return cuts[last] - cuts[first]

    def whole(first: int, last: int) -> bool:  # begins and ends at sentence boundaries
        return ((first == 0 or sentence_of[first - 1] != sentence_of[first])
                and (last == len(sentence_of) or sentence_of[last] != sentence_of[last - 1]))

    joined = list(pieces)
    i = 0
    while i < len(joined):
        first, last = joined[i]
        if length(first, last) < shortest and whole(first, last):
            if i + 1 < len(joined) and length(first, joined[i + 1][1]) <= longest:
                joined[i:i + 2] = [(first, joined[i + 1][1])]
                continue  # the joined shot may still be short: look at it again
            if i > 0 and length(joined[i - 1][0], last) <= longest:
                joined[i - 1:i + 1] = [(joined[i - 1][0], last)]
                i -= 1
                continue
        i += 1
    return joined


def cut_shots(words: list[dict], duration: float, target: float, longest: float,
              sentences: list[dict] | None = None) -> list[tuple[int, int]]:
    """Word ranges [first, last) of each shot, in order, covering every word."""
    cuts = cut_times(words, duration, sentences)
    sentence_of = [w["sentence"] for w in words]
    pieces: list[tuple[int, int]] = []
    first = 0
    for j in range(1, len(words) + 1):
        if j == len(words) or sentence_of[j] != sentence_of[first]:
            pieces.extend(_split(first, j, words, cuts, longest))
            first = j
    return _join_short(pieces, cuts, target / 2, longest, sentence_of)


def _bare(word: str) -> str:
    return re.sub(r"^\W+|\W+$", "", word).lower()


def _name_forms(name: str) -> list[list[str]]:
    """How a cast member may be named: the full name, or any capitalised word of it ("Mara",
    "Okafor" for "Mr. Okafor"); a title alone ("Mr.") does not count."""
    forms = [[_bare(w) for w in name.split() if _bare(w)]]
    forms += [[_bare(raw)] for raw in name.split()
              if raw[:1].isupper() and len(_bare(raw)) > 2 and not raw.endswith(".")]
    return forms


def _gender(name: str, description: str) -> str | None:
    """'she', 'he' or None (unknown: any pronoun may refer to them), from the title in the name
    or the first telling word of the description."""
    for word in (_bare(w) for w in f"{name} {description}".split()):
        if word in _FEMININE:
            return "she"
        if word in _MASCULINE:
            return "he"
    return None


def cast_in_shots(shot_words: list[list[str]], cast: dict[str, str]) -> list[list[str]]:
    """The cast members each shot shows: the ones it names and the ones its pronouns refer back
    to, in the order they come up. "She" or "he" is the last one named before it (of that
    gender, when the cast's descriptions tell it); "they" is the last two named."""
    forms = sorted(((form, name) for name in cast for form in _name_forms(name)), key=lambda f: -len(f[0]))
    genders = {name: _gender(name, description) for name, description in cast.items()}
    named: list[str] = []  # everyone named so far, the most recent last
    result = []
    for words in shot_words:
        bare = [_bare(w) for w in words]
        shown: list[str] = []
        i = 0
        while i < len(bare):
            match = next(((form, name) for form, name in forms if bare[i:i + len(form)] == form), None)
            if match:
                form, name = match
                named = [n for n in named if n != name] + [name]
                shown.append(name)
                i += len(form)
                continue
            pronoun = _PRONOUNS.get(bare[i])
            if pronoun == "they":
                shown.extend(named[-2:])
            elif pronoun:
                shown.extend(next(([n] for n in reversed(named) if genders[n] in (None, pronoun)), []))
            i += 1
        result.append(list(dict.fromkeys(shown)))
    return result


def shot_seed(story_seed: int, text: str) -> int:
    """From the shot's own words: inserting or editing a shot elsewhere leaves this one's seed."""
    return (story_seed + zlib.crc32(text.encode("utf-8"))) % 2**32


def storyboard(plan: dict, timing: dict, settings: dict) -> list[Shot]:
    target, longest = settings["shot_seconds"]["target"], settings["shot_seconds"]["max"]
    words = timing["words"]
    ranges = cut_shots(words, timing["duration"], target, longest, timing.get("sentences"))
    cuts = cut_times(words, timing["duration"], timing.get("sentences"))
    texts = [[w["text"] for w in words[a:b]] for a, b in ranges]
    cast = cast_in_shots(texts, plan["cast"])
    # CLIP and T5 read English best. A story in another language that describes its cast or
    # setting in front matter (which may be written in English) is pictured from those alone;
    # without them the shot's own words are all a prompt has (README, "Languages").
    english_pictures = primary(plan.get("language", "en")) != "en" and bool(plan["cast"] or plan["setting"])
    shots = []
    for index, ((a, b), shot_words, members) in enumerate(zip(ranges, texts, cast)):
        text = " ".join(shot_words)
        subject = text.rstrip(".!?…,;:—–-\"'”’ ")  # a prompt, not a sentence: its commas separate parts
        if english_pictures:
            subject = ""
        parts = [subject, [f"{name}: {plan['cast'][name]}" for name in members], plan["setting"], plan["style"]]
        prompt = shot_prompt(*parts)
        shots.append(Shot(
            index=index,
            sentences=sorted({w["sentence"] for w in words[a:b]}),
            words=(a, b),
            text=text,
            start=cuts[a],
            end=cuts[b],
            cast=members,
            prompt=prompt.prompt,
            prompt_2=prompt.prompt_2,
            prompt_tokens=prompt.tokens,
            description=prompt.description,
            negative_prompt=plan["negative_prompt"],
            seed=shot_seed(plan["seed"], text),
        ))
    return shots


def write_storyboard(plan_json: Path, words_json: Path, settings: dict, directory: Path) -> tuple[dict, dict]:
    """shots.json in `directory`; returns the artifact's metadata and what shots.json holds."""
    shots = storyboard(store.read_json(plan_json), store.read_json(words_json), settings)
    board = {"shots": [asdict(s) for s in shots]}
    store.write_json(directory / "shots.json", board)
    lengths = [s.end - s.start for s in shots]
    return {"shots": len(shots), "longest_s": round(max(lengths), 3), "shortest_s": round(min(lengths), 3),
            "max_prompt_tokens": max(s.prompt_tokens for s in shots)}, board


@task(name="storyboard", cache_policy=ArtifactPolicy(stage="storyboard", version=STAGE_VERSION))
def storyboard_task(plan: PlanResult, alignment: AlignmentResult, settings: dict) -> Storyboard:
    ref, board = run_stage_keeping("storyboard", lambda directory: write_storyboard(
        plan.path("plan.json"), alignment.path("words.json"), settings, directory))
    return Storyboard.of(ref, **(board or store.read_json(store.path_of(ref, "shots.json"))))
