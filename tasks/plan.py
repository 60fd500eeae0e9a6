"""Plan: story text -> sentences, words and scenes with their prompts and seeds.

Scenes are runs of consecutive sentences, so editing one sentence changes one scene's
prompt and leaves the others (and their keyframes and clips) as they were.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path

from prefect import task

from tasks import store
from tasks.caching import ArtifactPolicy, run_stage
from tasks.sentences import split_sentences

MAX_STORY_CHARS = 20_000  # about 3,500 words, a 20-minute narration: far past a short
STAGE_VERSION = 2  # 2: sentences from pysbd (tasks/sentences.py), not a regex


class StoryError(ValueError):
    """A story that cannot be rendered (empty, too long, not text)."""


@dataclass
class Sentence:
    index: int
    text: str
    words: list[str]


@dataclass
class Scene:
    index: int
    sentences: list[int]
    text: str
    prompt: str
    negative_prompt: str
    seed: int


@dataclass
class Plan:
    title: str
    slug: str
    sentences: list[Sentence] = field(default_factory=list)
    scenes: list[Scene] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


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
    text = normalise_story(text)
    sentence_texts = split_sentences(text)
    if not any(word for s in sentence_texts for word in s.split()):
        raise StoryError("the story has no words")
    title = title or " ".join(text.split()[:6])
    plan = Plan(title=title, slug=slugify(title, text))
    plan.sentences = [Sentence(i, s, s.split()) for i, s in enumerate(sentence_texts)]

    per_scene = max(1, int(settings.get("sentences_per_scene", 2)))
    style = settings.get("style", "").strip()
    for index, start in enumerate(range(0, len(plan.sentences), per_scene)):
        group = plan.sentences[start:start + per_scene]
        scene_text = " ".join(s.text for s in group)
        plan.scenes.append(Scene(
            index=index,
            sentences=[s.index for s in group],
            text=scene_text,
            prompt=f"{scene_text}, {style}" if style else scene_text,
            negative_prompt=settings.get("negative_prompt", ""),
            seed=int(settings.get("seed", 0)) + index,
        ))
    return plan


def write_plan(plan: Plan, directory: Path) -> dict:
    store.write_json(directory / "scenes.json", plan.to_dict())
    return {"scenes": len(plan.scenes), "sentences": len(plan.sentences)}


@task(name="plan", cache_policy=ArtifactPolicy(stage="plan", version=STAGE_VERSION))
def plan_task(story: str, title: str, settings: dict) -> dict:
    return run_stage("plan", lambda directory: write_plan(plan_story(story, settings, title), directory))
