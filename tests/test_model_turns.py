"""Whose turn it is to run a model: one-thread CPU calls of different families side by side,
one call per family, and the whole turn excluding every other."""

from __future__ import annotations

import threading
import time

from faceless.tasks.models.registry import ModelTurns, cpu_threads, model_turn


def _overlap(turns: ModelTurns, first, second) -> bool:
    """Whether `second` ran while `first` was running (each entered in its own thread)."""
    inside, done, seen = threading.Event(), threading.Event(), []

    def hold():
        with first():
            inside.set()
            done.wait(2)

    def try_second():
        inside.wait(2)
        with second():
            seen.append(not done.is_set())
        done.set()

    threads = [threading.Thread(target=hold), threading.Thread(target=try_second)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    done.set()
    for thread in threads:
        thread.join(5)
    return seen == [True]


def test_one_thread_calls_of_two_families_run_side_by_side():
    turns = ModelTurns(lanes=2)
    assert _overlap(turns, lambda: turns.lane("sdxl"), lambda: turns.lane("svd"))


def test_a_family_runs_one_call_at_a_time():
    turns = ModelTurns(lanes=2)
    assert not _overlap(turns, lambda: turns.lane("svd"), lambda: turns.lane("svd"))


def test_no_more_lanes_than_cores():
    turns = ModelTurns(lanes=1)
    assert not _overlap(turns, lambda: turns.lane("sdxl"), lambda: turns.lane("svd"))


def test_the_whole_turn_excludes_lanes_both_ways_and_is_reentrant():
    turns = ModelTurns(lanes=2)
    assert not _overlap(turns, lambda: turns, lambda: turns.lane("svd"))
    assert not _overlap(turns, lambda: turns.lane("svd"), lambda: turns)
    with turns, turns, turns.lane("svd"):  # the holder of the whole turn may go on
        pass
    assert _overlap(turns, lambda: turns.lane("sdxl"), lambda: turns.lane("svd"))  # all released


def test_torch_threads_come_back_when_the_last_lane_leaves():
    import torch

    before = torch.get_num_threads()
    with model_turn("sdxl", "cpu", 1):
        assert torch.get_num_threads() == 1
        with cpu_threads("cpu", 1):  # a second one-thread call in the other lane
            pass
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
