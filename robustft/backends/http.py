"""HTTP to OpenAI-compatible servers: any number of replicas, reached over kept-alive connections.

Plain `http://` servers without a proxy (local `vllm serve` replicas, the usual case at scale) go
through `robustft.backends.wire`, a minimal HTTP/1.1 client that costs a fraction of aiohttp's CPU
per call; `https://` and proxied servers through one aiohttp session per event loop.

`Endpoints(urls, ...)` posts a JSON body to the best-placed replica and returns the reply:

- each call goes to the healthy replica with the fewest calls in flight (ties rotate);
- a call that fails on a replica with a transport error, a timeout or a 5xx is re-sent at once to
  another healthy replica not yet tried for it; only when none is left does the error reach the
  caller, whose retry loop (robustft.agents.runtime) backs off;
- a replica failing `FAILURES_TO_REST` calls in a row rests for a cooldown (`REST_S`, doubling
  up to `REST_MAX_S`), then gets one call at a time until one succeeds. A single replica never
  rests: the caller's backoff and give-up deal with a dead server;
- 4xx replies are the request's own fault (429: the server's load) and are raised at once,
  with the server's `Retry-After`.

There is no queue here: the connection pool is unbounded, so the calls in flight are exactly
those the caller's own semaphore lets through.
"""

from __future__ import annotations

import asyncio
import math
import time
import urllib.request
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

import aiohttp
import orjson

from .. import tracing
from .errors import BackendError
from .wire import WireError, WirePool, wire_target

FAILURES_TO_REST = 3
REST_S = 2.0
REST_MAX_S = 60.0
_SNIPPET_CHARS = 300
_TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


class Replica:
    """One server URL and what the picker knows about it."""

    __slots__ = ("url", "proxy", "wire", "in_flight", "failures", "rest_until", "cooldown", "sent", "failed")

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.proxy = _proxy_for(self.url)
        self.wire = wire_target(self.url) if self.proxy is None else None  # (host, port, path prefix)
        self.in_flight = 0
        self.failures = 0  # in a row
        self.rest_until = 0.0
        self.cooldown = REST_S
        self.sent = 0
        self.failed = 0

    def __repr__(self) -> str:
        return f"Replica({self.url!r}, in_flight={self.in_flight}, sent={self.sent}, failed={self.failed})"


class Endpoints:
    """The replicas of one server, and the sessions that reach them (see the module docstring)."""

    def __init__(self, base_urls: Sequence[str], *, api_key: str | None, timeout_s: float, what: str,
                 clock: Callable[[], float] = time.monotonic):
        if not base_urls:
            raise ValueError("Endpoints needs at least one base URL")
        self.replicas = [Replica(url) for url in base_urls]
        self.timeout_s = timeout_s
        self.what = what
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._clock = clock
        self._next = 0
        self._sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}
        self._keepers: dict[asyncio.AbstractEventLoop, Any] = {}
        self._wire: dict[asyncio.AbstractEventLoop, dict[str, WirePool]] = {}

    # -- sessions -------------------------------------------------------------------------------

    async def _session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is not None and not session.closed:
            return session
        await self._keep(loop)
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
                                        headers=self._headers, timeout=self._timeout)
        self._sessions[loop] = session
        return session

    async def _wire_pool(self, replica: Replica) -> WirePool:
        loop = asyncio.get_running_loop()
        pools = self._wire.get(loop)
        if pools is None:
            await self._keep(loop)
            pools = self._wire[loop] = {}
        pool = pools.get(replica.url)
        if pool is None:
            host, port, _ = replica.wire  # type: ignore[misc]
            pool = pools[replica.url] = WirePool(host, port, self._headers)
        return pool

    async def _keep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Close this loop's connections when the loop ends. asyncio.run() closes every live async
        generator before it closes the loop, so this closes them even when nobody calls aclose():
        no "Unclosed client session" noise."""
        for old in [lp for lp in {*self._sessions, *self._wire} if lp.is_closed()]:
            self._sessions.pop(old, None)
            self._wire.pop(old, None)
            self._keepers.pop(old, None)
        if loop not in self._keepers:
            keeper = _close_at_loop_end(self, loop)
            self._keepers[loop] = keeper
            await keeper.__anext__()

    async def _close_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        session = self._sessions.pop(loop, None)
        for pool in self._wire.pop(loop, {}).values():
            pool.close()
        if session is not None and not session.closed:
            await session.close()

    async def aclose(self) -> None:
        """Close the connections of the running loop (others close with their loops)."""
        loop = asyncio.get_running_loop()
        keeper = self._keepers.pop(loop, None)
        if keeper is not None:
            await keeper.aclose()
        await self._close_loop(loop)

    # -- calls ----------------------------------------------------------------------------------

    async def post_json(self, path: str, payload: Any) -> tuple[Any, Replica]:
        """POST `payload` as JSON to `path` under a replica's base URL; (parsed reply, replica)."""
        raw, replica = await self.post(path, orjson.dumps(payload))
        try:
            return orjson.loads(raw), replica
        except orjson.JSONDecodeError as exc:
            raise BackendError(f"{self.what} at {replica.url}: the reply is not valid JSON ({exc}): "
                               f"{snippet(raw)!r}", retryable=True) from None

    async def post(self, path: str, body: bytes) -> tuple[bytes, Replica]:
        tried: list[Replica] = []
        last: BackendError | None = None
        while True:
            replica = self._pick(tried)
            if replica is None:
                raise self._exhausted(last, tried)
            replica.in_flight += 1
            replica.sent += 1
            try:
                if replica.wire is not None:
                    pool = await self._wire_pool(replica)
                    reply = await pool.post(replica.wire[2] + path, body, self.timeout_s)
                    status, raw = reply.status, reply.body
                    retry_after = reply.retry_after if status in (429, 503) else None
                else:
                    session = await self._session()
                    async with session.post(replica.url + path, data=body, proxy=replica.proxy) as resp:
                        status = resp.status
                        raw = await resp.read()
                        retry_after = resp.headers.get("Retry-After") if status in (429, 503) else None
            except _TRANSPORT_ERRORS as exc:
                last = BackendError(f"{self.what} at {replica.url}: {self._describe(exc)}", retryable=True)
                self._failed(replica)
                tried.append(replica)
                if tracing.live:
                    tracing.failover(replica.url, type(exc).__name__)
                continue
            finally:
                replica.in_flight -= 1
            if status < 400:
                self._succeeded(replica)
                return raw, replica
            error = BackendError(f"{self.what} at {replica.url}: HTTP {status}: {error_text(raw)}",
                                 status_code=status, retry_after=parse_retry_after(retry_after))
            if status < 500:
                self._succeeded(replica)  # it answered: the fault is the request's
                raise error
            last = error
            self._failed(replica)
            tried.append(replica)
            if tracing.live:
                tracing.failover(replica.url, str(status))

    # -- health ---------------------------------------------------------------------------------

    def _pick(self, tried: list[Replica]) -> Replica | None:
        replicas = self.replicas
        n = len(replicas)
        if n == 1:
            return None if tried else replicas[0]
        now = self._clock()
        start = self._next
        self._next = (start + 1) % n
        best = None
        for i in range(n):
            r = replicas[(start + i) % n]
            if r in tried:
                continue
            if r.failures >= FAILURES_TO_REST and (r.rest_until > now or r.in_flight):
                continue  # resting, or awake with its one trial call still out
            if best is None or r.in_flight < best.in_flight:
                best = r
        return best

    def _failed(self, r: Replica) -> None:
        r.failed += 1
        r.failures += 1
        if len(self.replicas) > 1 and r.failures >= FAILURES_TO_REST:
            now = self._clock()
            if r.rest_until <= now:  # calls already out when it was rested do not extend the rest
                r.rest_until = now + r.cooldown
                r.cooldown = min(r.cooldown * 2, REST_MAX_S)

    @staticmethod
    def _succeeded(r: Replica) -> None:
        if r.failures:
            r.failures = 0
            r.cooldown = REST_S

    def _exhausted(self, last: BackendError | None, tried: list[Replica]) -> BackendError:
        n = len(self.replicas)
        if last is not None:
            if n == 1:
                return last
            return BackendError(f"{self.what}: failed on {len(tried)} of {n} replicas, the others resting; "
                                f"last: {last}", status_code=last.status_code, retry_after=last.retry_after,
                                retryable=True)
        now = self._clock()
        waits = [r.rest_until - now for r in self.replicas if r.rest_until > now]
        wait = min(waits) if waits else 1.0
        urls = ", ".join(r.url for r in self.replicas)
        return BackendError(f"{self.what}: all {n} replicas ({urls}) are resting after repeated failures; "
                            f"the next is tried again in {wait:.1f} s", retry_after=wait, retryable=True)

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, asyncio.TimeoutError):
            return f"no reply within {self.timeout_s:g} s (model.timeout_s)"
        if isinstance(exc, aiohttp.ClientConnectorError):
            return f"cannot connect ({exc.os_error.strerror or exc.os_error})"
        if isinstance(exc, aiohttp.ServerDisconnectedError):
            return "the server closed the connection before replying"
        if isinstance(exc, WireError):
            return str(exc)
        if isinstance(exc, ConnectionRefusedError):
            return f"cannot connect ({exc.strerror or exc})"
        return f"{type(exc).__name__}: {exc}"

    def stats(self) -> list[dict[str, Any]]:
        """Per replica: calls sent and failed (transport errors and 5xx), calls in flight."""
        return [{"url": r.url, "sent": r.sent, "failed": r.failed, "in_flight": r.in_flight} for r in self.replicas]


async def _close_at_loop_end(endpoints: "Endpoints", loop: asyncio.AbstractEventLoop):
    try:
        yield
    finally:
        await endpoints._close_loop(loop)


def _proxy_for(url: str) -> str | None:
    """The proxy from the environment (HTTP_PROXY, NO_PROXY, ...) for this URL, looked up once."""
    parts = urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        return proxy
    return None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def snippet(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    text = " ".join(text.split())
    return text if len(text) <= _SNIPPET_CHARS else text[:_SNIPPET_CHARS] + "..."


def error_text(raw: bytes) -> str:
    """The message of an OpenAI-style error body (`{"error": {"message": ...}}`), else the body."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return snippet(raw) or "(empty body)"
    if isinstance(data, dict):
        err = data.get("error")
        message = err.get("message") if isinstance(err, dict) else err if isinstance(err, str) else None
        message = message or data.get("message") or data.get("detail")
        if isinstance(message, str) and message:
            return snippet(message)
    return snippet(raw)
