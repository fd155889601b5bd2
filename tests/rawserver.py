"""A TCP server on 127.0.0.1 that speaks HTTP/1.1 only as badly as a test scripts it.

    async def script(conn: RawConnection) -> None:
        request = await conn.read_request()           # (head, body) or None at EOF
        await conn.send(b"HTTP/1.1 200 OK\r\n...")
    with RawServer(script) as server:
        ...  # server.base_url == "http://127.0.0.1:PORT/v1"

`script` runs once per accepted connection on the server's own event loop (a thread), so it can
misbehave at the byte level: interim replies, endless bodies, silence, closing a kept-alive
connection when idle. `server.connections` counts connections accepted, `server.closed` those
the script has finished with, `server.sent` the body bytes written by `conn.send` in total.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Awaitable, Callable


class RawConnection:
    def __init__(self, server: "RawServer", reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.server, self.reader, self.writer = server, reader, writer

    async def read_request(self, idle_s: float | None = None) -> tuple[bytes, bytes] | None:
        """The next request (head, body); None when the client closed, or after `idle_s` seconds
        without one."""
        try:
            head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), idle_s)
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
            return None
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await self.reader.readexactly(length) if length else b""
        self.server.requests += 1
        return head, body

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        self.server.sent += len(data)
        await self.writer.drain()


Script = Callable[[RawConnection], Awaitable[None]]


class RawServer:
    def __init__(self, script: Script):
        self.script = script
        self.requests = 0
        self.connections = 0
        self.closed = 0
        self.sent = 0
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="raw-http", daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()
        self.base_url = ""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await self.script(RawConnection(self, reader, writer))
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self.closed += 1
            self._tasks.discard(asyncio.current_task())  # type: ignore[arg-type]

    async def _start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.sleep(0)

    def start(self) -> str:
        self._thread.start()
        port = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self.base_url

    def stop(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(10)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()

    def __enter__(self) -> "RawServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def http_reply(body: bytes, status: str = "200 OK", headers: str = "") -> bytes:
    """A complete HTTP/1.1 reply with a Content-Length."""
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n{headers}\r\n"
            .encode() + body)
