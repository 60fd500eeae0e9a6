"""Burned captions: phrases, the highlighted word over time, and the drawn overlay."""

from __future__ import annotations

import numpy as np

import pytest
from faceless.tasks.media.captions import CaptionFontError, CaptionRenderer, YuvOverlay, _Fonts, check_fonts, phrases
from faceless.tasks.stages.compose import caption_schedule
from faceless.tasks.settings import load_profile

# The shipped profile's caption style, so the fonts tested are the ones users get.
STYLE = {**load_profile("offline")["compose"]["captions"], "max_words": 3}
LINES = {
    "latin": "The quick brown fox",
    "accented": "Zoë était très déçue, ça",
    "cjk": "我们今天去公园 日本語のテキスト 한국어",
    "arabic": "مرحبا بالعالم الجميل",
}


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
    # Blended onto a black yuv420p frame (as compose does): white text at full luma (235 in
    # the limited range), the highlight's yellow in the chroma, nothing outside the box.
    frame = np.zeros((1280 * 3 // 2, 720), np.uint8)
    frame[:1280], frame[1280:] = 16, 128  # black
    YuvOverlay(overlay, left, top).blend_into(frame, 720, 1280)
    luma = frame[:1280]
    assert luma[top:top + overlay.shape[0]].max() >= 234 and luma[:top].max() == 16
    assert luma[top + overlay.shape[0]:].max() == 16
    u = frame[1280:1280 + 320].reshape(640, 360)
    assert u.min() < 60  # yellow: U well below neutral 128


def test_yuv_overlay_matches_the_rgb_blend_converted_by_pyav():
    """The caption blended in yuv420p is the RGB blend as swscale would convert it (within
    rounding and the 2x2 chroma of yuv420p), at any position, odd ones included."""
    import av

    renderer = CaptionRenderer(STYLE, 720, 1280)
    overlay, left, _ = renderer.overlay(["Hello", "bright", "world"], highlight=1)
    rng = np.random.default_rng(0)
    background = np.repeat(np.repeat(rng.integers(0, 256, (640, 360, 3), dtype=np.uint8), 2, axis=0), 2, axis=1)
    for top in (601, 700):
        rgb = background.copy()
        a = overlay[..., 3:4].astype(np.float64) / 255
        region = rgb[top:top + overlay.shape[0], left:left + overlay.shape[1]]
        region[:] = np.rint(overlay[..., :3] * a + region * (1 - a)).astype(np.uint8)
        expected = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p").to_ndarray()
        frame = av.VideoFrame.from_ndarray(background, format="rgb24").reformat(format="yuv420p").to_ndarray()
        YuvOverlay(overlay, left, top).blend_into(frame, 720, 1280)
        difference = np.abs(frame.astype(int) - expected.astype(int))
        assert difference[:1280].max() <= 3 and np.percentile(difference[1280:], 99) <= 8, top


def _yellow(overlay):
    rgb, alpha = overlay[..., :3], overlay[..., 3]
    return (rgb[..., 0] > 240) & (rgb[..., 1] > 200) & (rgb[..., 2] < 40) & (alpha > 250)


@pytest.mark.parametrize("script", LINES)
def test_every_script_is_drawn_with_real_glyphs_not_boxes(script):
    text = LINES[script]
    check_fonts(text, STYLE)
    renderer = CaptionRenderer(STYLE, 720, 1280)
    overlay, _, _ = renderer.overlay(text.split(), highlight=0)
    assert overlay[..., 3].max() == 255 and _yellow(overlay).sum() > 100
    fonts = _Fonts(STYLE, 56)
    runs = [run for word in text.split() for run in fonts.runs(word)]
    assert "".join(run for run, _ in runs) == text.replace(" ", ""), "a character was dropped"
    for run, face in runs:
        drawn = np.asarray(face.getmask(run))
        # U+FFFF is a noncharacter: every font draws it as its missing-glyph box (.notdef).
        boxes = np.asarray(face.getmask("\uffff" * len(run)))
        assert drawn.max() > 0, f"{run!r} drew nothing"
        assert drawn.shape != boxes.shape or not np.array_equal(drawn, boxes), f"{run!r} drew boxes"
        # Different characters must not all look alike (as boxes do).
        if len(set(run)) > 1:
            masks = {np.asarray(face.getmask(ch)).tobytes() for ch in set(run)}
            assert len(masks) > 1, f"{run!r}: every character looks the same"


def test_arabic_is_shaped_and_runs_right_to_left():
    fonts = _Fonts(STYLE, 56)
    [(run, face)] = fonts.runs("مرحبا")
    joined = np.asarray(face.getmask("مرحبا"))
    # Zero-width non-joiners stop the letters joining: shaping must make the two differ.
    apart = np.asarray(face.getmask("\u200c".join("مرحبا")))
    assert joined.shape != apart.shape or not np.array_equal(joined, apart), "letters are not joined"
    renderer = CaptionRenderer({**STYLE, "max_words": 4}, 720, 1280)
    overlay, _, _ = renderer.overlay(["مرحبا", "بالعالم"], highlight=0)
    columns = np.nonzero(_yellow(overlay).any(axis=0))[0]
    centre = 720 * 0.44  # the middle of the safe area
    assert columns.min() > centre, "the first Arabic word should be on the right"
    overlay, _, _ = renderer.overlay(["hello", "world"], highlight=0)
    assert np.nonzero(_yellow(overlay).any(axis=0))[0].max() < centre, "the first English word should be on the left"


def test_a_long_cjk_sentence_wraps_between_characters_within_two_lines():
    renderer = CaptionRenderer(STYLE, 720, 1280)
    text = "我们今天早上去公园散步然后在湖边喝茶聊天。"
    overlay, _, _ = renderer.overlay([text], highlight=0)
    one_line, _, _ = renderer.overlay(["我们"], highlight=0)
    assert 1.5 * one_line.shape[0] < overlay.shape[0] < 2.5 * one_line.shape[0], "expected exactly two lines"
    columns = np.nonzero(overlay[..., 3].max(axis=0))[0]
    assert columns.min() >= 720 * 0.04 and columns.max() <= 720 * 0.84


def test_letters_no_font_covers_are_refused_naming_the_setting():
    check_fonts("A smile 🙂 is a symbol, left out of burned captions", STYLE)
    with pytest.raises(CaptionFontError, match=r"U\+0E2A.*compose\.captions\.fonts"):
        check_fonts("สวัสดี ชาวโลก", STYLE)  # Thai: none of the three fonts has it
    with pytest.raises(CaptionFontError, match=r"'NoSuchFont\.ttf' \(compose\.captions\.fonts\) not found"):
        check_fonts("hello", {**STYLE, "fonts": ["NoSuchFont.ttf"]})
