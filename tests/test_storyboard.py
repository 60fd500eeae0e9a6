"""Storyboard: shots cut on word times, cast and setting in prompts that fit CLIP's 77 tokens,
and one SVD window per shot."""

from __future__ import annotations

import pytest

from faceless.tasks.backends.svd import window_plan
from faceless.tasks.text.prompts import MAX_TOKENS, clip_tokenizer, count_tokens, shot_prompt
from faceless.tasks.stages.storyboard import cast_in_shots, cut_shots, cut_times, storyboard

SETTINGS = {"shot_seconds": {"target": 4.0, "max": 6.0}}


def timed(sentences: list[str], seconds_per_word: float = 0.4, pause: float = 0.35,
          lead: dict[int, float] | None = None) -> dict:
    """Word and sentence times as a voice would give them: evenly spoken words, a pause between
    sentences, and (`lead`) some silence the voice leaves before a sentence's first word."""
    words, spans, clock = [], [], 0.0
    for s, sentence in enumerate(sentences):
        if s:
            clock += pause
        begin = clock
        clock += (lead or {}).get(s, 0.0)
        for text in sentence.split():
            words.append({"sentence": s, "index": len(words), "text": text,
                          "start": clock, "end": clock + seconds_per_word - 0.05})
            clock += seconds_per_word
        spans.append({"index": s, "start": begin, "end": clock})
    return {"words": words, "sentences": spans, "duration": clock}


def plan_of(sentences: list[str], cast: dict | None = None, setting: str = "", style: str = "oil painting") -> dict:
    return {"cast": cast or {}, "setting": setting, "style": style, "seed": 5, "negative_prompt": "text",
            "sentences": [{"index": i, "text": s, "words": s.split()} for i, s in enumerate(sentences)]}


def lengths(shots) -> list[float]:
    return [round(s.end - s.start, 3) for s in shots]


def test_one_sentence_a_shot_and_cuts_between_words():
    sentences = ["The fox ran into the dark old wood.", "She found a golden key there today.",
                 "Then the owl began to sing a song."]
    timing = timed(sentences)
    shots = storyboard(plan_of(sentences), timing, SETTINGS)
    assert [s.text for s in shots] == sentences
    # Shots tile the narration: the first starts at 0, each starts where the one before ends,
    # the last ends with the narration; every cut is in the silence between two words.
    assert shots[0].start == 0 and shots[-1].end == timing["duration"]
    assert all(a.end == b.start for a, b in zip(shots, shots[1:]))
    words = timing["words"]
    for shot in shots[1:]:
        first = shot.words[0]
        assert words[first - 1]["end"] <= shot.start <= words[first]["start"]
        # Between sentences: halfway through the pause.
        assert shot.start == pytest.approx(timing["sentences"][shot.sentences[0]]["start"] - 0.35 / 2)


def test_a_long_sentence_is_cut_at_a_clause_near_its_middle():
    sentence = ("The train climbed slowly into the white mountains all night long, "
                "and snow pressed against the windows like soft grey moths in the dark.")
    shots = storyboard(plan_of([sentence]), timed([sentence]), SETTINGS)
    assert [s.text for s in shots] == ["The train climbed slowly into the white mountains all night long,",
                                       "and snow pressed against the windows like soft grey moths in the dark."]
    assert max(lengths(shots)) <= 6.0


def test_a_very_long_sentence_becomes_several_shots_none_over_the_maximum():
    sentence = " ".join(["word"] * 60) + "."  # 24 s of speech and no clause mark at all
    shots = storyboard(plan_of([sentence]), timed([sentence]), SETTINGS)
    assert len(shots) >= 4 and max(lengths(shots)) <= 6.0 and min(lengths(shots)) >= 1.0
    assert " ".join(s.text for s in shots) == sentence


def test_a_very_short_sentence_joins_a_neighbour():
    sentences = ["Run.", "The fox ran into the dark old wood.", "It was late.", "Go."]
    shots = storyboard(plan_of(sentences), timed(sentences), SETTINGS)
    assert [s.text for s in shots] == ["Run. The fox ran into the dark old wood.", "It was late. Go."]
    assert [s.sentences for s in shots] == [[0, 1], [2, 3]]


def test_editing_one_sentence_changes_only_its_shots():
    sentences = ["The fox ran into the dark old wood.", "She found a golden key there today.",
                 "Then the owl began to sing a song.", "The sun came up over the hill."]
    edited = list(sentences)
    edited[1] = "She found a small golden key under a root, and it shone."
    before = storyboard(plan_of(sentences), timed(sentences), SETTINGS)
    # The voice also starts the edited sentence a little later after the pause: the shots
    # around it must not move by a frame for that.
    after = storyboard(plan_of(edited), timed(edited, lead={1: 0.07}), SETTINGS)
    key = lambda shot: (shot.prompt, shot.prompt_2, shot.seed, round(shot.end - shot.start, 6))  # noqa: E731
    unchanged = {key(s) for s in before} & {key(s) for s in after}
    assert {key(before[i]) for i in (0, 2, 3)} <= unchanged
    assert key(before[1]) not in unchanged


def test_seeds_differ_between_shots_and_follow_the_story_seed():
    sentences = ["The fox ran into the dark old wood.", "She found a golden key there today."]
    shots = storyboard(plan_of(sentences), timed(sentences), SETTINGS)
    assert shots[0].seed != shots[1].seed
    other = plan_of(sentences)
    other["seed"] = 6
    assert [s.seed for s in storyboard(other, timed(sentences), SETTINGS)] == [s.seed + 1 for s in shots]


def test_cast_is_named_or_referred_back_to_by_a_pronoun_of_their_gender():
    cast = {"Mara": "a girl of ten in a red coat", "Mr. Okafor": "a tall conductor with a grey beard",
            "Pip": "a small grey cat"}
    shots = ["Mara could not sleep.", "She slipped out of her bunk.", "At the end, Mr. Okafor waited.",
             "He smiled and asked where she was going.", "Okafor laughed.", "The snow fell.",
             "Pip jumped down.", "It purred and she laughed."]
    assert cast_in_shots([s.split() for s in shots], cast) == [
        ["Mara"], ["Mara"], ["Mr. Okafor"], ["Mr. Okafor", "Mara"], ["Mr. Okafor"], [], ["Pip"], ["Pip"]]


def test_front_matter_cast_and_setting_reach_the_prompts():
    sentences = ["Mara could not sleep.", "She walked to the front of the long train.", "The snow kept falling."]
    plan = plan_of(sentences, cast={"Mara": "a girl of ten in a red wool coat"},
                   setting="a sleeper train crossing snowy mountains at night", style="watercolour, muted blues")
    shots = storyboard(plan, timed(sentences, 0.5), SETTINGS)
    for shot in shots:
        sent = shot.prompt + " " + shot.prompt_2
        assert "a sleeper train crossing snowy mountains at night" in sent and "watercolour, muted blues" in sent
        assert ("a girl of ten in a red wool coat" in sent) == any(w in shot.text for w in ("Mara", "She"))
        assert shot.prompt.startswith(shot.text.split()[0])  # the subject comes first


# -- prompts --------------------------------------------------------------------------------

def test_token_counts_come_from_clips_real_vocabulary():
    ids = clip_tokenizer()("a photograph of an astronaut riding a horse")["input_ids"]
    # CLIP's published ids: start, a, photograph, of, an, astronaut, riding, a, horse, end.
    assert ids == [49406, 320, 8853, 539, 550, 18376, 6765, 320, 4558, 49407]
    assert len(clip_tokenizer()) == 49408


def test_a_short_prompt_goes_to_both_encoders_whole():
    prompt = shot_prompt("A fox in the snow", ["Fox: a small red fox"], "a pine forest", "oil painting")
    assert prompt.prompt == "A fox in the snow, Fox: a small red fox, a pine forest, oil painting"
    assert prompt.prompt_2 == "" and prompt.tokens == count_tokens(prompt.prompt) <= MAX_TOKENS


def test_a_long_prompt_keeps_setting_and_style_and_never_passes_77_tokens():
    subject = "He laughed, took her hand, and led her through the sleeping cars past snoring travellers"
    cast = ["Mr. Okafor: a tall conductor with a grey beard, a navy uniform with silver buttons, white gloves "
            "and a polished brass lantern",
            "Mara: a girl of ten in a red wool coat with dark curly hair, a knitted scarf and muddy boots"]
    setting, style = "a sleeper train crossing snowy mountains at night, warm lamplight", "watercolour, muted blues"
    prompt = shot_prompt(subject, cast, setting, style)
    assert count_tokens(prompt.prompt) <= MAX_TOKENS and count_tokens(prompt.prompt_2) <= MAX_TOKENS
    assert prompt.tokens == max(count_tokens(prompt.prompt), count_tokens(prompt.prompt_2))
    assert prompt.prompt.startswith(subject) and prompt.prompt.endswith(setting)
    assert prompt.prompt_2.endswith(f"{setting}, {style}")
    # Each cast description is whole in one of the two prompts; what gives way is the subject
    # in the second encoder's prompt (it is whole in the first), never the style or setting.
    assert cast[0] in prompt.prompt and cast[1] in prompt.prompt_2 and cast[1] not in prompt.prompt
    assert subject not in prompt.prompt_2


def test_a_subject_longer_than_the_window_is_cut_at_a_word_and_style_survives():
    subject = " ".join(f"word{i}" for i in range(120))
    prompt = shot_prompt(subject, [], "a harbour at dawn", "oil painting")
    assert prompt.prompt_2.endswith("a harbour at dawn, oil painting") and prompt.tokens <= MAX_TOKENS
    assert prompt.prompt.startswith("word0 word1") and prompt.prompt.endswith("a harbour at dawn")


# -- one motion window per shot ----------------------------------------------------------------

STUDIO_ANIMATE = {"num_frames": 25, "fps_range": [3, 24], "max_windows": 2}


@pytest.mark.parametrize("seconds, windows, fps", [
    (1.0, 1, 24),   # 25 frames over 1 s
    (4.0, 1, 6),    # SVD-XT's own default conditioning, near enough
    (6.5, 1, 4),    # a 6 s shot with its fades still fits one window
    (8.0, 1, 3),
    (9.0, 2, 5),    # below 3 frames a second: a second window
    (30.0, 2, 3),   # never more than max_windows
])
def test_one_window_spans_the_shot_unless_it_is_too_long(seconds, windows, fps):
    assert window_plan(seconds, STUDIO_ANIMATE) == (windows, fps)


def test_cut_times_never_go_backwards():
    words = [{"sentence": 0, "text": "a", "start": 0.0, "end": 1.0}, {"sentence": 0, "text": "b", "start": 0.5, "end": 0.6}]
    assert cut_times(words, 0.4) == [0.0, 0.75, 0.75]
    assert cut_times(words, 0.4, [{"index": 0, "start": 0.0, "end": 1.0}]) == [0.0, 0.75, 0.75]
    assert cut_shots(words, 2.0, 4.0, 6.0) == [(0, 2)]
