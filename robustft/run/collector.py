"""Python's cyclic garbage collector, tuned for the length of one run.

A run allocates many short-lived objects per sample (LangGraph's tasks and configs, coroutines,
request dicts) while holding a large, stable heap (torch, LangGraph, the dataset). With the default
thresholds the collector runs every 700 allocations and, every few hundred of those, walks the whole
heap: measured on benchmarks/framework_cost.py, about a fifth of robustft's CPU per sample went to
collections that found almost nothing. During a run the threshold of the youngest generation is
raised and everything alive at the start (imports, the dataset) is moved out of the collector's
sight (`gc.freeze`); both are undone when the run ends, so a program that calls `robustft.denoise`
gets its own settings back.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator

YOUNG_THRESHOLD = 20_000  # allocations between collections of the youngest generation (default 700)


@contextmanager
def fewer_collections() -> Iterator[None]:
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(before[0], YOUNG_THRESHOLD), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def tune_this_process() -> None:
    """The same settings for the whole life of a process that exists only to run samples (a Ray
    sample worker), from the moment its imports and graph are in place."""
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(threshold[0], YOUNG_THRESHOLD), *threshold[1:])
