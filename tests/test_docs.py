"""The docs stay true to the clone: README stays a short front page, and every link, `make`
target, `faceless` option, script option and file path the docs name exists.

Docs rot silently: a renamed file, a dropped flag or a moved heading leaves a guide that reads
well and fails the reader. These checks read only text and argparse parsers, so they are in
the fast set.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]
MAX_README_LINES = 170

# Guides written on other branches and linked from here before they land; the integrator
# empties this set at merge (test_pending_guides_are_still_pending says when).
PENDING: set[str] = set()

FENCE = re.compile(r"^```.*?^```", re.S | re.M)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
SCRIPT = re.compile(r"\b((?:benchmarks|deployments)/[\w-]+\.py)\b")
PATH = re.compile(r"(?<![\w/.])((?:benchmarks|deployments|flows|tasks|tests|docs)/[\w./-]*\w\.(?:py|txt|yaml|md|json))\b")


def _name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def prose(text: str) -> str:
    """The text outside fenced code blocks (a link inside one is an example, not a link)."""
    return FENCE.sub("", text)


def code(text: str) -> list[str]:
    """Every fenced block's lines and every inline code span."""
    blocks = [line for block in FENCE.findall(text) for line in block.splitlines()[1:-1]]
    return blocks + INLINE_CODE.findall(prose(text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).lower()  # a link keeps its words
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    for heading in HEADING.findall(prose(path.read_text(encoding="utf-8"))):
        base, n = slug(heading), 0
        name = base
        while name in found:  # GitHub numbers repeated headings: name, name-1, name-2 ...
            n += 1
            name = f"{base}-{n}"
        found.add(name)
    return found


def test_readme_is_a_short_front_page():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


def test_slug_follows_github():
    assert slug("Studio and modern on a GPU: `make gpu-check`") == "studio-and-modern-on-a-gpu-make-gpu-check"
    assert slug("The flow's parameters") == "the-flows-parameters"


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_every_relative_link_points_to_a_file_and_heading_that_exist(doc):
    broken = []
    for target in LINK.findall(prose(doc.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        linked = (doc.parent / file_part).resolve() if file_part else doc
        if not linked.is_relative_to(ROOT):
            broken.append(f"{target} (outside the clone)")
            continue
        if _name(linked) in PENDING and not linked.exists():
            continue
        if not linked.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target} (no heading #{anchor} in {_name(linked)})")
    assert not broken, f"{_name(doc)}: broken links: {broken}"


def test_pending_guides_are_still_pending():
    landed = sorted(name for name in PENDING if (ROOT / name).exists())
    assert not landed, f"{landed} exist now: remove them from PENDING so their links are checked"


def test_the_readme_links_every_guide():
    text = README.read_text(encoding="utf-8")
    guides = [_name(p) for p in DOCS if p != README] + sorted(PENDING)
    assert not [g for g in guides if f"]({g}" not in text], "README's Documentation table misses a guide"


def _make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][\w-]*)\s*:", (ROOT / "Makefile").read_text(encoding="utf-8"), re.M))


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_make_targets_in_the_docs_exist(doc):
    named = set()
    for snippet in code(doc.read_text(encoding="utf-8")):
        words = snippet.split()
        for i, word in enumerate(words[:-1]):
            if word == "make":
                rest = [w for w in words[i + 1:] if "=" not in w]  # skip VAR=value
                if rest and re.fullmatch(r"[a-z][\w-]*", rest[0]):
                    named.add(rest[0])
    assert not named - _make_targets(), f"{_name(doc)} names make targets the Makefile lacks: {named - _make_targets()}"


def _faceless_options() -> dict[str, set[str]]:
    """The options of each `faceless` subcommand, `profile show` as `profile`."""
    from faceless.flows.cli import _parser

    def options(parser: argparse.ArgumentParser) -> tuple[set[str], dict]:
        subs = next((a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {})
        return {o for a in parser._actions for o in a.option_strings}, subs

    _, commands = options(_parser())
    found = {}
    for name, sub in commands.items():
        flags, nested = options(sub)
        for child in nested.values():
            flags |= options(child)[0]
        found[name] = flags
    return found


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_faceless_commands_in_the_docs_exist(doc):
    known = _faceless_options()
    wrong = []
    for snippet in code(doc.read_text(encoding="utf-8")):
        for command, rest in re.findall(r"\bfaceless ([a-z][a-z-]*)\b([^#\n]*)", snippet):
            if command not in known:
                wrong.append(f"faceless {command}")
                continue
            wrong += [f"faceless {command} {flag}" for flag in re.findall(r"(?<![\w-])--[a-z][\w-]*", rest)
                      if flag not in known[command]]
    assert not wrong, f"{_name(doc)} names commands or options the CLI lacks: {wrong}"


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_script_options_in_the_docs_exist(doc):
    wrong = []
    for snippet in code(doc.read_text(encoding="utf-8")):
        for match in SCRIPT.finditer(snippet):
            script = ROOT / match.group(1)
            if not script.exists():
                wrong.append(f"{match.group(1)} (no such script)")
                continue
            rest = snippet[match.end():].split(" #")[0]
            source = script.read_text(encoding="utf-8")
            wrong += [f"{match.group(1)} {flag}" for flag in re.findall(r"(?<![\w-])--[a-z][\w-]*", rest)
                      if f'"{flag}"' not in source]
    assert not wrong, f"{_name(doc)} names scripts or options that do not exist: {wrong}"


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_files_named_in_the_docs_exist(doc):
    named = set(PATH.findall(doc.read_text(encoding="utf-8")))
    missing = sorted(n for n in named if not (ROOT / n).exists() and n not in PENDING)
    assert not missing, f"{_name(doc)} names files that do not exist: {missing}"
