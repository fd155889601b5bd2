"""The minimal HTTP/1.1 client (robustft.backends.wire) against a raw TCP server on 127.0.0.1 that
sends exactly the bytes each test scripts: lengths, chunks, closes, stale connections, hangs."""

from __future__ import annotations

import asyncio

import pytest

from robustft.backends.wire import WireError, WirePool, wire_target


class Scripted:
    """A TCP server answering each request (read up to its body) with the next scripted reply;
    a reply of None closes the connection without answering, "hang" never answers."""

    def __init__(self, replies: list):
        self.replies = list(replies)
        self.requests: list[bytes] = []
        self.connections = 0

    async def __aenter__(self) -> "Scripted":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                self.requests.append(head + await reader.readexactly(length))
                reply = self.replies.pop(0)
                if reply is None:
                    writer.close()
                    return
                if reply == "hang":
                    await asyncio.sleep(3600)
                writer.write(reply)
                await writer.drain()
                if b"Connection: close" in reply:
                    writer.close()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + extra + \
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body


def run(coro):
    return asyncio.run(coro)


def test_a_reply_with_a_length_and_the_connection_kept_for_the_next():
    async def go():
        async with Scripted([ok(b'{"a": 1}'), ok(b'{"b": 2}')]) as server:
            pool = WirePool("127.0.0.1", server.port, {"Authorization": "Bearer k", "Content-Type": "application/json"})
            first = await pool.post("/v1/chat/completions", b'{"x": 1}', 5)
            second = await pool.post("/v1/chat/completions", b'{"x": 2}', 5)
            pool.close()
            return server, first, second

    server, first, second = run(go())
    assert (first.status, first.body, second.body) == (200, b'{"a": 1}', b'{"b": 2}')
    assert server.connections == 1  # kept alive
    request = server.requests[0]
    assert request.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert b"Authorization: Bearer k\r\n" in request and request.endswith(b'\r\n\r\n{"x": 1}')
    assert f"Host: 127.0.0.1:{server.port}".encode() in request


def test_a_chunked_reply_in_pieces_with_a_trailer():
    body = b'{"choices": []}'
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"5\r\n" + body[:5] + b"\r\n"
               + b"a;ext=1\r\n" + body[5:] + b"\r\n" + b"0\r\nX-Trailer: y\r\n\r\n")

    async def go():
        async with Scripted([chunked]) as server:
            pool = WirePool("127.0.0.1", server.port, {})
            reply = await pool.post("/x", b"{}", 5)
            pool.close()
            return reply

    assert run(go()).body == body


def test_connection_close_and_a_body_to_the_end_of_the_connection():
    async def go():
        async with Scripted([b"HTTP/1.1 503 Busy\r\nRetry-After: 7\r\nConnection: close\r\n\r\n{\"error\": 1}",
                             ok(b"{}")]) as server:
            pool = WirePool("127.0.0.1", server.port, {})
            busy = await pool.post("/x", b"{}", 5)
            again = await pool.post("/x", b"{}", 5)
            pool.close()
            return server, busy, again

    server, busy, again = run(go())
    assert (busy.status, busy.retry_after, busy.body) == (503, "7", b'{"error": 1}')
    assert again.status == 200 and server.connections == 2  # not reused after close


def test_a_kept_alive_connection_the_server_closed_is_replaced_silently():
    async def go():
        async with Scripted([ok(b"1"), None, ok(b"2")]) as server:
            pool = WirePool("127.0.0.1", server.port, {})
            await pool.post("/x", b"{}", 5)
            reply = await pool.post("/x", b"{}", 5)  # the kept connection is closed on this request
            pool.close()
            return server, reply

    server, reply = run(go())
    assert reply.body == b"2" and server.connections == 2


def test_a_fresh_connection_closed_before_a_reply_is_an_error():
    async def go():
        async with Scripted([None]) as server:
            pool = WirePool("127.0.0.1", server.port, {})
            try:
                await pool.post("/x", b"{}", 5)
            finally:
                pool.close()

    with pytest.raises(WireError, match="closed the connection before replying"):
        run(go())


def test_a_hang_times_out_and_the_connection_is_not_reused():
    async def go():
        async with Scripted(["hang", ok(b"fine")]) as server:
            pool = WirePool("127.0.0.1", server.port, {})
            with pytest.raises(TimeoutError, match="no reply within 0.2 s"):
                await pool.post("/x", b"{}", 0.2)
            reply = await pool.post("/x", b"{}", 5)
            pool.close()
            return server, reply

    server, reply = run(go())
    assert reply.body == b"fine" and server.connections == 2


def test_not_http_is_an_error_and_a_refused_connection_is_an_oserror():
    async def go():
        async with Scripted([b"SSH-2.0-OpenSSH\r\n\r\n"]) as server:
            pool = WirePool("127.0.0.1", server.port, {})
            with pytest.raises(WireError, match="not an HTTP/1.1 reply"):
                await pool.post("/x", b"{}", 5)
            port = server.port
        with pytest.raises(OSError):
            await WirePool("127.0.0.1", port, {}).post("/x", b"{}", 5)

    run(go())


def test_only_plain_http_goes_this_way():
    assert wire_target("http://127.0.0.1:8000/v1") == ("127.0.0.1", 8000, "/v1")
    assert wire_target("http://gpu-3/v1/") == ("gpu-3", 80, "/v1")
    assert wire_target("http://[::1]:9/v1") == ("::1", 9, "/v1")
    assert wire_target("https://api.example.com/v1") is None
