"""The OpenAI Batch API (`denoise.batch_api`): a run's model calls gathered into batches, at the
provider's batch price, with the same replies as online.

    batches = BatchQueue(base_url, api_key, DIR / "batches.jsonl", poll_s=30)
    await batches.recover()                    # batches a killed run submitted: collected, not sent again
    data = await batches.request(custom_id, body)   # one /chat/completions request; its reply's JSON

Every call of the run waits on `request` as it would on an online reply; when no new request has
come for `QUIET_S` (every sample in flight is waiting), the waiting requests go out as one batch:

1. a JSONL file, one line `{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"}`
   per request, uploaded to `/v1/files` (purpose `batch`); the custom id is the request's key in
   the response store, so a reply can only ever land where it belongs;
2. `POST /v1/batches`, whose id (with the input file's and the custom ids) is appended to
   `DIR/batches.jsonl` at once, so that a killed run collects it on the next start instead of
   sending its requests again (`recover`);
3. `GET /v1/batches/{id}` every `poll_s` until the batch is `completed`, `expired`, `failed` or
   `cancelled`, then the output and error files (`/v1/files/{id}/content`);
4. each reply (status 200) goes to the call waiting for it; a request that failed (in the error
   file, or answered with another status) goes into the next batch, up to `max_retries` more
   times, then fails its call (`BackendError`); one the batch did not reach (expired, or missing
   from both files) goes into the next batch, first, however often.

The graph decides what comes next, so a run makes one batch per step that waits on the one
before: the base answers, the reasoning expert's (and any re-asks), then after the barrier the
context relabeler's and the reviewer's. Everything else (the store, the budget, the journal) is
as online: `agents.calls` sends a call here instead of to the backend.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from ..files import open_nofollow
from .errors import BackendError

log = logging.getLogger("robustft")

QUIET_S = 0.5  # no new request for this long: every sample in flight waits, so the batch goes out
CHAT = "/v1/chat/completions"
DONE = ("completed", "expired", "failed", "cancelled")
EXPIRED = "batch_expired"


class BatchQueue:
    def __init__(self, base_url: str, api_key: str | None, record: Path, *, poll_s: float = 30.0,
                 max_retries: int = 3, timeout_s: float = 120.0, quiet_s: float = QUIET_S):
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.record = record
        self.poll_s, self.max_retries, self.quiet_s = poll_s, max_retries, quiet_s
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.pending: dict[str, tuple[dict[str, Any], asyncio.Future, int]] = {}  # custom id -> (body, reply, tries)
        self.recovered: dict[str, Any] = {}  # custom id -> reply JSON of a batch a killed run submitted
        self.submitted = 0  # batches sent by this run
        self._session: aiohttp.ClientSession | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task] = set()

    # -- the calls ---------------------------------------------------------------------------------

    async def request(self, custom_id: str, body: dict[str, Any]) -> Any:
        """The reply's JSON to one chat completion request, once its batch is done."""
        if custom_id in self.recovered:
            return self.recovered.pop(custom_id)
        future = asyncio.get_running_loop().create_future()
        self.pending[custom_id] = (body, future, 0)
        self._schedule()
        return await future

    def _schedule(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(self.quiet_s, self._flush)

    def _flush(self) -> None:
        self._timer = None
        if not self.pending:
            return
        items, self.pending = self.pending, {}
        task = asyncio.ensure_future(self._run(items))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, items: dict[str, tuple[dict[str, Any], asyncio.Future, int]]) -> None:
        try:
            batch = await self._submit({cid: body for cid, (body, _, _) in items.items()})
            replies, failures, status = await self._collect(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the whole batch failed: every call hears it
            for _, future, _ in items.values():
                if not future.done():
                    future.set_exception(exc if isinstance(exc, BackendError) else BackendError(
                        f"batch API at {self.base_url}: {type(exc).__name__}: {exc}", retryable=True))
            return
        again: dict[str, tuple[dict[str, Any], asyncio.Future, int]] = {}
        for cid, (body, future, tries) in items.items():
            if future.done():
                continue
            failure = failures.get(cid)
            if failure is None and status in ("failed", "cancelled"):  # the whole batch: count it against each
                failure = f"the batch {status}"
            if cid in replies:
                future.set_result(replies[cid])
            elif failure is None or EXPIRED in failure:  # not reached before the batch ended: not its fault
                again[cid] = (body, future, tries)
            elif tries < self.max_retries:
                again[cid] = (body, future, tries + 1)
            else:
                future.set_exception(BackendError(f"batch API at {self.base_url}: request {cid} failed in "
                                                  f"{tries + 1} batches: {failure}", retryable=False))
        if again:  # first in the next batch, so that a batch that expires again reaches them first
            self.pending = {**again, **self.pending}
            self._schedule()

    # -- the Batch API -------------------------------------------------------------------------------

    async def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers=self.headers, timeout=self.timeout)
        return self._session

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        session = await self._http()
        async with session.request(method, self.base_url + path, allow_redirects=False, **kwargs) as resp:
            raw = await resp.read()
            if resp.status >= 400:
                raise BackendError(f"batch API {method} {self.base_url}{path}: HTTP {resp.status}: "
                                   f"{raw[:300].decode('utf-8', 'replace')}", status_code=resp.status)
        return raw if path.endswith("/content") else orjson.loads(raw)

    async def _submit(self, bodies: dict[str, dict[str, Any]]) -> dict[str, Any]:
        lines = b"".join(orjson.dumps({"custom_id": cid, "method": "POST", "url": CHAT, "body": body}) + b"\n"
                         for cid, body in bodies.items())
        form = aiohttp.FormData()
        form.add_field("purpose", "batch")
        form.add_field("file", lines, filename="robustft-batch.jsonl", content_type="application/jsonl")
        uploaded = await self._call("POST", "/files", data=form)
        batch = await self._call("POST", "/batches", json={"input_file_id": uploaded["id"], "endpoint": CHAT,
                                                           "completion_window": "24h"})
        self._note({"batch": batch["id"], "input_file": uploaded["id"], "custom_ids": list(bodies)})
        self.submitted += 1
        log.info(f"batch {batch['id']}: {len(bodies)} requests submitted")
        return batch

    async def _collect(self, batch: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str], str]:
        """Wait for a batch to end; (replies by custom id, failures by custom id, its final status)."""
        while batch["status"] not in DONE:
            await asyncio.sleep(self.poll_s)
            batch = await self._call("GET", f"/batches/{batch['id']}")
        replies: dict[str, Any] = {}
        failures: dict[str, str] = {}
        for key in ("output_file_id", "error_file_id"):
            if not batch.get(key):
                continue
            for raw in (await self._call("GET", f"/files/{batch[key]}/content")).splitlines():
                if not raw.strip():
                    continue
                line = orjson.loads(raw)
                cid, response, error = line.get("custom_id"), line.get("response"), line.get("error")
                if isinstance(response, dict) and response.get("status_code") == 200:
                    replies[cid] = response.get("body")
                else:
                    status = response.get("status_code") if isinstance(response, dict) else None
                    failures[cid] = (f"HTTP {status}" if status else "") + (
                        f" {error.get('code')}: {error.get('message')}" if isinstance(error, dict) else "")
        self._note({"batch": batch["id"], "collected": batch["status"]})
        log.info(f"batch {batch['id']} {batch['status']}: {len(replies)} replies, {len(failures)} failed")
        if batch["status"] == "failed" and batch.get("errors"):
            log.warning(f"batch {batch['id']} failed: {str(batch['errors'])[:300]}")
        return replies, failures, batch["status"]

    def _note(self, entry: dict[str, Any]) -> None:
        # Appended as one write, never through a symbolic link (as the journal is).
        fd = open_nofollow(self.record, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        with os.fdopen(fd, "ab") as f:
            f.write(orjson.dumps(entry) + b"\n")

    async def recover(self) -> int:
        """Collect the batches an earlier, killed run submitted and did not collect: their replies
        answer this run's requests with the same custom ids, so nothing is sent twice."""
        if not self.record.exists():
            return 0
        with os.fdopen(open_nofollow(self.record, os.O_RDONLY), "rb") as f:
            lines = f.read().splitlines()
        open_batches: dict[str, bool] = {}
        for raw in lines:
            try:
                entry = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue  # a line cut off by a kill
            if "collected" in entry:
                open_batches.pop(entry.get("batch"), None)
            elif entry.get("batch"):
                open_batches[entry["batch"]] = True
        for bid in open_batches:
            batch = await self._call("GET", f"/batches/{bid}")
            replies, _, _ = await self._collect(batch)
            self.recovered.update(replies)
        return len(open_batches)

    async def aclose(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
