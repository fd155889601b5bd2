"""How a run makes one model call: from the response store when it can, else sent to the backend.

    calls = ModelCalls(pool, store, concurrency=32)
    gen = await calls.call(model_config, messages)

- **Store first.** A request already answered (same model identity, messages and occurrence in
  this run) costs no call: that is how a killed run, a changed β or template, or a larger
  `data.limit` resumes without paying twice (see `robustft.backends.store`).
- **Concurrency.** At most `concurrency` calls are in flight at the backends; store hits and
  back-off waits hold no slot.
- **Retries.** Failures a retry can fix (transport errors, timeouts, 5xx, 408/409/425/429) are
  retried up to `model.max_retries` times with jittered exponential back-off, capped at
  `model.retry_backoff_max_s`; a server's `Retry-After` is honoured. Other 4xx fail at once.
- **Rate limits.** Each model's calls are paced by a `backends.ratelimit.RateLimiter`: token
  buckets from `model.requests_per_minute` / `model.tokens_per_minute` and the server's
  `x-ratelimit-*` headers, and a pause after a 429. A 429 that asks for patience (a `Retry-After`,
  or a server that sends rate-limit headers) is waited out and sent again without counting as a
  failed attempt; `model.give_up_after_s` still stops a run that is refused that long.
- **Cost and budget.** With prices configured, every paid call's usage becomes cost per role, and
  a response the store answers is counted as saved (`cost.CostLedger`); with a cap
  (`denoise.max_cost_usd`) a call is sent only while the cap holds, counting the expected cost of
  the calls in flight, else the run stops with `BudgetReached` (exit 4).
- **Giving up.** A call whose retries run out while no call to its model succeeds (the server is
  down, not the request) keeps retrying; when every call to a model has failed for
  `model.give_up_after_s`, the run stops (`ServiceDown`) instead of marking samples failed: the
  samples not finished are simply not finished, and running the same command again continues
  (`robustft.backends.retry.Outage`).
- **Tracing.** With `tracing` set (a run's `robustft.tracing.otel.OtelTracing`), each call is a
  span: store hits marked, usage on paid calls, failed attempts as events. None: no cost.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import astuple, dataclass, field
from typing import TYPE_CHECKING, Any

from ..backends.base import Generation, Messages, TimesOut
from ..backends.ratelimit import RateLimiter
from ..backends.errors import BackendError
from ..backends.registry import ModelPool
from ..backends.retry import Outage, RetryPolicy, describe, with_retries, with_retries_through_outage
from ..backends.store import Occurrences, ResponseStore, identity_digest, model_identity, request_digest, response_key
from ..config import ModelConfig
from ..errors import ModelCallError, ServiceDown  # noqa: F401 - the runner imports ServiceDown from here
from .cost import BudgetReached, CostLedger, Expectation, Prices, expected_usd

if TYPE_CHECKING:
    from ..backends.batch import BatchQueue
    from ..tracing.otel import OtelTracing

if sys.version_info >= (3, 11):
    _timeout = asyncio.timeout
else:  # pragma: no cover - Python 3.10
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def _timeout(seconds: float):
        task = asyncio.current_task()
        handle = asyncio.get_running_loop().call_later(seconds, task.cancel)
        try:
            yield
        except asyncio.CancelledError:
            raise TimeoutError(f"no reply within {seconds:.0f} s") from None
        finally:
            handle.cancel()


@dataclass
class CallStats:
    """What the calls of a run cost; the progress display and summary.json read it."""

    paid: int = 0             # answered by a model
    reused: int = 0           # answered from the response store
    failed_attempts: int = 0  # attempts that raised (each retry counts)
    prompt_tokens: int = 0    # of paid calls
    completion_tokens: int = 0
    in_flight: int = 0
    throttled: int = 0        # 429s waited out (not failed attempts)
    usd: float = 0.0          # paid in this run, when prices are set
    saved_usd: float = 0.0    # what the store's answers would have cost
    usd_by_role: dict[str, float] = field(default_factory=dict)

    def counts(self) -> "CallCounts":
        return CallCounts(self.paid, self.reused, self.failed_attempts, self.prompt_tokens, self.completion_tokens)

    def add(self, counts: "CallCounts") -> None:
        """Count calls made elsewhere (a Ray worker's, as its executor reports them)."""
        self.paid += counts.paid
        self.reused += counts.reused
        self.failed_attempts += counts.failed_attempts
        self.prompt_tokens += counts.prompt_tokens
        self.completion_tokens += counts.completion_tokens


@dataclass(frozen=True)
class CallCounts:
    """What some calls cost, as a value: a Ray worker's report, which the runner adds to its
    `CallStats` (`CallStats.add`)."""

    paid: int = 0
    reused: int = 0
    failed_attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def since(self, before: "CallCounts") -> "CallCounts":
        return CallCounts(*(a - b for a, b in zip(astuple(self), astuple(before))))

    def latest(self, other: "CallCounts") -> "CallCounts":
        """Each count at its highest of the two (reports that arrive out of order)."""
        return CallCounts(*(max(a, b) for a, b in zip(astuple(self), astuple(other))))


class _Model:
    """What the call path keeps per model: its backend, health, prices and token expectations."""

    __slots__ = ("config", "backend", "health", "prices", "expect", "limiter", "own_timeout")

    def __init__(self, config: ModelConfig, backend: Any, shared: "_Model | None"):
        self.config, self.backend = config, backend
        # A backend that enforces its own timeout (the OpenAI client) needs no second one around it.
        self.own_timeout = isinstance(backend, TimesOut) and bool(backend.enforces_timeout)
        self.prices = Prices.of(config)
        # Roles calling one backend share its health, its pacing and what its tokens look like.
        self.health = shared.health if shared else Outage(f"the model {config.name!r}{_endpoints(config)}",
                                                          config.give_up_after_s)
        self.expect = shared.expect if shared else Expectation()
        self.limiter = shared.limiter if shared else RateLimiter(config.requests_per_minute, config.tokens_per_minute)


class ModelCalls:
    def __init__(self, pool: ModelPool, store: ResponseStore | None, concurrency: int, *, backoff_s: float = 0.5,
                 ledger: CostLedger | None = None):
        self.pool = pool
        self.store = store
        self.concurrency = concurrency
        self.backoff_s = backoff_s
        self.stats = CallStats()
        self.ledger = ledger if ledger is not None else CostLedger()
        self.occurrences = Occurrences()
        self._slots: asyncio.Semaphore | None = None
        self._lookups: bool | None = None
        # Keyed by id() of the ModelConfig, which each entry also holds so that the id is never reused.
        self._identities: dict[int, tuple[ModelConfig, bytes]] = {}
        self._models: dict[int, _Model] = {}
        self.tracing: "OtelTracing | None" = None
        # With denoise.batch_api: the Batch API queue that stored calls go to instead of the backend.
        self.batch: "BatchQueue | None" = None

    def identity(self, config: ModelConfig) -> bytes:
        found = self._identities.get(id(config))
        if found is None:
            found = self._identities[id(config)] = (config, identity_digest(model_identity(config)))
        return found[1]

    def _model(self, config: ModelConfig, build: bool = True) -> _Model | None:
        """The backend (built on first use: a store hit never loads a model), its health and prices."""
        found = self._models.get(id(config))
        if found is None and build:
            backend = self.pool.get(config)
            same = next((m for m in self._models.values() if m.backend is backend), None)
            found = self._models[id(config)] = _Model(config, backend, same)
        return found

    async def call(self, config: ModelConfig, messages: Messages, role: str | None = None) -> Generation:
        tracing = self.tracing
        if tracing is None:
            return await self._call(config, messages, None, role)
        with tracing.model_call(config, messages) as span:
            return await self._call(config, messages, span, role)

    async def _call(self, config: ModelConfig, messages: Messages, span: Any, role: str | None) -> Generation:
        request = request_digest(self.identity(config), messages)
        n = self.occurrences.claim(request)
        key = response_key(request, n)
        if self._lookups is None:  # a store empty at the start of the run holds nothing to look up
            self._lookups = self.store is not None and not self.store.is_empty()
        if self._lookups:
            hit = self.store.get(key)
            if hit is not None:
                self.stats.reused += 1
                self._saved(config, role, hit)
                if span is not None:
                    self.tracing.stored(span, hit)
                return hit
        try:
            if self.batch is not None:
                gen = await self._send_batch(config, messages, role, key)
            else:
                gen = await self._send(config, messages, role)
        except BaseException:
            self.occurrences.release(request, n)
            raise
        if self.store is not None:
            gen = self.store.put(key, gen)
        if span is not None:
            self.tracing.paid(span, gen)
        return self._paid(gen)

    def _saved(self, config: ModelConfig, role: str | None, gen: Generation) -> None:
        """A store hit: with prices, what it would have cost is counted as saved."""
        prices = Prices.of(config)
        if prices is not None:
            self.ledger.saved(role, prices, gen)
            self.stats.saved_usd = self.ledger.saved_usd

    def _paid(self, gen: Generation) -> Generation:
        """Count a call that was paid for (not answered from the store)."""
        stats = self.stats
        stats.paid += 1
        stats.prompt_tokens += gen.prompt_tokens
        stats.completion_tokens += gen.completion_tokens
        return gen

    async def send_unstored(self, config: ModelConfig, messages: Messages, role: str | None = None) -> Generation:
        """A call that is neither answered from nor written to the store (the pre-run check)."""
        tracing = self.tracing
        if tracing is None:
            return await self._send(config, messages, role, through_outage=False)
        with tracing.model_call(config, messages, preflight=True) as span:
            gen = await self._send(config, messages, role, through_outage=False)
            tracing.paid(span, gen)
            return gen

    async def _send(self, config: ModelConfig, messages: Messages, role: str | None = None, *,
                    through_outage: bool = True) -> Generation:
        """Under the concurrency limit, the budget and the rate limits, with retries;
        `through_outage=False` (the pre-run check) gives up after the retries even when the server
        is down: a wrong URL is said at once."""
        entry = self._model(config)
        model, health, prices, expect, limiter = entry.backend, entry.health, entry.prices, entry.expect, entry.limiter
        ledger = self.ledger
        chars = Expectation.length(messages)
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrency)
        # The backend's own timeout should fire first; a client that re-sends a timed-out call to
        # another replica may take one timeout per replica.
        replicas = len(config.base_url) if isinstance(config.base_url, list) else 1
        limit = config.timeout_s * (replicas + 1) + 5
        stats = self.stats
        slots = self._slots

        own_timeout = entry.own_timeout

        async def attempt() -> Generation:
            async with slots:
                # The budget is checked with the slot held, so that the calls it waits for are the
                # calls in flight (at most `concurrency`), not every sample waiting for a slot.
                prompt_tokens = expect.prompt(chars, role)
                cost = expected_usd(prices, prompt_tokens, expect.completion(role, config.max_tokens))
                await ledger.admit(cost)
                try:
                    while True:
                        # As the server counts a call against its token limit: the prompt and max_tokens.
                        await limiter.acquire(prompt_tokens + config.max_tokens)
                        stats.in_flight += 1
                        sent_at = health.clock()
                        try:
                            with limiter.sending(prompt_tokens + config.max_tokens) as sending:
                                if own_timeout:
                                    gen = await model.generate(messages)
                                else:
                                    async with _timeout(limit):
                                        gen = await model.generate(messages)
                            break
                        except BackendError as error:
                            if error.status_code != 429 or not limiter.patient(error):
                                raise
                            # The server asks for patience: wait it out, and send this call again.
                            limiter.throttled(error.retry_after, sending)
                            stats.throttled += 1
                            health.failed(sent_at, error)
                        finally:
                            stats.in_flight -= 1
                except BaseException:
                    ledger.release(cost)  # a failed call is not charged
                    raise
            return self._answered(entry, chars, role, prices, gen, cost)

        def failed(error: BaseException, retryable: bool) -> None:
            if isinstance(error, BudgetReached):
                raise error  # not a failed call: no call was made, and none should be
            stats.failed_attempts += 1
            if self.tracing is not None:
                self.tracing.failed_attempt(error, retryable)

        policy = RetryPolicy.for_model(config, self.backoff_s)
        if not through_outage:
            return await with_retries(attempt, policy, "model call", on_failure=failed)
        return await with_retries_through_outage(attempt, policy, "model call", health, on_failure=failed)

    async def _send_batch(self, config: ModelConfig, messages: Messages, role: str | None, key: bytes) -> Generation:
        """A call through the Batch API (`backends.batch`): the same request body and reply parsing
        as online, its custom id the store key, priced with the batch discount."""
        from ..backends.openai import batch_discount

        entry = self._model(config)
        model, expect, stats, ledger = entry.backend, entry.expect, self.stats, self.ledger
        prices = entry.prices.discounted(batch_discount(config)) if entry.prices is not None else None
        chars = Expectation.length(messages)
        cost = expected_usd(prices, expect.prompt(chars, role), expect.completion(role, config.max_tokens))
        await ledger.admit(cost)
        stats.in_flight += 1
        try:
            data = await self.batch.request(key.hex(), model.request_body(messages))
            gen = model.parse_reply(data, messages, self.batch.base_url)
        except asyncio.CancelledError:
            ledger.release(cost)
            raise
        except Exception as error:  # noqa: BLE001 - a failed or malformed reply fails this call, as online
            ledger.release(cost)
            stats.failed_attempts += 1
            raise ModelCallError(f"model call through the batch API failed: {describe(error)}") from error
        finally:
            stats.in_flight -= 1
        return self._answered(entry, chars, role, prices, gen, cost)

    def _answered(self, entry: _Model, chars: int, role: str | None, prices: Prices | None, gen: Generation,
                  cost: float) -> Generation:
        """`gen` once its call succeeded: its tokens learnt, its cost charged (`cost` was reserved)."""
        entry.expect.learn(chars, role, gen)
        usd = self.ledger.paid(role, prices, gen, cost)
        if usd:
            self.stats.usd += usd
            self.stats.usd_by_role[role or "other"] = self.stats.usd_by_role.get(role or "other", 0.0) + usd
        return gen


def _endpoints(config: ModelConfig) -> str:
    urls: Any = config.base_url
    if not urls:
        return ""
    return f" at {', '.join(urls) if isinstance(urls, list) else urls}"
