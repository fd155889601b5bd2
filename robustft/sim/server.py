"""The simulated expert over HTTP: an aiohttp low-level server on its own event loop, in a background thread.

One event loop serves every connection (keep-alive, HTTP/1.1), so `latency_ms` and the `hang`
fault wait without holding a thread and never delay other requests. Side by side with the
thread-per-connection `http.server` it replaced, it took about half the CPU per chat request (0.42
against 0.75 ms at 64 keep-alive connections); `benchmarks/sim_server.py` measures it.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from aiohttp import web

from ..errors import ConfigError
from .gold import load_gold
from .model import Reply, SimModel, _error
from .batches import SimBatches
from .ratelimit import SimRateLimits, request_tokens

__all__ = ["SimServer", "MAX_BODY_BYTES"]

MAX_BODY_BYTES = 16 * 1024 * 1024
CHAT_PATH = "/v1/chat/completions"
EMBEDDINGS_PATH = "/v1/embeddings"
_GET_PATHS = ("/health", "/v1/health", "/v1/models")
_SHUTDOWN_GRACE_S = 0.2  # a held request (latency, hang) is cancelled after this long on stop()


class SimServer:
    """The simulated expert over HTTP, in a background thread.

    `start()` returns the base URL (`http://HOST:PORT/v1`); `stop()` shuts it down, cancelling
    held requests; `with SimServer(...) as sim:` does both. `port=0` takes a free port.

    Counters: `requests` (chat completion requests, bad ones included), `errors` (HTTP 500s from
    `error_rate`), `malformed` (replies without an answer line from `malformed_rate`), `unmatched`
    (prompts holding no gold question), `faults` (injected faults by kind, a Counter), `paths`
    (requests by URL path, every method), `in_flight` / `max_in_flight` (chat completion calls
    being served now / at most at once, counted from the body read to the reply, latency and
    hangs included), `in_flight_by_path` / `max_in_flight_by_path` (the same for each POST path).
    `first_request_at` (the Unix time of the first request to each path, for start-up costs).
    `reset_max_in_flight()` starts the maxima again from the calls in flight now.

    Rate limits (`rpm`, `tpm` per `rate_window_s`, default a minute; `robustft.sim.ratelimit`):
    every chat reply carries OpenAI's `x-ratelimit-*` headers, and a chat request over the limit is
    refused with 429 and `Retry-After` before it is served (it is not counted in `requests`).
    `rate_limits` holds the counters (`admitted`, `refused`, `allowed()`).

    The Batch API (`/v1/files`, `/v1/batches`; `robustft.sim.batches`): a batch is worked
    `batch_delay_s` after it is created, a share `batch_fail_rate` of its requests fails, and with
    `batch_expire_after` it expires after that many requests. `batches` holds its counters.
    """

    def __init__(self, gold_path: str | Path, *, accuracy: float = 0.8, seed: int = 0, latency_ms: float = 0,
                 error_rate: float = 0.0, malformed_rate: float = 0.0, calibration: float = 0.8,
                 faults: Any = None, fault_rate: float = 0.0, retry_after_s: float = 1.0, hang_s: float = 150.0,
                 host: str = "127.0.0.1", port: int = 0, verbose: bool = False, rpm: float | None = None,
                 tpm: float | None = None, rate_window_s: float = 60.0, batch_delay_s: float = 0.2,
                 batch_fail_rate: float = 0.0, batch_expire_after: int | None = None, task: str | None = None):
        if isinstance(latency_ms, bool) or not isinstance(latency_ms, (int, float)) or latency_ms < 0:
            raise ConfigError(f"latency_ms must be a number >= 0, got {latency_ms!r}")
        self.gold_path = Path(gold_path)
        self.model = SimModel(load_gold(self.gold_path), accuracy=accuracy, seed=seed, error_rate=error_rate,
                              malformed_rate=malformed_rate, calibration=calibration, faults=faults,
                              fault_rate=fault_rate, retry_after_s=retry_after_s, hang_s=hang_s, task=task)
        self.latency_ms = latency_ms
        try:
            self.rate_limits = SimRateLimits(rpm, tpm, rate_window_s) if rpm or tpm else None
        except ValueError as exc:
            raise ConfigError(f"rate limits: {exc}") from None
        self.batches = SimBatches(self.model, delay_s=batch_delay_s, fail_rate=batch_fail_rate,
                                  expire_after=batch_expire_after, seed=seed)
        self.host, self.port, self.verbose = host, port, verbose
        self.base_url: str | None = None
        self._lock = threading.Lock()
        self._paths: Counter[str] = Counter()
        self._in_flight: Counter[str] = Counter()
        self._max_in_flight: Counter[str] = Counter()
        self._first_request_at: dict[str, float] = {}  # Unix time of each path's first request: start-up costs
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: web.Server | None = None
        self._listener: asyncio.AbstractServer | None = None

    # -- counters -----------------------------------------------------------------------------

    @property
    def requests(self) -> int:
        return self.model.requests

    @property
    def errors(self) -> int:
        return self.model.errors

    @property
    def malformed(self) -> int:
        return self.model.malformed

    @property
    def unmatched(self) -> int:
        return self.model.unmatched

    @property
    def faults(self) -> Counter[str]:
        with self.model._lock:
            return Counter(self.model.faults)

    @property
    def paths(self) -> dict[str, int]:
        with self._lock:
            return dict(self._paths)

    @property
    def in_flight(self) -> int:
        return self._in_flight[CHAT_PATH]

    @property
    def max_in_flight(self) -> int:
        return self._max_in_flight[CHAT_PATH]

    @property
    def in_flight_by_path(self) -> dict[str, int]:
        with self._lock:
            return {path: n for path, n in self._in_flight.items() if n}

    @property
    def max_in_flight_by_path(self) -> dict[str, int]:
        with self._lock:
            return dict(self._max_in_flight)

    @property
    def first_request_at(self) -> dict[str, float]:
        with self._lock:
            return dict(self._first_request_at)

    def reset_max_in_flight(self) -> None:
        with self._lock:
            self._max_in_flight = Counter(self._in_flight)

    # -- HTTP ---------------------------------------------------------------------------------

    @staticmethod
    def _json(status: int, payload: dict, headers: dict[str, str] | None = None) -> web.Response:
        return web.Response(status=status, body=Reply(status, payload).encoded(), content_type="application/json",
                            headers=headers)

    async def _read_body(self, request: web.BaseRequest) -> bytes | None:
        if (request.content_length or 0) > MAX_BODY_BYTES:
            return None
        chunks, size = [], 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        with self._lock:
            self._paths[path] += 1
            self._first_request_at.setdefault(path, time.time())
        try:
            response = await self._route(request, path)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here must reach the client as a 500, not a dropped connection
            response = self._json(500, _error(f"internal error in the simulated server: {exc!r}", "server_error"))
        if self.verbose:
            print(f"robustft-sim: {request.method} {request.path} -> {response.status}", file=sys.stderr, flush=True)
        return response

    async def _route(self, request: web.BaseRequest, path: str) -> web.StreamResponse:
        if path in (CHAT_PATH, EMBEDDINGS_PATH):
            if request.method != "POST":
                return self._json(405, _error(f"use POST for {path}", "invalid_request_error"))
            body = await self._read_body(request)
            if body is None:
                response = self._json(413, _error(f"the request body is over {MAX_BODY_BYTES} bytes",
                                                  "invalid_request_error"))
                response.force_close()
                return response
            reply = await self._serve(path, body)
            return web.Response(status=reply.status, body=reply.encoded(), content_type="application/json",
                                headers=reply.headers or None)
        if path.startswith(("/v1/files", "/v1/batches")):
            batch_reply = await self.batches.handle(request, path)
            if batch_reply is not None:
                return batch_reply
        if path in _GET_PATHS:
            if request.method not in ("GET", "HEAD"):
                return self._json(405, _error(f"use GET for {path}", "invalid_request_error"))
            if path == "/v1/models":
                return self._json(200, {"object": "list", "data": [
                    {"id": "sim", "object": "model", "created": 0, "owned_by": "robustft"}]})
            # The counters, so that a benchmark can read them from another process.
            return self._json(200, {"status": "ok", "questions": len(self.model.index), "paths": self.paths,
                                    "in_flight": self.in_flight_by_path, "max_in_flight": self.max_in_flight_by_path,
                                    "faults": dict(self.faults), "first_request_at": self.first_request_at})
        return self._json(404, _error(f"no route {path}", "invalid_request_error", code="not_found"))

    async def _serve(self, path: str, body: bytes) -> Reply:
        with self._lock:
            self._in_flight[path] += 1
            if self._in_flight[path] > self._max_in_flight[path]:
                self._max_in_flight[path] = self._in_flight[path]
        try:
            limited = None
            if self.rate_limits is not None and path == CHAT_PATH:
                refusal, limited = self.rate_limits.admit(request_tokens(body))
                if refusal is not None:
                    return Reply(429, refusal, headers=limited)
            if self.latency_ms:
                await asyncio.sleep(self.latency_ms / 1000.0)
            reply = self.model.complete(body) if path == CHAT_PATH else self.model.embed(body)
            if limited:
                reply.headers = {**reply.headers, **limited}
            if reply.hold_s:
                await asyncio.sleep(reply.hold_s)
            return reply
        finally:
            with self._lock:
                self._in_flight[path] -= 1

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> str:
        if self._thread is not None:
            return self.base_url  # type: ignore[return-value]
        ready = threading.Event()
        failure: list[OSError] = []
        self._thread = threading.Thread(target=self._run, args=(ready, failure), name="robustft-sim", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            exc = failure[0]
            raise ConfigError(f"cannot listen on {self.host}:{self.port} ({exc.strerror or exc}); "
                              "pick another port, or 0 for any free port") from None
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else ("::1" if self.host == "::" else self.host)
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        self.base_url = f"http://{host}:{self.port}/v1"
        return self.base_url

    def _run(self, ready: threading.Event, failure: list[OSError]) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            try:
                server, listener = loop.run_until_complete(self._listen())
            except OSError as exc:
                failure.append(exc)
                return
            self._loop, self._server, self._listener = loop, server, listener
            self.port = listener.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        finally:
            ready.set()
            loop.close()

    async def _listen(self) -> tuple[web.Server, asyncio.AbstractServer]:
        server = web.Server(self._handle, access_log=None, keepalive_timeout=120)
        listener = await asyncio.get_running_loop().create_server(server, self.host or None, self.port, backlog=1024)
        return server, listener

    async def _shutdown(self) -> None:
        assert self._listener is not None and self._server is not None
        self._listener.close()
        await self._server.shutdown(_SHUTDOWN_GRACE_S)

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._loop = None
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=5)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "SimServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
