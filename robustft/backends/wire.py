"""A minimal HTTP/1.1 client for plain `http://` model servers: one POST, one JSON reply, kept alive.

Local model servers (`vllm serve` replicas, TEI, robustft.sim) speak plain HTTP on a private
network, and a run makes hundreds of thousands of calls to them. aiohttp costs about 0.4 ms of CPU
per call; this costs a fraction of that, because it does only what such a call needs: write the
request bytes, parse the status line, the few headers that matter (Content-Length,
Transfer-Encoding: chunked, Connection, Retry-After) and the body, on connections kept alive per
server and event loop. TLS, proxies and anything else go through aiohttp (`robustft.backends.http`).

Errors are `WireError` (an OSError, like a connection refused), and `TimeoutError`: the caller
treats both as transport failures.
"""

from __future__ import annotations

import asyncio


class WireError(ConnectionError):
    """The connection broke or the server sent something that is not HTTP/1.1."""


class _Reply:
    __slots__ = ("status", "retry_after", "body")

    def __init__(self, status: int, retry_after: str | None, body: bytes):
        self.status, self.retry_after, self.body = status, retry_after, body


class _Connection(asyncio.Protocol):
    """One keep-alive connection, one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future | None = None
        self.closed = False
        self.received_any = False
        self._reset()

    def _reset(self) -> None:
        self.buffer = bytearray()
        self.status = 0
        self.length: int | None = None
        self.chunked = False
        self.keep_alive = True
        self.retry_after: str | None = None
        self.body_start = -1
        self.chunks: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            if self.body_start >= 0 and self.length is None and not self.chunked:
                waiter.set_result(_Reply(self.status, self.retry_after, bytes(self.buffer[self.body_start:])))
            else:
                waiter.set_exception(WireError("the server closed the connection before replying"
                                               if not self.received_any else "the connection broke mid-reply"))

    def send(self, request: bytes, waiter: asyncio.Future) -> None:
        self._reset()
        self.received_any = False
        self.waiter = waiter
        self.transport.write(request)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        buffer = self.buffer
        buffer += data
        if self.body_start < 0:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > 65536:
                    self._fail("reply headers over 64 KiB")
                return
            if not self._headers(bytes(buffer[:end])):
                return
            self.body_start = end + 4
        if self.chunked:
            self._chunks()
        elif self.length is not None and len(buffer) - self.body_start >= self.length:
            self._done(bytes(buffer[self.body_start:self.body_start + self.length]))

    def _headers(self, head: bytes) -> bool:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            self._fail(f"not an HTTP/1.1 reply: {lines[0][:80]!r}")
            return False
        self.status = int(parts[1])
        self.keep_alive = parts[0] == b"HTTP/1.1"
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                try:
                    self.length = int(value.strip())
                except ValueError:
                    self._fail("a Content-Length that is not a number")
                    return False
            elif name == b"transfer-encoding":
                self.chunked = b"chunked" in value.lower()
            elif name == b"connection":
                value = value.strip().lower()
                self.keep_alive = value != b"close" if self.keep_alive else value == b"keep-alive"
            elif name == b"retry-after":
                self.retry_after = value.strip().decode("latin-1")
        if self.status in (204, 304) or 100 <= self.status < 200:
            self.length = 0
        if self.length is None and not self.chunked:
            self.keep_alive = False  # the body runs to the end of the connection
        return True

    def _chunks(self) -> None:
        buffer, pos = self.buffer, self.body_start
        while True:
            line_end = buffer.find(b"\r\n", pos)
            if line_end < 0:
                break
            try:
                size = int(bytes(buffer[pos:line_end]).split(b";", 1)[0].strip() or b"0", 16)
            except ValueError:
                self._fail("a malformed chunk size")
                return
            if size == 0:  # the last chunk; then optional trailers and an empty line
                if buffer.find(b"\r\n\r\n", line_end) < 0:
                    break
                self._done(b"".join(self.chunks))
                return
            if len(buffer) < line_end + 2 + size + 2:
                break
            self.chunks.append(bytes(buffer[line_end + 2:line_end + 2 + size]))
            pos = line_end + 2 + size + 2
        self.body_start = pos

    def _done(self, body: bytes) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(_Reply(self.status, self.retry_after, body))

    def _fail(self, why: str) -> None:
        waiter, self.waiter = self.waiter, None
        self.keep_alive = False
        if self.transport is not None:
            self.transport.abort()
        if waiter is not None and not waiter.done():
            waiter.set_exception(WireError(why))


class WirePool:
    """Kept-alive connections to one `host:port`, for the event loop that made them."""

    def __init__(self, host: str, port: int, headers: dict[str, str]):
        self.host, self.port = host, port
        self._idle: list[_Connection] = []
        fixed = "".join(f"{k}: {v}\r\n" for k, v in headers.items() if k.lower() not in ("host", "content-length"))
        shown = f"[{host}]" if ":" in host else host
        self._head_tail = (f"Host: {shown}:{port}\r\n{fixed}Content-Length: ").encode("latin-1")

    async def post(self, path: str, body: bytes, timeout: float) -> _Reply:
        request = b"".join((b"POST ", path.encode("latin-1"), b" HTTP/1.1\r\n", self._head_tail,
                            str(len(body)).encode(), b"\r\n\r\n", body))
        loop = asyncio.get_running_loop()
        while True:
            reused = bool(self._idle)
            conn = self._idle.pop() if reused else await self._connect(loop, timeout)
            waiter = loop.create_future()
            timer = loop.call_later(timeout, _expire, conn, waiter, timeout)
            try:
                conn.send(request, waiter)
                reply = await waiter
            except WireError:
                if reused and not conn.received_any:
                    continue  # a kept-alive connection the server had closed: try a fresh one
                raise
            except BaseException:  # a timeout or a cancelled caller: the reply may still come; drop it
                conn.keep_alive = False
                if conn.transport is not None:
                    conn.transport.abort()
                raise
            finally:
                timer.cancel()
                if conn.waiter is waiter:
                    conn.waiter = None
            if conn.keep_alive and not conn.closed:
                self._idle.append(conn)
            elif not conn.closed:
                conn.transport.close()  # type: ignore[union-attr]
            return reply

    async def _connect(self, loop: asyncio.AbstractEventLoop, timeout: float) -> _Connection:
        try:
            _, conn = await asyncio.wait_for(loop.create_connection(_Connection, self.host, self.port), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"cannot connect within {timeout:g} s") from None
        return conn

    def close(self) -> None:
        for conn in self._idle:
            if conn.transport is not None:
                conn.transport.close()
        self._idle.clear()


def _expire(conn: _Connection, waiter: asyncio.Future, timeout: float) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError(f"no reply within {timeout:g} s"))
    conn.keep_alive = False
    if conn.transport is not None:
        conn.transport.abort()


def wire_target(url: str) -> tuple[str, int, str] | None:
    """(host, port, path prefix) when `url` is plain http that this client serves, else None."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        return None
    return parts.hostname, parts.port or 80, parts.path.rstrip("/")
