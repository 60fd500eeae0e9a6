"""Burned-in captions: short phrases with the word being spoken highlighted.

Each (phrase, highlighted word) overlay is drawn once with Pillow and then pasted on every
frame it covers: drawing text per frame costs several times more than blending a cached
overlay.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), Path.home() / ".fonts")
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


@functools.lru_cache(maxsize=8)
def load_font(name: str, size: int) -> ImageFont.FreeTypeFont:
    path = Path(name)
    if not path.is_file():
        path = next((p for d in FONT_DIRS if d.is_dir() for p in d.rglob(name)), None)
    if path is None:
        raise FileNotFoundError(f"caption font {name!r} not found in {', '.join(map(str, FONT_DIRS))}; set compose.captions.font to a .ttf path")
    return ImageFont.truetype(str(path), size)


class CaptionRenderer:
    """Draws caption overlays for frames of a given size, with the profile's style."""

    def __init__(self, style: dict, width: int, height: int):
        self.style = style
        self.width, self.height = width, height
        # Style sizes are for a 720-pixel-wide vertical frame; scale with the frame's short side.
        scale = min(width, height) / 720
        self.font = load_font(style["font"], max(8, round(style["size"] * scale)))
        self.outline = max(1, round(style.get("outline_width", 4) * scale))
        self.line_gap = round(style["size"] * scale * 0.25)
        # Landscape and square videos have no app column on the right: centre them.
        self.safe_left, self.safe_right = (SAFE_LEFT, SAFE_RIGHT) if height > width else (0.06, 0.94)

    def _lines(self, texts: list[str]) -> list[list[int]]:
        """Word indexes per line, wrapping at the safe width (two lines at most for a phrase
        of a few words; a longer word overflows rather than being split)."""
        limit = self.width * (self.safe_right - self.safe_left)
        lines: list[list[int]] = [[]]
        for i, _ in enumerate(texts):
            candidate = " ".join(texts[j] for j in lines[-1] + [i])
            if lines[-1] and self.font.getlength(candidate) > limit:
                lines.append([i])
            else:
                lines[-1].append(i)
        return lines

    def overlay(self, texts: list[str], highlight: int) -> tuple[np.ndarray, int, int]:
        """RGBA overlay (as an array) of the phrase and where its top-left goes on the frame."""
        lines = self._lines(texts)
        ascent, descent = self.font.getmetrics()
        line_h = ascent + descent
        pad = self.outline + 2
        box_h = len(lines) * line_h + (len(lines) - 1) * self.line_gap + 2 * pad
        image = Image.new("RGBA", (self.width, box_h), (0, 0, 0, 0))
        draw = ImageDraw.Draw(image)
        space = self.font.getlength(" ")
        for row, indexes in enumerate(lines):
            widths = [self.font.getlength(texts[i]) for i in indexes]
            line_width = sum(widths) + space * (len(indexes) - 1)
            x = self.width * (self.safe_left + self.safe_right) / 2 - line_width / 2
            y = pad + row * (line_h + self.line_gap)
            for i, w in zip(indexes, widths):
                colour = self.style["highlight"] if i == highlight else self.style["color"]
                draw.text((x, y), texts[i], font=self.font, fill=colour,
                          stroke_width=self.outline, stroke_fill=self.style["outline"])
                x += w + space
        top = int(self.height * (1 - self.style.get("bottom_margin", 0.22))) - box_h
        return np.asarray(image), 0, top


def blend(frame: np.ndarray, overlay: np.ndarray, left: int, top: int) -> None:
    """Alpha-blend an RGBA overlay onto an RGB frame in place."""
    h, w = overlay.shape[:2]
    region = frame[top:top + h, left:left + w]
    alpha = overlay[..., 3:4].astype(np.uint16)
    region[:] = ((overlay[..., :3] * alpha + region * (255 - alpha) + 127) // 255).astype(np.uint8)
