"""A scriptable HTTP server on 127.0.0.1 for client tests: aiohttp.web on its own loop and thread.

    async def handler(request: web.Request) -> web.Response: ...
    with StubServer(handler) as server:
        ...  # server.base_url == "http://127.0.0.1:PORT/v1"; server.requests counts calls

The handler runs on the server's event loop, so it may await (to hold a request open, say).
`server.in_flight` and `server.max_in_flight` count requests being handled.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class StubServer:
    def __init__(self, handler: Handler):
        self.handler = handler
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.bodies: list[dict] = []
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="stub-http", daemon=True)
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if request.can_read_body:
                try:
                    self.bodies.append(await request.json())
                except ValueError:
                    self.bodies.append({})
            return await self.handler(request)
        finally:
            self.in_flight -= 1

    async def _start(self) -> int:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def start(self) -> str:
        self._thread.start()
        port = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self.base_url

    def call(self, fn: Callable[[], object]) -> None:
        """Run `fn` on the server's loop (to set an asyncio.Event the handlers wait on, say)."""
        self.loop.call_soon_threadsafe(fn)

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(10)
            self._runner = None
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()

    def __enter__(self) -> "StubServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def chat_reply(text: str, *, content: list | None = None, usage: dict | None = None) -> dict:
    """An OpenAI chat completion body."""
    return {"id": "chatcmpl-stub", "object": "chat.completion", "created": 0, "model": "stub",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "logprobs": {"content": content} if content is not None else None,
                         "finish_reason": "stop"}],
            **({"usage": usage} if usage is not None else {})}
