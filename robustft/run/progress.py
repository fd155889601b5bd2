"""Progress of a long run: one bar per phase, or in quiet mode a log line every 30 seconds.

Each bar counts samples and shows the model calls per second, tokens, with prices the money
paid in this run per role and saved by the response store, calls answered from the store, failed
samples, the time left, and with several replicas (or a failing one) each replica's calls sent,
failed and times rested. The figures come from the run's `CallStats`;
updating them is throttled, so a bar costs nothing per sample worth measuring.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Any, Callable

from ..agents.calls import CallStats
from ..agents.cost import usd

log = logging.getLogger("robustft")


def _short(n: float) -> str:
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


Health = Callable[[], list[dict[str, Any]]]


def replica_figures(replicas: list[dict[str, Any]]) -> str:
    """`replicas sent/failed/rested: 10.0.0.7:8000 120/0/0, 10.0.0.8:8000 31/12/2`, or "" when
    there is one server per model and it has not failed."""
    if len(replicas) <= len({r["serves"] for r in replicas}) and not any(r["failed"] for r in replicas):
        return ""
    shown = []
    for r in replicas:
        address = r["url"].split("://", 1)[-1].split("/", 1)[0].rsplit("@", 1)[-1]  # no path, no credentials
        shown.append(f"{address} {r['sent']}/{r['failed']}/{r['rested']}")
    return "replicas sent/failed/rested: " + ", ".join(shown)


class Phase:
    """The progress of one phase (detect, relabel, ...) over `total` samples."""

    def __init__(self, name: str, total: int, stats: CallStats, *, bar: bool, log_every_s: float | None,
                 health: Health | None = None):
        self.name, self.total, self.stats, self.health = name, total, stats, health
        self.done = self.failed = 0
        self._started = time.monotonic()
        self._calls0, self._reused0 = stats.paid, stats.reused
        self._tokens0 = stats.prompt_tokens + stats.completion_tokens
        self._next_postfix = 0.0
        self._bar: Any = None
        self._ticker: asyncio.Task | None = None
        if bar and total:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=name, unit="sample", file=sys.stderr, dynamic_ncols=True,
                             mininterval=0.5)
        elif log_every_s and total:
            self._ticker = asyncio.get_running_loop().create_task(self._tick(log_every_s))

    def advance(self, failed: bool = False) -> None:
        self.done += 1
        self.failed += failed
        if self._bar is not None:
            self._bar.update(1)
            now = time.monotonic()
            if now >= self._next_postfix:
                self._next_postfix = now + 1.0
                self._bar.set_postfix_str(self._figures(now), refresh=False)

    def _figures(self, now: float) -> str:
        stats = self.stats
        elapsed = max(now - self._started, 1e-9)
        calls = stats.paid - self._calls0
        tokens = stats.prompt_tokens + stats.completion_tokens - self._tokens0
        parts = [f"{calls / elapsed:.1f} calls/s", f"{_short(tokens)} tok"]
        if stats.usd or stats.saved_usd:
            roles = ", ".join(f"{role} {usd(v)}" for role, v in stats.usd_by_role.items() if v)
            parts.append(f"{usd(stats.usd)} paid" + (f" ({roles})" if roles else "")
                         + (f", {usd(stats.saved_usd)} saved by the store" if stats.saved_usd else ""))
        reused = stats.reused - self._reused0
        if reused:
            parts.append(f"{_short(reused)} from store")
        if self.failed:
            parts.append(f"{self.failed} failed")
        replicas = replica_figures(self.health()) if self.health is not None else ""
        if replicas:
            parts.append(replicas)
        return ", ".join(parts)

    def line(self) -> str:
        now = time.monotonic()
        elapsed = now - self._started
        share = self.done / self.total if self.total else 1.0
        left = f", about {_duration(elapsed / share - elapsed)} left" if 0 < share < 1 else ""
        return f"{self.name}: {self.done}/{self.total} samples ({share:.0%}), {self._figures(now)}{left}"

    async def _tick(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            log.info(self.line())

    def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        if self._bar is not None:
            self._bar.set_postfix_str(self._figures(time.monotonic()), refresh=False)
            self._bar.close()

    def __enter__(self) -> "Phase":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Progress:
    def __init__(self, stats: CallStats, *, bars: bool, quiet_log_every_s: float | None = 30.0,
                 health: Health | None = None):
        self.stats = stats
        self.health = health
        self.bars = bars
        self.quiet_log_every_s = quiet_log_every_s

    def phase(self, name: str, total: int) -> Phase:
        return Phase(name, total, self.stats, bar=self.bars, log_every_s=None if self.bars else self.quiet_log_every_s,
                     health=self.health)
