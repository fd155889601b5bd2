"""The collector settings a run uses are the run's alone: a program calling robustft gets its own back."""

from __future__ import annotations

import gc

from robustft.run.collector import TRACED_YOUNG_THRESHOLD, YOUNG_THRESHOLD, fewer_collections


def test_a_run_raises_the_young_threshold_and_hides_older_objects_then_restores_both():
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    try:
        alive = [object() for _ in range(10)]
        with fewer_collections():
            assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)
            assert gc.get_freeze_count() >= len(alive)
        assert gc.get_threshold() == (700, 10, 10)
        assert gc.get_freeze_count() == 0
    finally:
        gc.set_threshold(*before)


def test_a_traced_run_raises_it_further_and_restores_it():
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    try:
        with fewer_collections(TRACED_YOUNG_THRESHOLD):
            assert gc.get_threshold() == (TRACED_YOUNG_THRESHOLD, 10, 10) and TRACED_YOUNG_THRESHOLD > YOUNG_THRESHOLD
        assert gc.get_threshold() == (700, 10, 10) and gc.get_freeze_count() == 0
    finally:
        gc.set_threshold(*before)


def test_settings_are_restored_when_the_run_raises():
    before = gc.get_threshold()
    try:
        with fewer_collections():
            raise KeyError("boom")
    except KeyError:
        pass
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_a_caller_with_a_higher_threshold_keeps_it():
    before = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD * 2, 10, 10)
    try:
        with fewer_collections():
            assert gc.get_threshold()[0] == YOUNG_THRESHOLD * 2
    finally:
        gc.set_threshold(*before)


def test_a_sample_worker_process_keeps_the_settings_for_its_life():
    import subprocess
    import sys

    code = ("import gc; gc.set_threshold(700, 10, 10); from robustft.run.collector import tune_this_process; "
            "tune_this_process(); print(gc.get_threshold()[0], gc.get_freeze_count() > 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [str(YOUNG_THRESHOLD), "True"]
