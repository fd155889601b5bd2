"""A stdlib HTTP server on 127.0.0.1 that serves from a daemon thread while a test runs: the base of
the collectors the tracing tests send to (tests/otlp_receiver.py, tests/langsmith_stub.py)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class ThreadedHTTPServer:
    def __init__(self, handler: type[BaseHTTPRequestHandler], name: str):
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name=name)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> Any:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
