"""Sentence splitting: a corpus of tricky cases, and no story word lost, doubled or moved."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from faceless.tasks.stages.plan import normalise_story, plan_story, split_front_matter
from faceless.tasks.text.sentences import split_sentences
from faceless.tasks.settings import section

ROOT = Path(__file__).resolve().parent.parent
STORIES = sorted([*ROOT.glob("deployments/stories/*.txt"), *ROOT.glob("benchmarks/stories/*.txt"),
                  *Path("/work/shared/stories").glob("*.txt")])


def story_text(path: Path) -> str:
    """A sample story's text, after its front matter if it has one (benchmarks/stories/two-sentences-cast.txt)."""
    return split_front_matter(path.read_text(encoding="utf-8"))[1]

CORPUS = [
    # The issue: abbreviations, times and initials inside one sentence.
    ("Mr. Smith met Dr. Jones at 3 p.m. on Main St. yesterday.",
     ["Mr. Smith met Dr. Jones at 3 p.m. on Main St. yesterday."]),
    ("He met Mr. Brown, Mrs. Green and Prof. White. They talked.",
     ["He met Mr. Brown, Mrs. Green and Prof. White.", "They talked."]),
    ("Bring tools, e.g. a hammer, i.e. something heavy. Then wait.",
     ["Bring tools, e.g. a hammer, i.e. something heavy.", "Then wait."]),
    ("I bought apples, pears, etc. Then I left.", ["I bought apples, pears, etc.", "Then I left."]),
    ("She packed pens, paper, etc.", ["She packed pens, paper, etc."]),
    ("We met at 10:30 a.m. It rained.", ["We met at 10:30 a.m.", "It rained."]),
    ("It was 10:30 a.m. when we left.", ["It was 10:30 a.m. when we left."]),
    ("J. R. R. Tolkien wrote books. He died in 1973.",
     ["J. R. R. Tolkien wrote books.", "He died in 1973."]),
    ("Ms. A. B. Cole came. J.K. Rowling came too.", ["Ms. A. B. Cole came.", "J.K. Rowling came too."]),
    ("I saw the U.S.A. from a plane. It is big.", ["I saw the U.S.A. from a plane.", "It is big."]),
    # Numbers.
    ("Pi is 3.14 and tea costs $4.50 today. Nice.", ["Pi is 3.14 and tea costs $4.50 today.", "Nice."]),
    ("The price was $4.50. That was cheap.", ["The price was $4.50.", "That was cheap."]),
    ("Is this 3.5? Yes.", ["Is this 3.5?", "Yes."]),
    ("No. 5 is mine. Yes.", ["No. 5 is mine.", "Yes."]),
    # Ellipses, ASCII and Unicode, inside and at the end of a sentence.
    ("He waited... and waited. Then he left.", ["He waited... and waited.", "Then he left."]),
    ("He waited… and waited.", ["He waited… and waited."]),
    ("I don't know... Maybe.", ["I don't know...", "Maybe."]),
    ("This is it… Then nothing… And the end…", ["This is it…", "Then nothing…", "And the end…"]),
    # Quotes keep their closing mark; a quote ending the story is not a sentence of its own.
    ('"Run!" she said. He ran.', ['"Run!" she said.', "He ran."]),
    ("'Stop.' He left.", ["'Stop.'", "He left."]),
    ("“Run!” she said. “Now!” He ran.", ["“Run!” she said.", "“Now!”", "He ran."]),
    ("He said: ‘Fine.’ Then he left.", ["He said: ‘Fine.’", "Then he left."]),
    ('He said "Stop!" and stopped.', ['He said "Stop!" and stopped.']),
    ("The end.”", ["The end.”"]),
    ('It was over. "The end."', ["It was over.", '"The end."']),
    ("She whispered, “Wait…” Then silence.", ["She whispered, “Wait…”", "Then silence."]),
    # Dialogue: quoted sentences in a row.
    ("“Really?” “Yes.” “Okay.”", ["“Really?”", "“Yes.”", "“Okay.”"]),
    ('"Are you coming?" he asked.\n"No," she said. "Not today."',
     ['"Are you coming?" he asked.', '"No," she said.', '"Not today."']),
    # Brackets.
    ("It was late (very late). We slept.", ["It was late (very late).", "We slept."]),
    ("(This is an aside.) Next one.", ["(This is an aside.)", "Next one."]),
    # Question and exclamation runs.
    ("What?! No way!! Really?", ["What?!", "No way!!", "Really?"]),
    # Numbered lists, one item a line.
    ("1. Buy milk.\n2. Walk the dog.", ["1. Buy milk.", "2. Walk the dog."]),
    # URLs and e-mail addresses.
    ("Visit https://example.com/a.b today. Mail me at a.b@example.org now.",
     ["Visit https://example.com/a.b today.", "Mail me at a.b@example.org now."]),
    # Chinese and Japanese: no spaces between sentences; quotes 「」 and “” hold their stops.
    ("我很好。你呢？太好了！", ["我很好。", "你呢？", "太好了！"]),
    ("今日は晴れです。明日は雨ですか？すごい！", ["今日は晴れです。", "明日は雨ですか？", "すごい！"]),
    ("「こんにちは。」と彼は言った。そして帰った。", ["「こんにちは。」と彼は言った。", "そして帰った。"]),
    ("他说：“你好。”然后走了。", ["他说：“你好。”然后走了。"]),
    ("「こんにちは。」\n「さようなら。」", ["「こんにちは。」", "「さようなら。」"]),
    ("我学 Python。It is fun. 真的吗？", ["我学 Python。", "It is fun.", "真的吗？"]),
    # Wrapped lines join; blank lines always end a sentence; whitespace is cleaned.
    ("It was\nlate. Was it\nreally?", ["It was late.", "Was it really?"]),
    ("A title without a stop\n\nThe story begins. It ends", ["A title without a stop", "The story begins.", "It ends"]),
    ("He lived on Main St.\n\nShe lived there too.", ["He lived on Main St.", "She lived there too."]),
    ("  Trailing   spaces.   Here  \n", ["Trailing spaces.", "Here"]),
    ("No final stop here", ["No final stop here"]),
    # Symbols pysbd uses as its own markers: alone, it returns no sentence for this text at all.
    ("He drew a ♨ sign. Then ∯ and ✂ too.", ["He drew a ♨ sign.", "Then ∯ and ✂ too."]),
    ("Это тест. Второе предложение.", ["Это тест.", "Второе предложение."]),
]


@pytest.mark.parametrize("text, expected", CORPUS, ids=[text[:40] for text, _ in CORPUS])
def test_corpus(text, expected):
    assert split_sentences(text) == expected


def test_there_are_sample_stories():
    assert len(STORIES) >= 3


@pytest.mark.parametrize("path", STORIES, ids=[f"{p.parent.parent.name}/{p.name}" for p in STORIES])
def test_sample_story_words_are_kept_exactly(path):
    text = story_text(path)
    sentences = split_sentences(text)
    assert [word for sentence in sentences for word in sentence.split()] == text.split()
    assert all(sentence == " ".join(sentence.split()) and sentence for sentence in sentences)
    plan = plan_story(path.read_text(encoding="utf-8"), section("plan"))
    assert [word for s in plan.sentences for word in s.words] == normalise_story(text).split()


@pytest.mark.parametrize("seed", range(5))
def test_rewrapped_stories_keep_their_words(seed):
    """The sample stories and the corpus re-wrapped at random: line breaks, blank lines, spaces.

    Chinese and Japanese sentences have no space between them, so there a sentence may end
    inside a whitespace-separated "word": the check is on the characters, in order.
    """
    rng = random.Random(seed)
    words = " ".join([*(story_text(p) for p in STORIES), *(t for t, _ in CORPUS)]).split()
    text = "".join(word + rng.choice([" ", " ", " ", "  ", "\n", "\n\n", "\t"]) for word in words)
    sentences = split_sentences(text)
    assert "".join(sentences).replace(" ", "") == "".join(text.split())
    latin = [word for word in words if not any(stop in word for stop in "。！？")]
    text = "".join(word + rng.choice([" ", " ", "\n", "\n\n"]) for word in latin)
    sentences = split_sentences(text)
    assert [word for sentence in sentences for word in sentence.split()] == text.split()


@pytest.mark.parametrize("text", [
    "He stopped .... Then he went on.",  # pysbd alone returns "He stopped ." and "..." for "...."
    "He stopped .. Then he went on.",
    "Der Uebel) abe. .hatt' nun geglaubt",
    "Wait!. Go. Hi.. Bye.",
    "Hi. Hi. Hi. Hi.",
    'He said "Hi." "Hi." "Hi."',
])
def test_pysbd_rewrites_lose_no_words(text):
    sentences = split_sentences(text)
    assert [word for sentence in sentences for word in sentence.split()] == text.split()


def test_random_punctuation_soup_keeps_every_character():
    """Random strings of stops, quotes, brackets, abbreviations and CJK: split_sentences checks
    its own words on every call (and raises); here also that no character moves or goes."""
    pieces = [*"ab A. .?!…。！？「」『』（）“”‘’\"'()[]»«好♨∯", "Mr.", "p.m.", "3.14", "...", " ", "\n", "\n\n", "The"]
    rng = random.Random(7)
    for _ in range(2000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 40)))
        sentences = split_sentences(text)
        assert all(sentence and sentence == " ".join(sentence.split()) for sentence in sentences)
        assert "".join(sentences).replace(" ", "") == "".join(text.split())
