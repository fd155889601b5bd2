"""OpenAI-style rate limits for the simulated server: requests and tokens per window (a minute, or
less so that tests take seconds), each a token bucket that refills continuously.

    limits = SimRateLimits(rpm=3000, tpm=None, window_s=60)
    refusal, headers = limits.admit(tokens)  # tokens: a chat request's prompt plus its max_tokens

Every chat reply, refused or not, carries the headers OpenAI sends: `x-ratelimit-limit-requests`
(the bucket's size), `x-ratelimit-remaining-requests` (what is left, after this request),
`x-ratelimit-reset-requests` (the time until the bucket is full again: "1.5s", "20ms", "6m0s"),
and the same for tokens. A request the buckets cannot take is refused with HTTP 429, the error
body OpenAI sends, `Retry-After` (whole seconds, rounded up) and `retry-after-ms` (the exact
wait); a refused request takes nothing from the buckets.

Counters: `admitted`, `refused`, `admitted_tokens`, `first` / `last` (times), and `allowed(now)`: how many requests the
limit allowed since the first one (the bucket's size plus what refilled), so that a benchmark can
say what share of the allowed rate a client used.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Callable

import orjson


def format_duration(seconds: float) -> str:
    """OpenAI's reset format: "20ms", "1.5s", "6m0s"."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"
    minutes = int(seconds // 60)
    return f"{minutes}m{seconds - 60 * minutes:.0f}s"


class _Bucket:
    __slots__ = ("kind", "limit", "rate", "level", "stamp")

    def __init__(self, kind: str, limit: float, window_s: float, now: float):
        self.kind, self.limit, self.rate, self.level, self.stamp = kind, float(limit), limit / window_s, float(limit), now

    def refill(self, now: float) -> None:
        self.level = min(self.limit, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_for(self, n: float) -> float:
        return 0.0 if self.level >= n else (min(n, self.limit) - self.level) / self.rate

    def headers(self) -> dict[str, str]:
        remaining = math.floor(self.level)
        return {f"x-ratelimit-limit-{self.kind}": f"{self.limit:g}",
                f"x-ratelimit-remaining-{self.kind}": str(max(0, remaining)),
                f"x-ratelimit-reset-{self.kind}": format_duration(max(0.0, self.limit - max(0, remaining)) / self.rate)}


def request_tokens(body: bytes) -> int:
    """What a chat request counts against a token limit, as OpenAI counts it: its prompt (the
    simulator's own count: words plus 3 per message) and its max_tokens."""
    try:
        data = orjson.loads(body)
        messages = data.get("messages") or []
        prompt = sum(len(str(m.get("content") or "").split()) + 3 for m in messages if isinstance(m, dict))
        most = data.get("max_completion_tokens") or data.get("max_tokens") or 0
        return prompt + (most if isinstance(most, int) and not isinstance(most, bool) and most > 0 else 0)
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        return 0  # the request is refused as malformed anyway


class SimRateLimits:
    """Requests and tokens per `window_s` (see the module docstring); thread-safe."""

    def __init__(self, rpm: float | None = None, tpm: float | None = None, window_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic):
        if window_s <= 0:
            raise ValueError("window_s must be > 0")
        for name, value in (("rpm", rpm), ("tpm", tpm)):
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0")
        self.clock = clock
        now = clock()
        self.buckets = [b for b in (_Bucket("requests", rpm, window_s, now) if rpm else None,
                                    _Bucket("tokens", tpm, window_s, now) if tpm else None) if b is not None]
        self.window_s = window_s
        self.admitted = self.refused = self.admitted_tokens = 0
        self.first: float | None = None  # the first request's time, and the last admitted one's
        self.last: float | None = None
        self._lock = threading.Lock()

    def admit(self, tokens: int) -> tuple[dict | None, dict[str, str]]:
        """Take one request of `tokens` tokens if the buckets allow it: (None, the reply's headers),
        else (the 429 error body, its headers)."""
        with self._lock:
            now = self.clock()
            if self.first is None:
                self.first = now
            for bucket in self.buckets:
                bucket.refill(now)
            need = {"requests": 1.0, "tokens": float(tokens)}
            waits = {b.kind: b.wait_for(need[b.kind]) for b in self.buckets}
            kind = max(waits, key=waits.__getitem__, default=None)
            if kind is not None and waits[kind] > 0:
                self.refused += 1
                wait = waits[kind]
                headers = {k: v for b in self.buckets for k, v in b.headers().items()}
                headers["Retry-After"] = str(max(1, math.ceil(wait)))
                headers["retry-after-ms"] = str(max(1, math.ceil(wait * 1000)))
                return {"error": {"message": f"Rate limit reached for {kind} (simulated): limit "
                                             f"{next(b.limit for b in self.buckets if b.kind == kind):g} per "
                                             f"{self.window_s:g} s; retry after {headers['retry-after-ms']} ms",
                                  "type": kind, "param": None, "code": "rate_limit_exceeded"}}, headers
            for bucket in self.buckets:
                bucket.level -= need[bucket.kind]
            self.admitted += 1
            self.admitted_tokens += tokens
            self.last = now
            return None, {k: v for b in self.buckets for k, v in b.headers().items()}

    def allowed(self, kind: str = "requests", now: float | None = None) -> float:
        """What the limit allowed since the first request: a full bucket plus what refilled since."""
        bucket = next((b for b in self.buckets if b.kind == kind), None)
        if bucket is None or self.first is None:
            return math.inf
        now = self.clock() if now is None else now
        return bucket.limit + (now - self.first) * bucket.rate
