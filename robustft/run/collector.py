"""Python's cyclic garbage collector, tuned for the length of one run.

A run allocates many short-lived objects per sample (LangGraph's tasks and configs, coroutines,
request dicts) while holding a large, stable heap (torch, LangGraph, the dataset). With the default
thresholds the collector runs every 700 allocations and, every few hundred of those, walks the whole
heap: measured on benchmarks/framework_cost.py, about a fifth of robustft's CPU per sample went to
collections that found almost nothing. During a run the threshold of the youngest generation is
raised and everything alive at the start (imports, the dataset) is moved out of the collector's
sight (`gc.freeze`); both are undone when the run ends, so a program that calls `robustft.denoise`
gets its own settings back.

With tracing on, the threshold is higher still (`TRACED_YOUNG_THRESHOLD`): the SDK's spans are
several tracked objects each, and thousands wait in its export queue at any time, so every young
collection walked them and promoted them a generation up. Measured at 1,500 rows: the collector's
time with tracing on went from 0.25-0.29 s to 0.10-0.13 s (off: 0.07-0.11 s), about 0.1 ms per
sample; the memory it costs is the extra young objects, a few MB.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator

YOUNG_THRESHOLD = 20_000  # allocations between collections of the youngest generation (default 700)
TRACED_YOUNG_THRESHOLD = 60_000  # the same with OpenTelemetry tracing on


@contextmanager
def fewer_collections(young: int = YOUNG_THRESHOLD) -> Iterator[None]:
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(before[0], young), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def tune_this_process(young: int = YOUNG_THRESHOLD) -> None:
    """The same settings for the whole life of a process that exists only to run samples (a Ray
    sample worker), from the moment its imports and graph are in place."""
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(threshold[0], young), *threshold[1:])
