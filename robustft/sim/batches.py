"""The OpenAI Batch API on the simulated server: `/v1/files` and `/v1/batches`, with delays, partial
failures and expiry.

- `POST /v1/files` (multipart: `purpose`, `file`) keeps the file; `GET /v1/files/{id}` its object,
  `GET /v1/files/{id}/content` its bytes.
- `POST /v1/batches` (`{"input_file_id", "endpoint": "/v1/chat/completions", "completion_window":
  "24h"}`) creates a batch (`validating`); `GET /v1/batches/{id}` reads it; `POST
  /v1/batches/{id}/cancel` cancels it.
- A batch is worked `delay_s` after its creation (`ready_at`): each line of the input file (`{"custom_id",
  "method": "POST", "url": "/v1/chat/completions", "body"}`) is answered by the same model as the
  online endpoint (the same reply to the same request), into the output file as `{"id",
  "custom_id", "response": {"status_code", "request_id", "body"}, "error": null}`; a line drawn
  under `fail_rate` goes to the error file instead (`"error": {"code": "server_error", ...}`). With
  `expire_after` set, only that many lines are worked and the batch ends `expired`, the rest in the
  error file with code `batch_expired`, as OpenAI reports requests a batch did not reach.
  Output lines are in no particular order (reversed here), as OpenAI warns.

Counters: `created` (batches), `lines` (requests worked), `failed_lines`, `expired_lines`.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import orjson
from aiohttp import web

from .model import SimModel, _error, _uniform

CHAT = "/v1/chat/completions"


class SimBatches:
    def __init__(self, model: SimModel, *, delay_s: float = 0.2, fail_rate: float = 0.0,
                 expire_after: int | None = None, seed: int = 0):
        self.model = model
        self.delay_s, self.fail_rate, self.expire_after, self.seed = delay_s, fail_rate, expire_after, seed
        self.files: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        self.created = self.lines = self.failed_lines = self.expired_lines = 0
        self.ready_at: dict[str, float] = {}  # batch id -> when it is worked (a test may bring it forward)
        self._tasks: set[asyncio.Task] = set()

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}-sim{next(self._ids):06d}"

    def _file(self, content: bytes, purpose: str, filename: str) -> dict[str, Any]:
        fid = self._new_id("file")
        self.files[fid] = {"object": {"id": fid, "object": "file", "bytes": len(content), "created_at": int(time.time()),
                                      "filename": filename, "purpose": purpose}, "content": content}
        return self.files[fid]["object"]

    async def handle(self, request: web.BaseRequest, path: str) -> web.Response | None:
        """The reply to a files or batches request, or None when `path` is neither."""
        parts = path.split("/")[2:]  # "/v1/files/ID/content" -> ["files", "ID", "content"]
        if not parts or parts[0] not in ("files", "batches"):
            return None
        if parts == ["files"] and request.method == "POST":
            return await self._upload(request)
        if parts[0] == "files" and len(parts) in (2, 3) and request.method == "GET":
            found = self.files.get(parts[1])
            if found is None:
                return _json(404, _error(f"no file {parts[1]!r}", "invalid_request_error", code="not_found"))
            if len(parts) == 3 and parts[2] == "content":
                return web.Response(body=found["content"], content_type="application/octet-stream")
            return _json(200, found["object"])
        if parts == ["batches"] and request.method == "POST":
            return self._create(orjson.loads(await request.read() or b"{}"))
        if parts[0] == "batches" and len(parts) >= 2:
            batch = self.batches.get(parts[1])
            if batch is None:
                return _json(404, _error(f"no batch {parts[1]!r}", "invalid_request_error", code="not_found"))
            if len(parts) == 3 and parts[2] == "cancel" and request.method == "POST":
                if batch["status"] in ("validating", "in_progress"):
                    batch["status"] = "cancelled"
                return _json(200, batch)
            if len(parts) == 2 and request.method == "GET":
                return _json(200, batch)
        return _json(405, _error(f"{request.method} {path} is not supported", "invalid_request_error"))

    async def _upload(self, request: web.BaseRequest) -> web.Response:
        purpose, content, filename = None, None, "upload.jsonl"
        reader = await request.multipart()
        async for part in reader:
            if part.name == "purpose":
                purpose = (await part.read()).decode()
            elif part.name == "file":
                filename = part.filename or filename
                content = await part.read()
        if purpose != "batch" or content is None:
            return _json(400, _error("send multipart fields 'purpose' (batch) and 'file'", "invalid_request_error"))
        return _json(200, self._file(content, purpose, filename))

    def _create(self, body: Any) -> web.Response:
        if not isinstance(body, dict) or body.get("input_file_id") not in self.files:
            return _json(400, _error("input_file_id must name an uploaded file", "invalid_request_error",
                                     param="input_file_id"))
        if body.get("endpoint") != CHAT:
            return _json(400, _error(f"only endpoint {CHAT} is supported", "invalid_request_error", param="endpoint"))
        bid = self._new_id("batch")
        lines = [line for line in self.files[body["input_file_id"]]["content"].splitlines() if line.strip()]
        batch = {"id": bid, "object": "batch", "endpoint": CHAT, "errors": None,
                 "input_file_id": body["input_file_id"], "completion_window": body.get("completion_window", "24h"),
                 "status": "validating", "output_file_id": None, "error_file_id": None,
                 "created_at": int(time.time()), "in_progress_at": None, "completed_at": None, "expired_at": None,
                 "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
                 "metadata": body.get("metadata")}
        self.batches[bid] = batch
        self.ready_at[bid] = time.monotonic() + self.delay_s
        self.created += 1
        task = asyncio.get_running_loop().create_task(self._work(batch, lines))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return _json(200, batch)

    async def _work(self, batch: dict[str, Any], lines: list[bytes]) -> None:
        batch["status"] = "in_progress"
        batch["in_progress_at"] = int(time.time())
        while (left := self.ready_at[batch["id"]] - time.monotonic()) > 0:
            await asyncio.sleep(min(left, 0.05))
        if batch["status"] == "cancelled":
            return
        out, errors = [], []
        for n, raw in enumerate(lines):
            line = orjson.loads(raw)
            cid = line.get("custom_id")
            if self.expire_after is not None and n >= self.expire_after:
                self.expired_lines += 1
                errors.append({"id": f"req-{batch['id']}-{n}", "custom_id": cid, "response": None,
                               "error": {"code": "batch_expired", "message": "This request could not be executed "
                                         "before the completion window expired."}})
                continue
            self.lines += 1
            if self.fail_rate and _uniform("batch-fail", self.seed, batch["id"], cid) < self.fail_rate:
                self.failed_lines += 1
                errors.append({"id": f"req-{batch['id']}-{n}", "custom_id": cid, "response": None,
                               "error": {"code": "server_error", "message": "simulated failure of one request"}})
                continue
            reply = self.model.complete(orjson.dumps(line.get("body")))
            out.append({"id": f"req-{batch['id']}-{n}", "custom_id": cid,
                        "response": {"status_code": reply.status, "request_id": f"r{n}", "body": reply.payload},
                        "error": None})
        counts = batch["request_counts"]
        counts["completed"] = sum(1 for o in out if o["response"]["status_code"] == 200)
        counts["failed"] = len(errors) + len(out) - counts["completed"]
        if out:
            batch["output_file_id"] = self._file(b"".join(orjson.dumps(o) + b"\n" for o in reversed(out)),
                                                 "batch_output", "output.jsonl")["id"]
        if errors:
            batch["error_file_id"] = self._file(b"".join(orjson.dumps(e) + b"\n" for e in errors),
                                                "batch_output", "errors.jsonl")["id"]
        expired = self.expire_after is not None and len(lines) > self.expire_after
        batch["status"] = "expired" if expired else "completed"
        batch["expired_at" if expired else "completed_at"] = int(time.time())


def _json(status: int, payload: Any) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(payload), content_type="application/json")
