"""Burned-in captions: short phrases with the word being spoken highlighted.

Each (phrase, highlighted word) overlay is drawn once with Pillow and then pasted on every
frame it covers: drawing text per frame costs several times more than blending a cached
overlay.
"""

from __future__ import annotations

import functools
import glob
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, features

# Horizontal safe area of a vertical short, as fractions of the width: the apps put their
# like/comment/share column on the right, so captions are centred in what is left.
SAFE_LEFT, SAFE_RIGHT = 0.06, 0.82
HOLD_S = 0.5  # how long a phrase stays up after its last word when a pause follows


@dataclass
class Phrase:
    start: float
    end: float
    words: list[dict]  # story words with their times


def phrases(words: list[dict], max_words: int) -> list[Phrase]:
    """Group words into phrases of at most max_words, never across a sentence; a phrase stays
    on screen until the next begins (or half a second after its last word at a pause)."""
    groups: list[list[dict]] = []
    for word in words:
        if groups and len(groups[-1]) < max_words and groups[-1][-1]["sentence"] == word["sentence"]:
            groups[-1].append(word)
        else:
            groups.append([word])
    result = []
    for i, group in enumerate(groups):
        end = group[-1]["end"] + HOLD_S
        if i + 1 < len(groups):
            following = groups[i + 1][0]
            same_sentence = following["sentence"] == group[0]["sentence"]
            end = following["start"] if same_sentence else min(end, following["start"])
        result.append(Phrase(group[0]["start"], max(end, group[-1]["end"]), group))
    return result


class CaptionFontError(ValueError):
    """A caption has letters that none of the profile's fonts can draw."""


# Where fonts are looked up by file name, after an explicit path: the system's font folders,
# then any font a Python package ships (the default fonts come from PyPI, so a fresh
# machine has them without a system package).
FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), Path.home() / ".fonts")
_FONT_SUFFIXES = {".ttf", ".otf", ".ttc"}


@functools.lru_cache(maxsize=1)
def _package_fonts() -> dict[str, Path]:
    import importlib.metadata

    found: dict[str, Path] = {}
    for dist in importlib.metadata.distributions():
        for file in dist.files or ():
            if Path(str(file)).suffix.lower() in _FONT_SUFFIXES:
                found.setdefault(Path(str(file)).name, Path(dist.locate_file(file)))
    return found


@functools.lru_cache(maxsize=32)
def find_font(name: str) -> Path:
    path = Path(name).expanduser()
    if path.is_file():
        return path
    if name in _package_fonts():
        return _package_fonts()[name]
    for folder in FONT_DIRS:
        if folder.is_dir():
            match = next(folder.rglob(glob.escape(name)), None)
            if match is not None:
                return match
    raise CaptionFontError(
        f"caption font {name!r} (compose.captions.fonts) not found: give a .ttf/.otf path, or a file name "
        f"installed in {', '.join(map(str, FONT_DIRS))} or shipped by a Python package")


@functools.lru_cache(maxsize=32)
def _codepoints(path: Path) -> frozenset[int]:
    from fontTools.ttLib import TTFont

    with TTFont(str(path), lazy=True, fontNumber=0) as font:
        return frozenset(font.getBestCmap())


@functools.lru_cache(maxsize=64)
def _face(path: Path, size: int, weight: str | None) -> ImageFont.FreeTypeFont:
    font = ImageFont.truetype(str(path), size)
    if weight:
        try:  # a variable font: pick its named instance (Bold, SemiBold, ...)
            font.set_variation_by_name(weight)
        except OSError:
            pass  # not a variable font: its own weight is what it is
    return font


def font_names(style: dict) -> list[str]:
    """The profile's fonts in order of preference: each character is drawn with the first
    that has a glyph for it."""
    return list(style["fonts"])


def _must_draw(char: str) -> bool:
    # Letters, digits and combining marks must be drawn; a symbol no font has (an emoji, say)
    # is left out of the burned caption, and stays in the subtitle files.
    return unicodedata.category(char)[0] in "LNM"


def _is_rtl(text: str) -> bool:
    """Direction of a paragraph: that of its first strong character (Unicode's bidi rule)."""
    for char in text:
        kind = unicodedata.bidirectional(char)
        if kind in ("R", "AL"):
            return True
        if kind == "L":
            return False
    return False


def check_fonts(text: str, style: dict) -> None:
    """Refuse, before any rendering, a story whose letters the caption fonts cannot draw."""
    paths = [find_font(name) for name in font_names(style)]
    covered = frozenset().union(*(_codepoints(path) for path in paths))
    missing = sorted({c for c in text if _must_draw(c) and ord(c) not in covered and not c.isspace()})
    if missing:
        shown = ", ".join(f"{c!r} U+{ord(c):04X}" for c in missing[:8])
        raise CaptionFontError(
            f"no caption font draws {shown}{' ...' if len(missing) > 8 else ''}: add a font that covers "
            f"them to compose.captions.fonts (now {font_names(style)})")
    if any(_is_rtl(c) for c in text) and not features.check("raqm"):
        raise CaptionFontError("right-to-left captions need Pillow with libraqm (its wheels have it)")


class _Fonts:
    """The profile's fonts at one size, and which of them draws each character."""

    def __init__(self, style: dict, size: int):
        self.paths = [find_font(name) for name in font_names(style)]
        self.faces = [_face(path, size, style["weight"]) for path in self.paths]
        self.cmaps = [_codepoints(path) for path in self.paths]

    def runs(self, text: str) -> list[tuple[str, ImageFont.FreeTypeFont]]:
        """Split text into runs drawn with one font each. Spaces and punctuation stay with the
        run they are in when its font has them, so a word is not broken up needlessly."""
        runs: list[tuple[str, int]] = []
        for char in text:
            if runs and ord(char) in self.cmaps[runs[-1][1]] and not _must_draw(char):
                chosen = runs[-1][1]
            else:
                chosen = next((i for i, cmap in enumerate(self.cmaps) if ord(char) in cmap), None)
                if chosen is None:
                    continue  # an undrawable symbol; letters were refused by check_fonts
            if runs and runs[-1][1] == chosen:
                runs[-1] = (runs[-1][0] + char, chosen)
            else:
                runs.append((char, chosen))
        return [(run, self.faces[i]) for run, i in runs]

    def width(self, text: str) -> float:
        return sum(face.getlength(run) for run, face in self.runs(text))

    def metrics(self, texts: list[str]) -> tuple[int, int]:
        """Ascent and descent of a line: the largest of the fonts the text uses, so mixed
        scripts share a baseline and a Latin phrase is not spaced for Arabic's tall marks."""
        used = {id(face): face for text in texts for _, face in self.runs(text)} or {0: self.faces[0]}
        pairs = [face.getmetrics() for face in used.values()]
        return max(a for a, _ in pairs), max(d for _, d in pairs)


class CaptionRenderer:
    """Draws caption overlays for frames of a given size, with the profile's style."""

    MAX_LINES = 2
    SHRINK = (1.0, 0.9, 0.8, 0.7)  # font scales tried to keep a phrase within two lines

    def __init__(self, style: dict, width: int, height: int):
        self.style = style
        self.width, self.height = width, height
        # Style sizes are for a 720-pixel-wide vertical frame; scale with the frame's short side.
        self.scale = min(width, height) / 720
        self.size = max(8, round(style["size"] * self.scale))
        self.outline = max(1, round(style["outline_width"] * self.scale))
        # Landscape and square videos have no app column on the right: centre them.
        self.safe_left, self.safe_right = (SAFE_LEFT, SAFE_RIGHT) if height > width else (0.06, 0.94)
        self.limit = self.width * (self.safe_right - self.safe_left)

    def _lines(self, texts: list[str], fonts: _Fonts) -> list[list[tuple[int, str]]]:
        """(word index, text) pieces per line, wrapping at the safe width. A word wider than a
        line (a sentence of Chinese or Japanese has no spaces) is broken between characters."""
        pieces: list[tuple[int, str]] = []
        for i, text in enumerate(texts):
            if fonts.width(text) <= self.limit:
                pieces.append((i, text))
                continue
            piece = ""
            for char in text:
                # Punctuation never starts a line (。 ， ？ stay with the word before them).
                if piece and fonts.width(piece + char) > self.limit and unicodedata.category(char)[0] != "P":
                    pieces.append((i, piece))
                    piece = ""
                piece += char
            pieces.append((i, piece))
        lines: list[list[tuple[int, str]]] = [[]]
        for i, piece in pieces:
            candidate = " ".join(p for _, p in lines[-1] + [(i, piece)])
            if lines[-1] and fonts.width(candidate) > self.limit:
                lines.append([(i, piece)])
            else:
                lines[-1].append((i, piece))
        return lines

    def overlay(self, texts: list[str], highlight: int) -> tuple[np.ndarray, int, int]:
        """RGBA overlay (as an array) of the phrase and where its top-left goes on the frame."""
        for shrink in self.SHRINK:
            fonts = _Fonts(self.style, max(8, round(self.size * shrink)))
            lines = self._lines(texts, fonts)
            if len(lines) <= self.MAX_LINES:
                break
        ascent, descent = fonts.metrics(texts)
        line_h = ascent + descent
        line_gap = round(line_h * 0.15)
        pad = self.outline + 2
        box_h = len(lines) * line_h + (len(lines) - 1) * line_gap + 2 * pad
        image = Image.new("RGBA", (self.width, box_h), (0, 0, 0, 0))
        draw = ImageDraw.Draw(image)
        rtl = _is_rtl(" ".join(texts))
        space = fonts.width(" ")
        centre = self.width * (self.safe_left + self.safe_right) / 2
        for row, line in enumerate(lines):
            widths = [fonts.width(piece) for _, piece in line]
            line_width = sum(widths) + space * (len(line) - 1)
            baseline = pad + row * (line_h + line_gap) + ascent
            # Words run right to left in a right-to-left phrase; each word is shaped on its own.
            order = list(zip(line, widths))[::-1] if rtl else list(zip(line, widths))
            x = centre - line_width / 2
            for (i, piece), w in order:
                colour = self.style["highlight"] if i == highlight else self.style["color"]
                self._draw_word(draw, x, baseline, piece, fonts, colour)
                x += w + space
        top = int(self.height * (1 - self.style["bottom_margin"])) - box_h
        return np.asarray(image), 0, top

    def _draw_word(self, draw: ImageDraw.ImageDraw, x: float, baseline: float, text: str, fonts: _Fonts,
                   colour: str) -> None:
        runs = fonts.runs(text)
        if _is_rtl(text):
            runs = runs[::-1]
        for run, face in runs:
            # "ls": x is the left edge and y the baseline, so runs in different fonts line up.
            draw.text((x, baseline), run, font=face, fill=colour, anchor="ls",
                      stroke_width=self.outline, stroke_fill=self.style["outline"])
            x += face.getlength(run)


# BT.601 limited range: what swscale writes for rgb24 -> yuv420p with no colorspace given, so a
# caption drawn here has the colours it had when compose drew it on RGB frames.
_RGB_TO_YUV = np.array([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]]) / 255
_YUV_OFFSET = np.array([16.0, 128.0, 128.0])


class YuvOverlay:
    """A caption overlay ready to blend onto yuv420p frames (the I420 arrays PyAV's
    `to_ndarray()` gives): cropped to its visible pixels, converted once, premultiplied by
    alpha (full resolution for luma, 2x2 averages for chroma). Compose then never converts a
    frame to RGB and back."""

    def __init__(self, overlay: np.ndarray, left: int, top: int):
        # On a canvas with even edges, so the crop covers whole 2x2 chroma blocks.
        dy, dx = top % 2, left % 2
        h, w = overlay.shape[:2]
        canvas = np.zeros((h + dy + (h + dy) % 2, w + dx + (w + dx) % 2, 4), np.uint8)
        canvas[dy:dy + h, dx:dx + w] = overlay
        alpha = canvas[..., 3]
        rows, cols = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
        self.empty = not rows.size
        if self.empty:
            return
        r0, c0 = rows[0] // 2 * 2, cols[0] // 2 * 2
        r1, c1 = (rows[-1] + 2) // 2 * 2, (cols[-1] + 2) // 2 * 2
        crop = canvas[r0:r1, c0:c1].astype(np.float64)
        self.top, self.left = top - dy + r0, left - dx + c0
        a = crop[..., 3] / 255
        yuv = crop[..., :3] @ _RGB_TO_YUV.T + _YUV_OFFSET
        h, w = a.shape
        # 8-bit fixed point: blended = (pre + plane * inverse) >> 8, with alpha scaled to 256.
        self.luma = (np.rint(yuv[..., 0] * a * 256).astype(np.uint32), np.rint((1 - a) * 256).astype(np.uint32))
        quad = lambda x: x.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))  # noqa: E731
        a2 = quad(a)
        self.chroma = [(np.rint(quad(yuv[..., c] * a) * 256).astype(np.uint32), np.rint((1 - a2) * 256).astype(np.uint32))
                       for c in (1, 2)]

    def blend_into(self, i420: np.ndarray, width: int, height: int) -> None:
        """Blend in place onto an I420 frame array of shape (height * 3 // 2, width)."""
        if self.empty:
            return
        y_plane = i420[:height]
        u_plane = i420[height:height + height // 4].reshape(height // 2, width // 2)
        v_plane = i420[height + height // 4:].reshape(height // 2, width // 2)
        h, w = self.luma[0].shape
        top, left = self.top, self.left
        for plane, (pre, inverse), (t, l, ph, pw) in (
                (y_plane, self.luma, (top, left, h, w)),
                (u_plane, self.chroma[0], (top // 2, left // 2, h // 2, w // 2)),
                (v_plane, self.chroma[1], (top // 2, left // 2, h // 2, w // 2))):
            region = plane[t:t + ph, l:l + pw]
            region[:] = (pre + region * inverse + 128) >> 8
