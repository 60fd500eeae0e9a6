"""Story text -> sentences, the unit that drives shots, narration calls, captions and cues."""

from __future__ import annotations

import re

import pysbd
from pysbd.languages import LANGUAGE_CODES

from faceless.tasks.text.language import primary

_PARAGRAPH = re.compile(r"\n\s*\n")
# What pysbd is given in place of a character: its rules know only the ASCII forms of curly
# quotes and "…", and it uses some rare symbols as markers of its own (a text with one of them
# comes back with no sentences at all), so those go to it as "_".
# pysbd's Arabic rules also end a sentence at the Arabic comma "،": it goes to them as ",".
_FOR_PYSBD = {"‘": "'", "’": "'", "“": '"', "”": '"', "…": "...", "،": ",",
              **dict.fromkeys("∯♨☝ǃᓰᓱᓳᓴᓷᓸ✂ȸȹ⎋⌬☉☈☇☄", "_")}
_CLOSERS = set("\"'”’»)]}」』）】》")
_CJK_STOPS = set("。！？")
_CJK_OPEN, _CJK_CLOSE = "「『（【《", "」』）】》"
# Two quoted sentences in a row ("Really?" "Yes.") are one segment to pysbd; cut between them.
_QUOTE_AFTER_QUOTE = re.compile(r"(?<=[.!?…][\"'”’])\s+(?=[\"“‘'][A-Z])|(?<=[。！？][」』”])\s*(?=[「『“])")
# A word for the no-text-lost check: whitespace-separated, and also ended by a CJK sentence
# stop (with its closing quotes), since Chinese and Japanese put no space between sentences.
_CJK_WORD_END = re.compile("([。！？]++[" + re.escape("".join(sorted(_CLOSERS))) + "]*+)(?=\\S)")


def pysbd_language(tag: str) -> str:
    """pysbd's rules for the story's language (two dozen languages). Any other language gets
    the English rules: they end sentences at . ! ? and at the CJK stops, which is what most
    scripts use, and they only add abbreviations that a non-English text will not contain."""
    code = primary(tag)
    return code if code in LANGUAGE_CODES else "en"


def split_sentences(text: str, language: str = "en") -> list[str]:
    """Split a story into sentences: clean strings that hold every word of it once, in order.

    Why pysbd: it is rule-based, pure Python and deterministic, with no model or data to
    download (NLTK's punkt needs its data fetched, spaCy and stanza need models), and it is
    tested on the "Golden Rules" sentence-boundary set. Its last release is 0.3.4 (2021), so
    the quirks found here are worked around below, not waited on.

    The boundaries come from pysbd's rules for `language` (a BCP 47 tag; see pysbd_language).
    With the English rules, abbreviations
    (Mr. Dr. e.g. etc.), initials (J. R. R. Tolkien), decimals and prices (3.14, $4.50), times
    (3 p.m., 10:30 a.m.), ellipses, numbered lists, URLs and e-mails do not end a sentence,
    and a sentence keeps its closing quote or bracket. pysbd's English rules also end a
    sentence at the CJK stops 。！？. On top of pysbd, this function:

    - makes blank lines (paragraphs) boundaries always, and joins a single line break
      (wrapping) with a space;
    - cuts the original text itself at pysbd's offsets (pysbd drops a segment it has
      rewritten, which would lose words), and only between words or after a CJK stop, so a
      quote pysbd left alone ('The end.' + '"') stays with its sentence;
    - gives pysbd ASCII quotes and "..." for the curly forms and "…", which its rules miss,
      and "_" for the symbols it uses as markers;
    - cuts between two quoted sentences in a row, and never inside 「…」 or （…）.

    Each sentence has its words separated by single spaces, and the words of all sentences,
    in order, are the story's words (checked on every call).
    """
    sentences: list[str] = []
    for paragraph in _PARAGRAPH.split(text):
        paragraph = " ".join(paragraph.split())
        if paragraph:
            sentences.extend(_split_paragraph(paragraph, pysbd_language(language)))
    if _words(text) != [word for sentence in sentences for word in _words(sentence)]:
        raise RuntimeError("split_sentences lost, duplicated or reordered words of the story")
    return sentences


def _split_paragraph(paragraph: str, language: str) -> list[str]:
    pysbd_text, origin = _pysbd_forms(paragraph)
    # A fresh Segmenter per call: it keeps the text being split on itself (not thread-safe).
    spans = pysbd.Segmenter(language=language, clean=False, char_span=True).segment(pysbd_text)
    cuts = set(match.end() for match in _QUOTE_AFTER_QUOTE.finditer(paragraph))
    for span in spans:
        last = span.start + len(span.sent.rstrip()) - 1  # the segment's last visible character
        if span.start <= last < len(pysbd_text):
            cut = _boundary(paragraph, origin[last] + 1)
            if cut is not None:
                cuts.add(cut)
    pieces, start = [], 0
    for cut in sorted(cuts) + [len(paragraph)]:
        if paragraph[start:cut].strip():
            pieces.append(paragraph[start:cut].strip())
            start = cut
    return pieces


def _pysbd_forms(paragraph: str) -> tuple[str, list[int]]:
    """The paragraph as pysbd should see it, and each of its characters' index in the original."""
    out: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(paragraph):
        form = _FOR_PYSBD.get(char, char)
        out.append(form)
        origin.extend([index] * len(form))
    return "".join(out), origin


def _boundary(paragraph: str, cut: int) -> int | None:
    """The cut moved past closing quotes and brackets, or None where it may not be a boundary."""
    if _inside_cjk_brackets(paragraph, cut):
        return None
    while cut < len(paragraph) and paragraph[cut] in _CLOSERS:
        cut += 1
    if cut >= len(paragraph):
        return None
    if paragraph[cut].isspace():
        return cut
    if paragraph[cut] in _CJK_STOPS:  # inside a run like ！。
        return None
    before = cut - 1
    while before > 0 and paragraph[before] in _CLOSERS:
        before -= 1
    return cut if paragraph[before] in _CJK_STOPS else None


def _inside_cjk_brackets(paragraph: str, cut: int) -> bool:
    def depth(part: str) -> int:
        return sum(part.count(c) for c in _CJK_OPEN) - sum(part.count(c) for c in _CJK_CLOSE)

    # An unbalanced paragraph (a quote running on into the next) would suppress every cut.
    return depth(paragraph) == 0 and depth(paragraph[:cut]) > 0


def _words(text: str) -> list[str]:
    return _CJK_WORD_END.sub(r"\1 ", text).split()
