"""Retrying a call to a model or embedding server: one policy for every caller.

    gen = await with_retries(lambda: model.generate(messages), RetryPolicy.for_model(config), "base model call")

Failures a retry can fix (transport errors, timeouts, 5xx, 408/409/425/429, malformed replies) are
retried up to `max_retries` times with jittered exponential back-off capped at `backoff_max_s`; a
server's `Retry-After` is honoured (capped the same way). Other 4xx fail at once: sending the
same request again cannot help. What keeps failing raises `ModelCallError`.

    outage = Outage("the model 'x' at http://...", give_up_after_s=300)
    gen = await with_retries_through_outage(call, policy, "model call", outage)

An *outage* is different from a request that keeps failing: when no call to a server has
succeeded since this one started failing, the server is down, and marking the sample failed would
only make the user run it again. Such a call keeps retrying (backing off) until the server answers,
or until every call has failed for `give_up_after_s`, when `ServiceDown` stops the run with the
unfinished samples unfinished.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, TypeVar

from ..errors import ModelCallError, ServiceDown, UserError
from ..secrets import describe  # noqa: F401 - where the call path has always found it
from .errors import RETRYABLE_4XX

T = TypeVar("T")

def is_retryable(exc: BaseException) -> bool:
    retryable = getattr(exc, "retryable", None)
    if isinstance(retryable, bool):
        return retryable
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and 400 <= status < 500:
        # other 4xx are the request's own fault (bad model name, bad key, prompt too long)
        return status in RETRYABLE_4XX
    return True


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 3
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0

    @classmethod
    def for_model(cls, config: Any, backoff_s: float = 0.5) -> "RetryPolicy":
        return cls(config.max_retries, backoff_s, config.retry_backoff_max_s)

    def delay(self, attempt: int, error: BaseException) -> float:
        retry_after = getattr(error, "retry_after", None)
        if isinstance(retry_after, (int, float)) and retry_after >= 0:
            return min(float(retry_after), self.backoff_max_s)
        return min(self.backoff_s * (2 ** attempt) * (0.5 + random.random()), self.backoff_max_s)


async def with_retries(attempt: Callable[[], Awaitable[T]], policy: RetryPolicy, what: str, *,
                       on_failure: Callable[[BaseException, bool], None] | None = None) -> T:
    """`await attempt()` until it succeeds or cannot; `on_failure(error, retryable)` sees every
    failed attempt (it may raise, to stop retrying altogether)."""
    for n in range(policy.max_retries + 1):
        try:
            return await attempt()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every backend raises its own types
            error = exc
        retryable = is_retryable(error)
        if on_failure is not None:
            on_failure(error, retryable)
        if isinstance(error, UserError) and not retryable:
            raise error  # a setting to fix (an embedding dimension that changed): the run's error, as it is
        if n == policy.max_retries or not retryable:
            tries = f"after {n + 1} attempt{'s' if n else ''}"
            raise ModelCallError(f"{what} failed {tries}: {describe(error)}") from error
        await asyncio.sleep(policy.delay(n, error))
    raise AssertionError("unreachable")


class Outage:
    """Whether every call to one server has been failing, and since when; shared by its callers."""

    __slots__ = ("what", "give_up_after_s", "failing_since", "last_success", "last_success_sent", "clock")

    def __init__(self, what: str, give_up_after_s: float, clock: Callable[[], float] = time.monotonic):
        self.what = what  # "the model 'x' at URL": the subject of the stop message
        self.give_up_after_s = give_up_after_s
        self.failing_since: float | None = None
        self.last_success = -math.inf       # when the last successful call ended
        self.last_success_sent = -math.inf  # the latest start of a successful call
        self.clock = clock

    def succeeded(self, started: float) -> None:
        self.failing_since = None
        self.last_success = self.clock()
        self.last_success_sent = max(self.last_success_sent, started)

    def failed(self, started: float, error: BaseException) -> None:
        """An attempt sent at `started` failed with a retryable error: raises `ServiceDown` once no
        call has succeeded for `give_up_after_s` (counted from the first failed attempt's start, so a
        hung server is given up on one timeout sooner than counting from its first timeout)."""
        now = self.clock()
        if self.failing_since is None:
            self.failing_since = max(started, self.last_success)
        down = now - self.failing_since
        if down >= self.give_up_after_s:
            raise ServiceDown(
                f"every call to {self.what} has failed for {down:.0f} s (give_up_after_s = "
                f"{self.give_up_after_s:g}); the last error: {describe(error)}. The run stopped with its progress "
                "kept and the unfinished samples unfinished: fix the server, then run the same command again "
                "to continue.")

    def left(self) -> float:
        """Seconds until a failure gives up (infinite while calls succeed)."""
        if self.failing_since is None:
            return math.inf
        return max(0.0, self.failing_since + self.give_up_after_s - self.clock())

    def down_since(self, when: float) -> bool:
        """No call sent at or after `when` has succeeded (a reply to one sent before the server went
        down says nothing about it now)."""
        return self.last_success_sent < when


async def with_retries_through_outage(attempt: Callable[[], Awaitable[T]], policy: RetryPolicy, what: str,
                                      outage: Outage, *,
                                      on_failure: Callable[[BaseException, bool], None] | None = None) -> T:
    """`with_retries`, except that a call whose retries run out during an outage of its server (it
    cannot reach the server, `server_down`, and no call sent since its first failure has succeeded)
    goes on retrying until the server is back or
    `outage.failed` gives up (`ServiceDown`); no back-off sleeps past that moment, so the run stops
    within `give_up_after_s` and one attempt. A request that fails while others succeed still raises
    `ModelCallError` after `policy.max_retries` retries: that is the request's fault, not the server's."""
    clock = outage.clock
    first_failure: float | None = None
    n = 0
    while True:
        started = clock()
        try:
            result = await attempt()
        except asyncio.CancelledError:
            raise
        except ServiceDown:
            raise  # given up from inside the attempt (a server that keeps asking for patience)
        except Exception as exc:  # noqa: BLE001 - every backend raises its own types
            error = exc
        else:
            outage.succeeded(started)
            return result
        retryable = is_retryable(error)
        if on_failure is not None:
            on_failure(error, retryable)
        if retryable:
            outage.failed(started, error)  # raises ServiceDown when the server has been down too long
        if first_failure is None:
            first_failure = clock()
        if isinstance(error, UserError) and not retryable:
            raise error
        # max_retries 0 asks for no retry at all, outage or not.
        outage_holds = policy.max_retries > 0 and _server_down(error) and outage.down_since(first_failure)
        if not retryable or (n >= policy.max_retries and not outage_holds):
            tries = f"after {n + 1} attempt{'s' if n else ''}"
            raise ModelCallError(f"{what} failed {tries}: {describe(error)}") from error
        await asyncio.sleep(min(policy.delay(min(n, policy.max_retries), error), outage.left()))
        n += 1


def _server_down(error: BaseException) -> bool:
    """The failure says the server is unreachable (not that this request got a bad answer)."""
    return bool(getattr(error, "server_down", isinstance(error, (OSError, TimeoutError))))
