"""Plan: story text -> its front matter (title, style, setting, cast, seed) and its sentences
and words.

Shots are cut later, on the narration's word times (tasks/storyboard.py): how long a sentence
is spoken is known only once it has been spoken.

A story may start with YAML front matter between two `---` lines:

    ---
    title: The Night Train
    style: watercolour, muted blues
    setting: a sleeper train crossing snowy mountains at night
    cast:
      Mara: a girl of ten in a red wool coat, dark curls
      Mr. Okafor:
        description: a tall conductor with a grey beard and a brass lantern
        image: okafor.png
    seed: 7
    language: en
    ---
    Mara could not sleep. ...

A cast member is a description, or a description and `image`: a picture of them, its path
relative to the story file, used as their reference picture (tasks/stages/cast.py) instead of
one made from the description. Preflight checks the picture before any work.

`language` is a BCP 47 tag (es, fr, pt-BR); without it the story's language is detected from
its text (tasks/text/language.py). Sentences are split by that language's rules, and the
plan records the language and how it was found, for the voice, the aligner and the captions.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml
from prefect import task

from faceless.tasks.runtime import store
from faceless.tasks.runtime.caching import ArtifactPolicy, run_stage_keeping
from faceless.tasks.stages.results import PlanResult
from faceless.tasks.text.language import LanguageError, StoryLanguage, canonical, story_language
from faceless.tasks.text.sentences import split_sentences

MAX_STORY_CHARS = 20_000  # about 3,500 words, a 20-minute narration: far past a short
# 2: sentences from pysbd (tasks/sentences.py); 3: front matter, no scenes (the storyboard cuts
# shots); 4: the story's language (front matter or detected), sentences split by its rules
STAGE_VERSION = 4


class StoryError(ValueError):
    """A story that cannot be rendered (empty, too long, not text)."""


@dataclass
class Sentence:
    index: int
    text: str
    words: list[str]


@dataclass
class FrontMatter:
    """What a story says about itself: every field optional."""
    title: str | None = None
    style: str | None = None  # replaces the profile's plan.style
    setting: str = ""  # where the story happens: goes into every shot's prompt
    cast: dict[str, str] = field(default_factory=dict)  # name -> how they look
    # name -> the path of their picture, as the front matter wrote it (relative to the story file)
    cast_images: dict[str, str] = field(default_factory=dict)
    seed: int | None = None  # replaces the profile's plan.seed
    language: str | None = None  # a BCP 47 tag; None: detected from the story


@dataclass
class Plan:
    title: str
    slug: str
    style: str
    setting: str
    cast: dict[str, str]
    seed: int
    negative_prompt: str
    sentences: list[Sentence] = field(default_factory=list)
    language: str = "en"  # BCP 47
    language_source: str = "front matter"  # or "detected"

    def to_dict(self) -> dict:
        return asdict(self)


_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)^---[ \t]*(?:\n|\Z)", re.DOTALL | re.MULTILINE)


def _one_line(value: Any) -> str | None:
    return " ".join(str(value).split()) if value is not None else None


def split_front_matter(text: str) -> tuple[FrontMatter, str]:
    """The story's front matter (empty when it has none) and the story itself, checked: a
    one-line StoryError for YAML that does not parse or fields that are not what they should be."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")
    match = _FRONT_MATTER.match(text.lstrip(" \t\n"))
    if not match:
        return FrontMatter(), text
    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 2})" if mark else ""
        raise StoryError(f"the story's front matter is not valid YAML{where}: "
                         f"{getattr(error, 'problem', None) or error}") from None
    data = data or {}
    if not isinstance(data, dict):
        raise StoryError("the story's front matter must be a mapping (title:, style:, setting:, cast:, seed:)")
    known = {"title", "style", "setting", "cast", "seed", "language"}
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        raise StoryError(f"unknown front matter field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    for name in ("title", "style", "setting", "language"):
        if data.get(name) is not None and not isinstance(data[name], (str, int, float)):
            raise StoryError(f"front matter {name} must be text")
    cast, cast_images = _cast(data.get("cast") or {})
    seed: Any = data.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise StoryError(f"front matter seed must be a whole number >= 0, not {seed!r}")
    front = FrontMatter(
        title=_one_line(data.get("title")) or None,
        style=_one_line(data.get("style")),
        setting=_one_line(data.get("setting")) or "",
        cast=cast,
        cast_images=cast_images,
        seed=seed,
        language=_language(data.get("language")),
    )
    return front, text.lstrip(" \t\n")[match.end():]


def _cast(cast: Any) -> tuple[dict[str, str], dict[str, str]]:
    """The cast's descriptions and pictures: each member is `Name: description` or
    `Name: {description: ..., image: picture.png}` (the picture is checked by preflight)."""
    shape = ("front matter cast must map each name to a description (Name: what they look like) "
             "or to {description: ..., image: picture.png}")
    if not isinstance(cast, dict):
        raise StoryError(shape)
    descriptions, images = {}, {}
    for key, value in cast.items():
        name = _one_line(key)
        if not name:
            continue
        if isinstance(value, dict):
            unknown = sorted(str(k) for k in value if k not in ("description", "image"))
            if unknown:
                raise StoryError(f"front matter cast {name}: unknown field(s) {', '.join(unknown)}; "
                                 "known: description, image")
            value, image = value.get("description"), value.get("image")
            if image is not None:
                if not isinstance(image, str) or not image.strip():
                    raise StoryError(f"front matter cast {name}: image must be the path of a picture")
                images[name] = image.strip()
        if not isinstance(value, (str, int, float)):
            raise StoryError(f"front matter cast {name} needs a description (what they look like); " + shape)
        descriptions[name] = _one_line(value)
    return descriptions, images


def _language(value: Any) -> str | None:
    if value is None or str(value).strip() == "":
        return None
    try:
        return canonical(str(value))
    except LanguageError as error:
        raise StoryError(str(error)) from None


def language_of(text: str) -> StoryLanguage:
    """The story's language, as the plan stage will find it (preflight chooses the voice by
    it before any stage runs): front matter's tag, else detected from the normalised story."""
    front, body = split_front_matter(text)
    return story_language(front.language, normalise_story(body))


def read_story_file(path: str | Path) -> str:
    """Read a story as UTF-8, with one-line errors for what is not a readable text file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise StoryError(f"story file not found: {path}") from None
    except IsADirectoryError:
        raise StoryError(f"story file is a directory: {path}") from None
    except OSError as error:
        raise StoryError(f"cannot read story file {path}: {error.strerror}") from None
    if len(data) > 4 * MAX_STORY_CHARS:
        raise StoryError(f"story file {path} is {len(data)} bytes; the limit is {MAX_STORY_CHARS} characters")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise StoryError(
            f"story file {path} is not UTF-8 text (byte {error.start}: {data[error.start:error.start + 1]!r})"
        ) from None


def normalise_story(text: str) -> str:
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch) != "Cc")
    text = text.strip()
    if not text:
        raise StoryError("the story is empty")
    if len(text) > MAX_STORY_CHARS:
        raise StoryError(f"the story has {len(text)} characters; the limit is {MAX_STORY_CHARS}")
    return text


def slugify(text: str, fallback_seed: str = "") -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = "-".join(re.findall(r"[a-z0-9]+", ascii_text.lower()))[:60].strip("-")
    if not slug:
        slug = "story-" + hashlib.sha256(fallback_seed.encode("utf-8")).hexdigest()[:8]
    return slug


def plan_story(text: str, settings: dict, title: str | None = None) -> Plan:
    front, body = split_front_matter(text)
    body = normalise_story(body)
    language = story_language(front.language, body)
    sentence_texts = split_sentences(body, language.tag)
    if not any(word for s in sentence_texts for word in s.split()):
        raise StoryError("the story has no words")
    title = front.title or title or " ".join(body.split()[:6])
    style = front.style if front.style is not None else settings["style"]
    return Plan(
        title=title,
        slug=slugify(title, body),
        style=style.strip(),
        setting=front.setting,
        cast=front.cast,
        seed=front.seed if front.seed is not None else settings["seed"],
        negative_prompt=settings["negative_prompt"],
        sentences=[Sentence(i, s, s.split()) for i, s in enumerate(sentence_texts)],
        language=language.tag,
        language_source=language.source,
    )


def write_plan(plan: Plan, directory: Path) -> dict:
    store.write_json(directory / "plan.json", plan.to_dict())
    return {"sentences": len(plan.sentences), "cast": len(plan.cast)}


@task(name="plan", cache_policy=ArtifactPolicy(stage="plan", version=STAGE_VERSION))
def plan_task(story: str, title: str, settings: dict) -> PlanResult:
    def build(directory: Path) -> tuple[dict, dict]:
        plan = plan_story(story, settings, title)
        return write_plan(plan, directory), plan.to_dict()

    ref, plan = run_stage_keeping("plan", build)
    return PlanResult.of(ref, **(plan or store.read_json(store.path_of(ref, "plan.json"))))
