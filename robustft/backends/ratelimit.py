"""Pacing the calls to a rate-limited server: client-side token buckets, kept in step with the
server's `x-ratelimit-*` headers, and a pause when it answers 429.

    limiter = RateLimiter(requests_per_minute=500, tokens_per_minute=200_000)  # or None, None
    await limiter.acquire(tokens)          # before a call: waits until the buckets allow it
    with limiter.sending(tokens):          # the HTTP client reports each reply's headers (observe)
        reply = await post(...)
    limiter.throttled(retry_after)         # after a 429: every call waits, then goes again

Hosted APIs limit requests and tokens per minute, as token buckets that refill continuously
(OpenAI: `x-ratelimit-limit-requests` a minute, `-remaining-requests` now, `-reset-requests` the
time until the bucket is full again; the same for tokens, a call counting its prompt plus its
`max_tokens`). The limiter mirrors those buckets:

- **Configured limits** (`model.requests_per_minute`, `model.tokens_per_minute`) start them: a
  bucket of a minute's worth, refilled at the limit / 60 per second. A call takes one request and
  its expected tokens and waits for them (the bucket may go below zero: each caller waits its
  turn, in order, so a burst is spread out rather than sent and refused).
- **The server's headers** make them exact, with no configuration: the limit is the capacity, the
  refill rate is what was used over the reset time ((limit - remaining) / reset), and the level is
  the remaining count, plus what refilled since that call was sent, minus what was taken after it
  (sent since, or waiting to be sent).
  Another client sharing the limit shows up there, and this one slows down.
- **A 429** with `Retry-After` (`retry-after-ms` when sent: to the millisecond) pauses every call
  until then and empties the buckets; the refused call is sent again, not counted as a failed
  attempt (`agents.calls`), while `model.give_up_after_s` still bounds how long that may go on.

Why not a library limiter (aiolimiter, pyrate-limiter): they pace to a fixed rate, but here the
bucket's level, size and rate are set again from every reply's headers and emptied by a 429, and a
waiting call's turn is worked out again after each of those; that is the few lines of `Bucket`.

The headers reach the limiter through a context variable (`observe`, called by the HTTP client on
every reply), so no signature between the call path and the client changes.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import re
import time
from typing import Any, Callable, Mapping

# How long a 429 without any Retry-After pauses the calls.
DEFAULT_PAUSE_S = 1.0
MAX_PAUSE_S = 600.0
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class Bucket:
    """A token bucket: `capacity` units, refilled at `rate` per second; `level` may go below zero
    (units promised to callers still waiting)."""

    __slots__ = ("capacity", "rate", "level", "stamp")

    def __init__(self, capacity: float, rate: float, now: float):
        self.capacity, self.rate, self.level, self.stamp = float(capacity), float(rate), float(capacity), now

    def refill(self, now: float) -> None:
        if now > self.stamp:
            self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
            self.stamp = now



class _Sending:
    """One call on its way (a context manager around it): which limiter hears its reply's headers,
    and how much had gone out when it left (the server had counted that much when it took it)."""

    __slots__ = ("limiter", "sent_at", "departed", "retry_after", "_token")

    def __init__(self, limiter: "RateLimiter", now: float, departed: dict[str, float]):
        self.limiter = limiter
        self.sent_at = now
        self.departed = departed
        self.retry_after: float | None = None

    def __enter__(self) -> "_Sending":
        self._token = _current.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _current.reset(self._token)


_current: contextvars.ContextVar[_Sending | None] = contextvars.ContextVar("robustft_rate_limit", default=None)


def observe(headers: Mapping[str, str]) -> None:
    """Called by the HTTP client with every reply's headers: the limiter of the call, if any, hears them."""
    sending = _current.get()
    if sending is not None:
        sending.limiter.observe(headers, sending)


def header_seconds(value: str | None, otherwise: Callable[[str], float | None]) -> float | None:
    """Seconds from a header: a plain number, else what `otherwise` reads in it (None: nothing)."""
    if not value:
        return None
    value = value.strip()
    try:
        return float(value)
    except ValueError:
        return otherwise(value)


def _reset_format(value: str) -> float | None:
    parts = _DURATION.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


def parse_duration(value: str | None) -> float | None:
    """Seconds in OpenAI's reset format ("1s", "6m0s", "20ms", "1h2m3.5s") or a plain number."""
    seconds = header_seconds(value, _reset_format)
    return seconds if seconds is not None and math.isfinite(seconds) and seconds >= 0 else None


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        n = float(value)
    except ValueError:
        return None
    return n if math.isfinite(n) and n >= 0 else None


class RateLimiter:
    """The limits of one server (see the module docstring); one per model backend."""

    def __init__(self, requests_per_minute: float | None = None, tokens_per_minute: float | None = None, *,
                 clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        now = clock()
        self.configured = {"requests": requests_per_minute, "tokens": tokens_per_minute}
        self.buckets: dict[str, Bucket | None] = {
            kind: Bucket(limit, limit / 60.0, now) if limit else None for kind, limit in self.configured.items()}
        self.paused_until = 0.0
        self.taken = {"requests": 0.0, "tokens": 0.0}     # by acquire: sent, or waiting their turn
        self.departed = {"requests": 0.0, "tokens": 0.0}  # sent
        self.throttles = 0          # 429s heard
        self.heard_headers = False  # the server sends x-ratelimit-* headers
        self._refill = {"requests": [0.0, 0.0], "tokens": [0.0, 0.0]}  # per kind: units used, seconds to refill

    @property
    def active(self) -> bool:
        return any(self.buckets.values()) or self.paused_until > 0

    async def acquire(self, tokens: int) -> None:
        """Wait until a call of `tokens` tokens (prompt plus max_tokens) may be sent.

        The call takes its units at once (the bucket may go below zero) and waits until the bucket
        holds them, less what callers after it have taken: its turn. The wait is worked out again
        after each sleep, so a server's headers that lower the level, or a 429, make it longer."""
        taken, buckets = self.taken, self.buckets
        if buckets["requests"] is None and buckets["tokens"] is None and not self.paused_until:
            taken["requests"] += 1  # nothing known about the server's limits yet: nothing to wait for
            taken["tokens"] += tokens
            return
        need = {"requests": 1.0, "tokens": float(tokens)}
        now = self.clock()
        for kind, bucket in self.buckets.items():
            if bucket is not None:
                bucket.refill(now)
                bucket.level -= min(need[kind], bucket.capacity)
            self.taken[kind] += need[kind]
        mark = dict(self.taken)
        while True:
            now = self.clock()
            wait = self.paused_until - now
            for kind, bucket in self.buckets.items():
                if bucket is not None:
                    bucket.refill(now)
                    turn = bucket.level + (self.taken[kind] - mark[kind])
                    if turn < 0:
                        wait = max(wait, -turn / bucket.rate)
            if wait <= 0:
                return
            await asyncio.sleep(wait)

    def sending(self, tokens: int) -> _Sending:
        """Around one HTTP call (`with`, after `acquire(tokens)`): its reply's headers (`observe`)
        reach this limiter."""
        departed = self.departed
        departed["requests"] += 1
        departed["tokens"] += tokens
        return _Sending(self, self.clock(), dict(departed))

    def observe(self, headers: Mapping[str, str], sending: _Sending) -> None:
        get = headers.get
        for kind in ("requests", "tokens"):
            limit = _number(get(f"x-ratelimit-limit-{kind}"))
            remaining = _number(get(f"x-ratelimit-remaining-{kind}"))
            if limit and remaining is not None:
                self._sync(kind, limit, remaining, parse_duration(get(f"x-ratelimit-reset-{kind}")), sending)
        ms = _number(get("retry-after-ms"))
        if ms is not None:
            sending.retry_after = ms / 1000.0

    def _sync(self, kind: str, limit: float, remaining: float, reset: float | None, sending: _Sending) -> None:
        """Bring one bucket in step with what the server said when it took this call."""
        self.heard_headers = True
        now = self.clock()
        configured = self.configured[kind]
        capacity = min(limit, configured) if configured else limit
        bucket = self.buckets[kind]
        used = limit - remaining
        seen = self._refill[kind]
        if reset and reset > 0 and used > 0:
            seen[0] += used
            seen[1] += reset
        # The server's own refill rate, whatever its window (summed over replies: the reset times are rounded).
        rate = seen[0] / seen[1] if seen[1] else bucket.rate if bucket is not None else limit / 60.0
        if configured:
            rate = min(rate, configured / 60.0)
        if bucket is None:
            bucket = self.buckets[kind] = Bucket(capacity, rate, now)
        bucket.refill(now)
        bucket.capacity, bucket.rate = capacity, rate
        not_counted = max(0.0, self.taken[kind] - sending.departed[kind])
        level = remaining + (now - sending.sent_at) * rate - not_counted
        bucket.level = min(capacity, level)
        bucket.stamp = now

    def throttled(self, retry_after: float | None, sending: _Sending | None = None) -> float:
        """A 429: pause every call for the server's Retry-After (else a second); returns the pause."""
        self.throttles += 1
        pause = sending.retry_after if sending is not None and sending.retry_after is not None else retry_after
        pause = min(MAX_PAUSE_S, pause if pause is not None else DEFAULT_PAUSE_S)
        now = self.clock()
        self.paused_until = max(self.paused_until, now + pause)
        for kind, bucket in self.buckets.items():
            if bucket is not None:  # the server is empty, and the calls waiting their turn still owe their units
                bucket.refill(now)
                bucket.level = min(bucket.level, -max(0.0, self.taken[kind] - self.departed[kind]))
        return pause

    def patient(self, error: Any) -> bool:
        """Whether a 429 asks for patience (a Retry-After, or rate-limit headers): then it is waited
        out instead of counted as a failed attempt. A 429 with neither (a spent quota) is a failure."""
        return getattr(error, "retry_after", None) is not None or self.heard_headers

