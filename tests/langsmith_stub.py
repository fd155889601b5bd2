"""A local stand-in for the LangSmith API, enough for the langsmith client to send its runs to it.

    with LangSmithStub() as stub:            # 127.0.0.1, a free port
        env LANGSMITH_ENDPOINT=stub.endpoint LANGSMITH_TRACING=true ...
        stub.runs                            # run id -> the run as created, with every update merged in

It answers `GET /info` saying the multipart endpoint is not in use, so the client sends its runs
as JSON to `POST /runs/batch` (`{"post": [...], "patch": [...]}`), or one by one to `POST /runs`
and `PATCH /runs/{id}`; every body is kept raw in `bodies` (to search for what must not be sent).
"""

from __future__ import annotations

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any

from threaded_http import ThreadedHTTPServer


class LangSmithStub(ThreadedHTTPServer):
    def __init__(self) -> None:
        self.runs: dict[str, dict[str, Any]] = {}
        self.bodies: list[bytes] = []
        self.paths: list[str] = []
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _reply(self, status: int, payload: Any) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _body(self) -> bytes:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                return gzip.decompress(body) if self.headers.get("Content-Encoding") == "gzip" else body

            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                stub.paths.append(f"GET {self.path}")
                if self.path.startswith("/info"):
                    self._reply(200, {"version": "stub", "batch_ingest_config": {
                        "use_multipart_endpoint": False, "size_limit": 100, "size_limit_bytes": 20_000_000,
                        "scale_up_nthreads_limit": 16, "scale_up_qsize_trigger": 1000,
                        "scale_down_nempty_trigger": 4},
                                      "instance_flags": {}})
                else:
                    self._reply(404, {"detail": "not in the stub"})

            def do_POST(self) -> None:  # noqa: N802
                body = self._body()
                stub.paths.append(f"POST {self.path}")
                if self.path.startswith("/runs/batch"):
                    data = json.loads(body)
                    stub._add(body, data.get("post") or [], data.get("patch") or [])
                elif self.path.rstrip("/") == "/runs":
                    stub._add(body, [json.loads(body)], [])
                else:
                    self._reply(404, {"detail": "not in the stub"})
                    return
                self._reply(200, {})

            def do_PATCH(self) -> None:  # noqa: N802
                body = self._body()
                stub.paths.append(f"PATCH {self.path}")
                run = json.loads(body)
                run.setdefault("id", self.path.rstrip("/").rsplit("/", 1)[-1])
                stub._add(body, [], [run])
                self._reply(200, {})

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(Handler, "langsmith-stub")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _add(self, body: bytes, posts: list[dict], patches: list[dict]) -> None:
        with self._lock:
            self.bodies.append(body)
            for run in posts:
                self.runs.setdefault(str(run["id"]), {}).update(run)
            for run in patches:
                self.runs.setdefault(str(run["id"]), {}).update({k: v for k, v in run.items() if v is not None})
