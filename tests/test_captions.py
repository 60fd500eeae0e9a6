"""Burned captions: phrases, the highlighted word over time, and the drawn overlay."""

from __future__ import annotations

import numpy as np

from tasks.captions import CaptionRenderer, blend, phrases
from tasks.compose import caption_schedule

STYLE = {"font": "DejaVuSans-Bold.ttf", "size": 56, "color": "#FFFFFF", "highlight": "#FFD400",
         "outline": "#000000", "outline_width": 4, "max_words": 3, "bottom_margin": 0.22}


def words(texts, sentence_of=lambda i: 0):
    return [{"text": t, "index": i, "sentence": sentence_of(i), "start": i * 0.5, "end": i * 0.5 + 0.4}
            for i, t in enumerate(texts)]


def test_phrases_are_short_and_stay_inside_a_sentence():
    groups = phrases(words("a b c d e".split(), lambda i: 0 if i < 4 else 1), max_words=3)
    assert [[w["text"] for w in p.words] for p in groups] == [["a", "b", "c"], ["d"], ["e"]]
    assert all(a.end <= b.start for a, b in zip(groups, groups[1:]))


def test_highlight_follows_the_word_times():
    groups = phrases(words("one two three four".split()), max_words=4)
    schedule = caption_schedule(groups, fps=24, total=48)
    highlighted = [key[1] for key in schedule if key is not None]
    assert highlighted == sorted(highlighted)
    assert schedule[0] == (0, 0) and schedule[13] == (0, 1) and schedule[25] == (0, 2) and schedule[37] == (0, 3)


def test_overlay_draws_the_highlight_colour_inside_the_safe_area():
    renderer = CaptionRenderer(STYLE, 720, 1280)
    overlay, left, top = renderer.overlay(["Hello", "bright", "wonderful", "world"], highlight=1)
    rgb, alpha = overlay[..., :3], overlay[..., 3]
    assert alpha.max() == 255
    yellow = (rgb[..., 0] > 240) & (rgb[..., 1] > 200) & (rgb[..., 2] < 40) & (alpha > 250)
    assert yellow.sum() > 200, "the spoken word is not drawn in the highlight colour"
    assert top + overlay.shape[0] <= 1280 * (1 - STYLE["bottom_margin"])
    # Clear of the right-hand column of app buttons (the right 18% of a vertical frame).
    columns = np.nonzero(alpha.max(axis=0))[0]
    assert columns.min() >= 720 * 0.06 and columns.max() <= 720 * 0.82
    frame = np.zeros((1280, 720, 3), np.uint8)
    blend(frame, overlay, left, top)
    assert frame[top:top + overlay.shape[0]].max() == 255
