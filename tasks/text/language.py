"""The story's language: a BCP 47 tag (`es`, `pt-BR`, `zh-Hans`) from front matter `language:`,
else detected from the story's text.

Why py3langid: it is maintained (a modernised fork of langid.py), works offline with its model
inside the wheel, is deterministic (the same text always gives the same language, so the plan's
cache key and the voice chosen before the run agree) and covers 97 languages, every one the
voices here speak. Detection reads the story only, never its front matter.

A few words are not enough to tell ("The end." scores as Zulu, "Hello." as Breton): when the
detector gives its best guess less than MIN_CONFIDENCE of the probability, the story is taken
as English, the language every profile spoke before there was a choice, with the source
`default`; front matter `language:` settles it.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Literal

# language[-script][-region][-variant...]: what BCP 47 tags look like, without the registry.
_TAG = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z]{4})?(?:-(?:[A-Za-z]{2}|[0-9]{3}))?(?:-[A-Za-z0-9]{4,8})*$")
# Scripts written without spaces between words, and those written right to left.
NO_SPACES = {"ja", "zh", "th", "lo", "km", "my"}
RIGHT_TO_LEFT = {"ar", "he", "fa", "ur", "yi", "ps", "sd", "ug", "dv"}


DEFAULT = "en"
MIN_CONFIDENCE = 0.1  # py3langid's normalised probability of its best guess


class LanguageError(ValueError):
    """A front matter `language:` that is not a language tag."""


@dataclass(frozen=True)
class StoryLanguage:
    tag: str  # canonical BCP 47: "es", "pt-BR"
    source: Literal["front matter", "detected", "default"]


def canonical(tag: str) -> str:
    """The tag in BCP 47's conventional case (`pt-br` -> `pt-BR`, `ZH-hans` -> `zh-Hans`);
    a one-line LanguageError for what is not a tag. `_` is taken for `-` (`pt_BR`)."""
    text = str(tag).strip().replace("_", "-")
    if not _TAG.match(text):
        raise LanguageError(f"front matter language {tag!r} is not a language tag like es, fr or pt-BR")
    parts = text.split("-")
    out = [parts[0].lower()]
    for part in parts[1:]:
        if len(part) == 4 and part.isalpha():
            out.append(part.title())  # script
        elif len(part) == 2 or part.isdigit():
            out.append(part.upper())  # region
        else:
            out.append(part.lower())
    return "-".join(out)


def primary(tag: str) -> str:
    """The language subtag alone: `pt-BR` -> `pt`."""
    return tag.split("-")[0].lower()


@functools.lru_cache(maxsize=1)
def _identifier():
    """py3langid's model, choosing among languages with a two-letter code only: it also names
    dialects and historic forms (ary, arz, yue, grc) that no voice here tells apart from their
    language, and `zxx` (no language)."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    identifier.set_languages([code for code in identifier.labels if len(code) == 2])
    return identifier


def detect(text: str) -> tuple[str, float]:
    """The language of `text` (py3langid's two-letter code) and the probability it gives it."""
    code, probability = _identifier().classify(text)
    return code, float(probability)


def story_language(front_matter: str | None, body: str) -> StoryLanguage:
    """Front matter's tag when it gives one, else the detected language of the story."""
    if front_matter:
        return StoryLanguage(canonical(front_matter), "front matter")
    code, probability = detect(body)
    if probability < MIN_CONFIDENCE:
        return StoryLanguage(DEFAULT, "default")
    return StoryLanguage(code, "detected")


def written_without_spaces(tag: str) -> bool:
    return primary(tag) in NO_SPACES


def right_to_left(tag: str) -> bool:
    return primary(tag) in RIGHT_TO_LEFT
