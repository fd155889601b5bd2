"""Servers that behave as real ones do on a bad day, each a small asyncio server on 127.0.0.1.

The HTTP layer (aiohttp under `robustft.backends.http`): kept-alive connections the server closes
when idle, interim 1xx replies, redirects, replies of any size in any framing, silence, refused
and slow connections. Then whole runs: replicas killed, hung or failing, the only server dying in
each phase, replies with impossible numbers, embedding dimensions that change.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import orjson
import pytest

from robustft.backends.errors import BackendError
from robustft.backends.http import Endpoints
from robustft.backends.openai import OpenAIChatModel
from robustft.config import ModelConfig
from httpstub import chat_reply
from rawserver import RawConnection, RawServer, http_reply

USER = [{"role": "user", "content": "Which is it? Answer with a letter."}]
GOOD = orjson.dumps(chat_reply("Answer: B", usage={"prompt_tokens": 5, "completion_tokens": 2}))


def chat_model(url, **settings) -> OpenAIChatModel:
    settings.setdefault("timeout_s", 30)
    return OpenAIChatModel(ModelConfig(name="stub", base_url=url, **settings))


def run_calls(chat: OpenAIChatModel, n: int = 1, between=None):
    """`n` calls at once; `between` (an async function) runs after them, then `n` more."""
    async def go():
        try:
            first = await asyncio.gather(*(chat.generate(USER) for _ in range(n)))
            if between is None:
                return first
            await between()
            return first + list(await asyncio.gather(*(chat.generate(USER) for _ in range(n))))
        finally:
            await chat.aclose()
    return asyncio.run(go())


def failure_of(chat: OpenAIChatModel) -> BackendError:
    with pytest.raises(BackendError) as info:
        run_calls(chat)
    return info.value


async def wait_for(condition, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the server never got there"
        await asyncio.sleep(0.01)


# --- connections ---------------------------------------------------------------------------------

def closes_when_idle(idle_s: float):
    """Serves requests on a kept-alive connection; after `idle_s` without one, closes it (as
    `vllm serve` does after 5 s)."""
    async def script(conn: RawConnection) -> None:
        while (request := await conn.read_request(idle_s)) is not None:
            await conn.send(http_reply(GOOD, headers="Connection: keep-alive\r\n"))
    return script


@pytest.mark.parametrize("idle_s", [0.2, 1.0])
def test_a_connection_the_server_closed_when_idle_is_never_used_again(idle_s):
    with RawServer(closes_when_idle(idle_s)) as server:
        async def pause():  # longer than the server's idle limit: it closes every connection
            await wait_for(lambda: server.closed == server.connections)

        start = time.monotonic()
        replies = run_calls(chat_model(server.base_url, timeout_s=30), n=4, between=pause)
        elapsed = time.monotonic() - start
    assert [r.text for r in replies] == ["Answer: B"] * 8
    assert server.requests == 8 and server.connections >= 5  # the second round on new connections
    assert elapsed < 10, f"{elapsed:.1f} s: a request went into a closed connection and waited"


def test_a_connection_closed_just_as_the_request_arrives_is_retried_once_on_a_fresh_one():
    async def script(conn: RawConnection) -> None:
        request = await conn.read_request()
        if conn.server.connections == 1:
            return  # read the request, then closed without a word (the keep-alive race)
        await conn.send(http_reply(GOOD))

    with RawServer(script) as server:
        [reply] = run_calls(chat_model(server.base_url))
    assert reply.text == "Answer: B" and server.requests == 2


def test_connecting_fails_within_the_connect_timeout_not_the_read_timeout():
    # A listening socket that never accepts: once its backlog is full, a new connection waits for
    # a SYN-ACK that never comes (a host that is down, a firewall that drops).
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        start = time.monotonic()
        err = failure_of(chat_model(f"http://127.0.0.1:{port}/v1", timeout_s=60, connect_timeout_s=0.5))
        elapsed = time.monotonic() - start
    finally:
        for s in fillers:
            s.close()
        listener.close()
    assert "cannot connect within 0.5 s (model.connect_timeout_s)" in str(err), str(err)
    assert err.retryable and elapsed < 10


def test_a_server_that_accepts_but_never_answers_times_out_after_the_read_timeout():
    async def silent(conn: RawConnection) -> None:
        await conn.read_request()
        await asyncio.sleep(3600)

    with RawServer(silent) as server:
        start = time.monotonic()
        err = failure_of(chat_model(server.base_url, timeout_s=0.5))
        elapsed = time.monotonic() - start
    assert "no reply within 0.5 s (model.timeout_s)" in str(err) and err.retryable
    assert elapsed < 5


# --- HTTP semantics -------------------------------------------------------------------------------

def test_interim_1xx_replies_are_skipped():
    async def script(conn: RawConnection) -> None:
        await conn.read_request()
        await conn.send(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n")
        await conn.send(http_reply(GOOD))

    with RawServer(script) as server:
        [reply] = run_calls(chat_model(server.base_url))
    assert reply.text == "Answer: B"


@pytest.mark.parametrize("status", ["301 Moved Permanently", "302 Found", "307 Temporary Redirect"])
def test_a_redirect_is_not_followed_and_the_error_names_the_location(status):
    async def script(conn: RawConnection) -> None:
        await conn.read_request()
        await conn.send(http_reply(GOOD, status, "Location: http://elsewhere.example/v1/chat/completions\r\n"))

    with RawServer(script) as server:
        err = failure_of(chat_model(server.base_url))
        assert server.requests == 1
    code = status.split()[0]
    assert f"HTTP {code} redirect to http://elsewhere.example/v1/chat/completions" in str(err)
    assert "does not follow redirects" in str(err) and not err.retryable


# --- reply size -----------------------------------------------------------------------------------

CAP = 1024 * 1024  # model.max_reply_bytes in these tests
MiB = 1024 * 1024


def endless(framing: str, announced: int = 300 * MiB):
    """A 200 reply whose body never ends (or ends at `announced` bytes), in the given framing."""
    async def script(conn: RawConnection) -> None:
        await conn.read_request()
        head = {"length": f"Content-Length: {announced}\r\n", "chunked": "Transfer-Encoding: chunked\r\n",
                "close": "Connection: close\r\n"}[framing]
        await conn.send(f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{head}\r\n".encode())
        piece = b'{"choices": [' + b" " * (64 * 1024 - 13)
        sent = 0
        while sent < announced:
            await conn.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if framing == "chunked" else piece)
            sent += len(piece)
    return script


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
def test_a_reply_over_max_reply_bytes_is_malformed_in_every_framing_and_memory_stays_bounded(framing):
    with RawServer(endless(framing)) as server:
        start = time.monotonic()
        err = failure_of(chat_model(server.base_url, max_reply_bytes=CAP))
        elapsed = time.monotonic() - start
        sent = server.sent
    assert f"malformed reply from {server.base_url}" in str(err) and f"model.max_reply_bytes = {CAP}" in str(err)
    assert err.retryable and elapsed < 10
    # What the client could have held is at most what the server got out before it was cut off:
    # the cap and the socket buffers, never the 300 MB.
    assert sent < 40 * MiB, sent


def test_a_reply_under_the_cap_in_each_framing_is_read_whole():
    async def script(conn: RawConnection) -> None:
        await conn.read_request()
        framing = ("length", "chunked", "close")[(conn.server.connections - 1) % 3]
        if framing == "length":
            await conn.send(http_reply(GOOD))
        elif framing == "chunked":
            half = len(GOOD) // 2
            await conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"".join(
                f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in (GOOD[:half], GOOD[half:])) + b"0\r\n\r\n")
        else:
            await conn.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + GOOD)

    with RawServer(script) as server:
        for _ in range(3):
            [reply] = run_calls(chat_model(server.base_url, max_reply_bytes=CAP))
            assert reply.text == "Answer: B"


def test_a_compressed_reply_is_not_expanded_past_the_cap():
    import gzip

    bomb = gzip.compress(b" " * (50 * MiB))  # about 50 KB on the wire

    async def script(conn: RawConnection) -> None:
        await conn.read_request()
        await conn.send(http_reply(bomb, headers="Content-Encoding: gzip\r\n"))

    with RawServer(script) as server:
        err = failure_of(chat_model(server.base_url, max_reply_bytes=CAP))
    assert "malformed reply" in str(err) and "not JSON" in str(err)


# --- the numbers in a reply ---------------------------------------------------------------------

def reply_body(logprob=-0.5, usage=None) -> bytes:
    content = [{"token": "Answer", "logprob": -0.1}, {"token": ": B", "logprob": logprob}]
    return json.dumps(chat_reply("Answer: B", content=content,
                                 usage=usage or {"prompt_tokens": 5, "completion_tokens": 2})).encode()


@pytest.mark.parametrize("body,field", [
    (reply_body("NaN"), "choices[0].logprobs.content[*].logprob: not a number"),
    (reply_body("-Infinity"), "choices[0].logprobs.content[*].logprob: not a number"),
    (reply_body(0.25), "choices[0].logprobs.content[*].logprob: not a finite number <= 0"),
    (reply_body().replace(b"-0.5", b"NaN"), "not JSON"),
    (reply_body().replace(b"-0.5", b"-1e999"), "not JSON"),
    (reply_body(usage={"prompt_tokens": 10 ** 30, "completion_tokens": 2}), "usage.prompt_tokens"),
    (reply_body(usage={"prompt_tokens": 5, "completion_tokens": -3}), "usage.completion_tokens"),
    (reply_body(usage={"prompt_tokens": "5", "completion_tokens": 2}), "usage.prompt_tokens"),
    (orjson.dumps(chat_reply("x")).replace(b'"x"', b"42"), "choices[0].message.content"),
])
def test_impossible_numbers_and_wrong_types_are_a_malformed_reply_naming_the_field(body, field):
    async def script(conn: RawConnection) -> None:
        while await conn.read_request() is not None:
            await conn.send(http_reply(body))

    with RawServer(script) as server:
        err = failure_of(chat_model(server.base_url))
    assert f"malformed reply from {server.base_url}: {field}" in str(err), str(err)
    assert err.retryable and err.status_code is None
