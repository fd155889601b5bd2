"""Retrying a call to a model or embedding server: one policy for every caller.

    gen = await with_retries(lambda: model.generate(messages), RetryPolicy.for_model(config), "base model call")

Failures a retry can fix (transport errors, timeouts, 5xx, 408/409/425/429, malformed replies) are
retried up to `max_retries` times with jittered exponential back-off capped at `backoff_max_s`; a
server's `Retry-After` is honoured (capped the same way). Other 4xx fail at once: sending the
same request again cannot help. What keeps failing raises `ModelCallError`.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, TypeVar

from ..errors import ModelCallError

T = TypeVar("T")

# 4xx errors other than these are the request's own fault (bad model name, bad key, prompt too
# long): sending it again cannot help.
_RETRYABLE_4XX = frozenset({408, 409, 425, 429})


def is_retryable(exc: BaseException) -> bool:
    retryable = getattr(exc, "retryable", None)
    if isinstance(retryable, bool):
        return retryable
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and 400 <= status < 500:
        return status in _RETRYABLE_4XX
    return True


def describe(exc: BaseException) -> str:
    """The error's first line, for records and messages; API keys a server echoed are redacted
    before the text is shortened, so no part of a key survives."""
    from ..secrets import redact

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return redact(f"{type(exc).__name__}: {text}")[:500] if text else type(exc).__name__


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
        if n == policy.max_retries or not retryable:
            tries = f"after {n + 1} attempt{'s' if n else ''}"
            raise ModelCallError(f"{what} failed {tries}: {describe(error)}") from error
        await asyncio.sleep(policy.delay(n, error))
    raise AssertionError("unreachable")
