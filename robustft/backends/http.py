"""HTTP to OpenAI-compatible servers: any number of replicas, over aiohttp's kept-alive connections.

`Endpoints(urls, ...)` posts a JSON body to the best-placed replica and returns the checked reply.
Every URL (plain `http://` replicas, `https://` providers, proxies) goes through one aiohttp
session per event loop: the library owns the protocol (keep-alive, a connection the server has
closed is never written to, 1xx interim replies skipped, chunked and read-until-close framing).

- **Timeouts.** Connecting must succeed within `connect_timeout_s` (a dead host fails in seconds);
  the whole call within `timeout_s`.
- **Bounded replies.** At most `max_reply_bytes` of body are read, whatever the framing; more is a
  malformed reply (memory never grows with what a server sends). Compression is not asked for and
  not undone, so a small compressed body cannot expand past the cap.
- **No redirects.** A 3xx is an error that names the `Location`: a model server that redirects is
  a wrong `model.base_url`, and following it would re-send the request (and the key) elsewhere.
- **Replicas.** Each call goes to the healthy replica with the fewest calls in flight (ties
  rotate). A call that fails on a replica (transport error, timeout, 5xx, a malformed reply) is
  charged to that replica alone and re-sent at once to another healthy replica not yet tried for
  it; only when none is left does the error reach the caller, whose retry loop backs off.
- **Resting.** A replica failing `FAILURES_TO_REST` calls in a row rests for a cooldown (`REST_S`,
  doubling up to `REST_MAX_S`), then gets one call at a time until one succeeds. A single replica
  never rests: the caller's backoff and give-up deal with a dead server.
- 4xx replies are the request's own fault (429: the server's load) and are raised at once, with
  the server's `Retry-After`. Every reply's headers go to `ratelimit.observe`, which keeps the
  pacing of the call's model in step with the server's `x-ratelimit-*` counts.

There is no queue here: the connection pool is unbounded, so the calls in flight are exactly
those the caller's own semaphore lets through. `Endpoints.send` is the one place a request leaves
for a server.
"""

from __future__ import annotations

import asyncio
import math
import time
import urllib.request
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Sequence, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import aiohttp
import orjson

from .. import tracing
from .errors import BackendError
from .ratelimit import header_seconds, observe as observe_rate_limits

FAILURES_TO_REST = 3
REST_S = 2.0
REST_MAX_S = 60.0
DEFAULT_MAX_REPLY_BYTES = 8 * 1024 * 1024
DEFAULT_CONNECT_TIMEOUT_S = 10.0
_SNIPPET_CHARS = 300
_TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)

T = TypeVar("T")


class MalformedReply(BackendError):
    """A reply that is not what the protocol promises: too large, not JSON, a field out of range.
    Retried like a 5xx, and charged to the replica that sent it."""

    def __init__(self, message: str):
        super().__init__(message, retryable=True, server_down=False)


class Replica:
    """One server URL and what the picker knows about it."""

    __slots__ = ("url", "auth", "proxy", "in_flight", "failures", "rest_until", "cooldown", "sent", "failed",
                 "rested")

    def __init__(self, url: str):
        # `http://user:password@host/v1`: the credentials are that host's authorization (HTTP Basic,
        # instead of the API key) and are kept out of `url`, which messages and summary.json show.
        parts = urlsplit(url)
        self.auth: str | None = None
        if "@" in parts.netloc:
            self.auth = aiohttp.BasicAuth(unquote(parts.username or ""), unquote(parts.password or "")).encode()
            url = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
        self.url = url.rstrip("/")
        self.proxy = _proxy_for(self.url)
        self.in_flight = 0
        self.failures = 0  # in a row
        self.rest_until = 0.0
        self.cooldown = REST_S
        self.sent = 0
        self.failed = 0
        self.rested = 0  # times it was sent to rest

    def __repr__(self) -> str:
        return (f"Replica({self.url!r}, in_flight={self.in_flight}, sent={self.sent}, failed={self.failed}, "
                f"rested={self.rested})")


class Endpoints:
    """The replicas of one server, and the sessions that reach them (see the module docstring)."""

    def __init__(self, base_urls: Sequence[str], *, api_key: str | None, timeout_s: float, what: str,
                 connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
                 max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES, clock: Callable[[], float] = time.monotonic):
        if not base_urls:
            raise ValueError("Endpoints needs at least one base URL")
        self.replicas = [Replica(url) for url in base_urls]
        self.timeout_s = timeout_s
        self.connect_timeout_s = min(connect_timeout_s, timeout_s)
        self.max_reply_bytes = max_reply_bytes
        self.what = what
        # identity: no compressed body to expand past the size cap (and nothing to decompress).
        self._headers = {"Content-Type": "application/json", "Accept": "application/json",
                         "Accept-Encoding": "identity"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, connect=self.connect_timeout_s)
        self._clock = clock
        self._next = 0
        self._sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}
        self._keepers: dict[asyncio.AbstractEventLoop, Any] = {}

    # -- sessions -------------------------------------------------------------------------------

    async def _session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is not None and not session.closed:
            return session
        await self._keep(loop)
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
                                        headers=self._headers, timeout=self._timeout, auto_decompress=False)
        self._sessions[loop] = session
        return session

    async def _keep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Close this loop's session when the loop ends. asyncio.run() closes every live async
        generator before it closes the loop, so this closes it even when nobody calls aclose():
        no "Unclosed client session" noise."""
        for old in [lp for lp in self._sessions if lp.is_closed()]:
            self._sessions.pop(old, None)
            self._keepers.pop(old, None)
        if loop not in self._keepers:
            keeper = _close_at_loop_end(self, loop)
            self._keepers[loop] = keeper
            await keeper.__anext__()

    async def _close_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        session = self._sessions.pop(loop, None)
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

    async def post_json(self, path: str, payload: Any,
                        parse: Callable[[Any, Replica], T] | None = None) -> tuple[Any, Replica]:
        """POST `payload` as JSON to `path` under a replica's base URL; (reply, replica).

        `parse(data, replica)` turns the decoded JSON into what the caller keeps and raises
        `MalformedReply` for a reply it cannot use: that counts against the replica like a 5xx
        (the call moves to another replica). Without it, the decoded JSON is returned."""
        body = orjson.dumps(payload)
        tried: list[Replica] = []
        last: BackendError | None = None
        while True:
            replica = self._pick(tried)
            if replica is None:
                raise self._exhausted(last, tried)
            try:
                raw = await self.send(replica, path, body)
                try:
                    data = orjson.loads(raw)  # strict JSON: NaN and Infinity are not JSON
                except orjson.JSONDecodeError as exc:
                    raise MalformedReply(f"malformed reply from {replica.url}: not JSON ({exc}): "
                                         f"{snippet(raw)!r}") from None
                result = parse(data, replica) if parse is not None else data
            except MalformedReply as exc:
                last = MalformedReply(f"{self.what}: {exc}")
                self._failed(replica)
                tried.append(replica)
                if tracing.state.runs:
                    tracing.failover(replica.url, "malformed_reply")
                continue
            except BackendError as exc:
                if not exc.retryable or (exc.status_code is not None and exc.status_code < 500):
                    self._succeeded(replica)  # it answered: the fault is the request's (or a 429)
                    raise
                last = exc
                self._failed(replica)
                tried.append(replica)
                if tracing.state.runs:
                    cause = exc.__cause__
                    tracing.failover(replica.url, type(cause).__name__ if cause else str(exc.status_code))
                continue
            self._succeeded(replica)
            return result, replica

    async def send(self, replica: Replica, path: str, body: bytes) -> bytes:
        """One POST to one replica: the reply body of a 2xx, else a BackendError (retryable for a
        transport failure, a timeout, a 5xx or an oversized reply). Counts the call as sent."""
        replica.in_flight += 1
        replica.sent += 1
        try:
            for attempt in (0, 1):
                try:
                    return await self._post_once(replica, path, body)
                except aiohttp.ServerDisconnectedError as exc:
                    # The server closed the connection before any reply: a kept-alive connection it
                    # shut just as the request went out. One fresh try; a dead server refuses it.
                    if attempt:
                        raise BackendError(f"{self.what} at {replica.url}: the server closed the connection "
                                           "before replying", retryable=True) from exc
                except _TRANSPORT_ERRORS as exc:
                    raise BackendError(f"{self.what} at {replica.url}: {self._describe(exc)}",
                                       retryable=True) from exc
            raise AssertionError("unreachable")
        finally:
            replica.in_flight -= 1

    async def _post_once(self, replica: Replica, path: str, body: bytes) -> bytes:
        session = await self._session()
        cap = self.max_reply_bytes
        headers = {"Authorization": replica.auth} if replica.auth else None
        async with session.post(replica.url + path, data=body, proxy=replica.proxy, allow_redirects=False,
                                headers=headers) as resp:
            status = resp.status
            observe_rate_limits(resp.headers)  # x-ratelimit-*, for the pacing of the call's model
            length = resp.content_length
            if length is not None and length > cap:
                resp.close()  # never read it, never reuse the connection
                raise MalformedReply(f"malformed reply from {replica.url}: body of {length} bytes, over "
                                     f"model.max_reply_bytes = {cap}")
            if length is not None:
                raw = await resp.read()
            else:  # chunked or until the connection closes: count while reading
                raw = await _read_capped(resp, cap, replica.url)
            if status < 300:
                return raw
            if status < 400:
                location = resp.headers.get("Location", "(no Location header)")
                raise BackendError(
                    f"{self.what} at {replica.url}: HTTP {status} redirect to {location}; robustft does not "
                    "follow redirects: use the final URL as the base URL", status_code=status, retryable=False)
            retry_after = resp.headers.get("Retry-After") if status in (429, 503) else None
        raise BackendError(f"{self.what} at {replica.url}: HTTP {status}: {error_text(raw)}",
                           status_code=status, retry_after=parse_retry_after(retry_after))

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
                r.rested += 1

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
                                retryable=True, server_down=last.server_down)
        now = self._clock()
        waits = [r.rest_until - now for r in self.replicas if r.rest_until > now]
        wait = min(waits) if waits else 1.0
        urls = ", ".join(r.url for r in self.replicas)
        return BackendError(f"{self.what}: all {n} replicas ({urls}) are resting after repeated failures; "
                            f"the next is tried again in {wait:.1f} s", retry_after=wait, retryable=True)

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return f"cannot connect within {self.connect_timeout_s:g} s (model.connect_timeout_s)"
        if isinstance(exc, asyncio.TimeoutError):
            return f"no reply within {self.timeout_s:g} s (model.timeout_s)"
        if isinstance(exc, aiohttp.ClientConnectorError):
            return f"cannot connect ({exc.os_error.strerror or exc.os_error})"
        if isinstance(exc, aiohttp.ClientPayloadError):
            return f"the reply broke off ({exc})"
        if isinstance(exc, ConnectionRefusedError):
            return f"cannot connect ({exc.strerror or exc})"
        return f"{type(exc).__name__}: {exc}"

    def stats(self) -> list[dict[str, Any]]:
        """Per replica: calls sent and failed (transport errors, 5xx, malformed replies), times
        rested, calls in flight."""
        return [{"url": r.url, "sent": r.sent, "failed": r.failed, "rested": r.rested, "in_flight": r.in_flight}
                for r in self.replicas]


async def _read_capped(resp: aiohttp.ClientResponse, cap: int, url: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_any():
        size += len(chunk)
        if size > cap:
            resp.close()
            raise MalformedReply(f"malformed reply from {url}: body over model.max_reply_bytes = {cap}")
        chunks.append(chunk)
    return b"".join(chunks)


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


def _until_date(value: str) -> float | None:
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return (when - datetime.now(timezone.utc)).total_seconds()


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP date."""
    seconds = header_seconds(value, _until_date)
    return max(0.0, seconds) if seconds is not None and math.isfinite(seconds) else None


def snippet(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    text = " ".join(text[:_SNIPPET_CHARS * 4].split())
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
