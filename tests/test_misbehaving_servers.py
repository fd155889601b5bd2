"""Servers that behave as real ones do on a bad day, each a small asyncio server on 127.0.0.1.

The HTTP layer (aiohttp under `robustft.backends.http`): kept-alive connections the server closes
when idle, interim 1xx replies, redirects, replies of any size in any framing, silence, refused
and slow connections. Then whole runs: replicas killed, hung or failing, the only server dying in
each phase, replies with impossible numbers, embedding dimensions that change.
"""

from __future__ import annotations

import asyncio
import json
import math
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



@pytest.mark.parametrize("alternative", [0.5, "NaN", None])
def test_alternatives_with_impossible_logprobs_never_reach_an_entropy(alternative):
    top = [{"token": "B", "logprob": -0.1}, {"token": "C", "logprob": alternative}]
    body = json.dumps(chat_reply("Answer: B", content=[{"token": "Answer: B", "logprob": -0.1, "top_logprobs": top}],
                                 usage={"prompt_tokens": 5, "completion_tokens": 1})).encode()

    async def script(conn: RawConnection) -> None:
        while await conn.read_request() is not None:
            await conn.send(http_reply(body))

    with RawServer(script) as server:
        err = failure_of(chat_model(server.base_url, top_logprobs=2))
    assert f"malformed reply from {server.base_url}: choices[0].logprobs.content[*].top_logprobs" in str(err), str(err)

# --- whole runs -----------------------------------------------------------------------------------

import csv  # noqa: E402
import shutil  # noqa: E402
import sqlite3  # noqa: E402
from pathlib import Path  # noqa: E402

from aiohttp import web  # noqa: E402

from robustft.cli import main  # noqa: E402
from robustft.demo import DEMO_DATA, DEMO_GOLD  # noqa: E402
from robustft.sim import SimServer  # noqa: E402
from httpstub import StubServer  # noqa: E402


def strict_json(path: Path):
    """The file parsed as strict JSON: NaN, Infinity and -Infinity are refused."""
    def refuse(name):
        raise AssertionError(f"{path} holds {name}, which is not JSON")
    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class Expert(StubServer):
    """The simulated expert (chat and embeddings, robustft.sim's model) behind a server the test can
    break: `die("refuse")` closes it (connections refused from then on), `die("hang")` leaves it
    accepting requests and never answering; `chat_body` and `embedding_dims` alter what it says."""

    def __init__(self, gold: Path = DEMO_GOLD, *, chat_body=None, embedding_dims=None, on_embedding=None):
        self.sim = SimServer(gold, accuracy=0.8, seed=0)  # its model only; never started
        self.chat_body, self.embedding_dims, self.on_embedding = chat_body, embedding_dims, on_embedding
        self.hanging = False
        self.embeddings = 0
        self._stopping = threading.Lock()
        super().__init__(self._reply)

    async def _reply(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if self.hanging:
            await asyncio.Event().wait()  # until the server is stopped
        if request.path.endswith("/embeddings"):
            self.embeddings += 1
            if self.on_embedding is not None and self.on_embedding(self):
                await asyncio.Event().wait()  # it died on this request: no reply (stop() cuts it off)
            if self.embedding_dims is not None:
                parsed = json.loads(body)
                parsed["dimensions"] = self.embedding_dims(self.embeddings)
                body = json.dumps(parsed).encode()
            reply = self.sim.model.embed(body)
            return web.Response(status=reply.status, body=reply.encoded(), content_type="application/json")
        reply = self.sim.model.complete(body)
        out = reply.encoded()
        if self.chat_body is not None and reply.status == 200:
            out = self.chat_body(body, out)
        return web.Response(status=reply.status, body=out, content_type="application/json")

    def die(self, how: str) -> None:
        if how == "hang":
            self.hanging = True
        else:
            threading.Thread(target=self.stop, daemon=True).start()

    def stop(self) -> None:
        with self._stopping:  # from die() and from the test at once
            if self._thread.is_alive():
                asyncio.run_coroutine_threadsafe(self._release_held(), self.loop).result(10)
            super().stop()

    async def _release_held(self) -> None:
        self.hanging = False
        held = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()
                and t.get_coro().__qualname__.endswith("_handle_request")]
        for task in held:
            task.cancel()


# One retry: a sample's retries run out long before give_up_after_s, as with the defaults (3
# retries, give-up after 300 s); an outage must still not fail it.
PATIENT = "model:\n  timeout_s: 1\n  connect_timeout_s: 1\n  give_up_after_s: 2\n  max_retries: 1\n"
GIVE_UP_S, TIMEOUT_S = 2.0, 1.0


def denoise_args(tmp_path: Path, url: str, *, limit: int = 40, out: str = "run", extra=()) -> list[str]:
    config = tmp_path / "patient.yaml"
    config.write_text(PATIENT)
    return ["denoise", "--config", str(config), "--data", str(DEMO_DATA), "--limit", str(limit), "--model", "sim",
            "--base-url", url, "--embedding-base-url", url, "--embedding-model", "e", "--concurrency", "8",
            "--out", str(tmp_path / out), "--quiet", *extra]


class Watcher:
    """Calls `act()` once, from a thread, as soon as `condition()` holds; records when."""

    def __init__(self, condition, act):
        self.acted_at: float | None = None
        self._stop = threading.Event()

        def watch() -> None:
            while not self._stop.wait(0.005):
                if condition():
                    self.acted_at = time.monotonic()
                    act()
                    return
        self._thread = threading.Thread(target=watch, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


def journal_statuses(out: Path) -> list[str]:
    path = out / "samples.jsonl"
    if not path.exists():
        return []
    statuses = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.endswith("}"):
            statuses.append(json.loads(line)["status"])
    return statuses


@pytest.mark.parametrize("how", ["refuse", "hang"])
@pytest.mark.parametrize("phase", ["detection", "barrier", "relabeling"])
def test_the_only_server_dying_in_any_phase_stops_the_run_in_time_and_a_rerun_finishes(tmp_path, capsys,
                                                                                         phase, how):
    out = tmp_path / "run"
    args = denoise_args(tmp_path, "URL")
    if phase == "barrier":
        # Detection answered from the response store of a finished run; the question vectors are
        # not: the first embedding request is the barrier's, and the server dies on it.
        with Expert() as first:
            assert main([a.replace("URL", first.base_url) for a in args]) == 0
        for name in ("samples.jsonl", "summary.json", "denoised.jsonl", "run.json"):
            (out / name).unlink(missing_ok=True)
        with sqlite3.connect(out / "responses.sqlite") as db:
            db.execute("DELETE FROM embeddings")
        capsys.readouterr()
    died: list[float] = []

    def die_on_first_embedding(server: Expert) -> bool:
        if not died:
            died.append(time.monotonic())
            server.die(how)
        return True

    server = Expert(on_embedding=die_on_first_embedding if phase == "barrier" else None)
    server.start()
    if phase == "detection":
        ready = lambda: len(journal_statuses(out)) >= 10  # noqa: E731
    elif phase == "relabeling":
        ready = lambda: "candidate" in journal_statuses(out)  # noqa: E731
    watcher = Watcher(ready, lambda: server.die(how)) if phase != "barrier" else None
    try:
        code = main([a.replace("URL", server.base_url) for a in args])
        ended = time.monotonic()
    finally:
        if watcher is not None:
            watcher.close()
        server.stop()
    err = capsys.readouterr().err
    assert code == 1, err
    died_at = died[0] if died else watcher.acted_at
    assert died_at is not None
    assert "has failed for" in err and "give_up_after_s" in err and "run the same command again" in err, err
    # Within give_up_after_s and one timeout of the death (plus a second for stopping on a loaded machine).
    assert ended - died_at <= GIVE_UP_S + TIMEOUT_S + 1.5, ended - died_at
    statuses = journal_statuses(out)
    assert "failed" not in statuses, [r.get("error") for r in read_jsonl(out / "samples.jsonl") if r.get("error")]
    if phase == "barrier":
        assert len(statuses) == 40 and set(statuses) <= {"clean", "noisy"}  # detection was complete
    with Expert() as revived:  # the server is back, at another address
        assert main([a.replace("URL", revived.base_url) for a in args]) == 0, capsys.readouterr().err
    summary = strict_json(out / "summary.json")
    assert summary["total"] == 40 and summary["failed"] == 0


# --- replicas -------------------------------------------------------------------------------------

import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

from shared_data import needs_full_data, shared_file  # noqa: E402


class SimProcess:
    """`python -m robustft.sim` in its own process (so it can be killed with SIGKILL, as a crashed
    server is); the URL is the first line it prints."""

    def __init__(self, gold: Path, latency_ms: float = 0):
        self.proc = subprocess.Popen([sys.executable, "-m", "robustft.sim", "--gold", str(gold), "--port", "0",
                                      "--accuracy", "0.8", "--latency-ms", str(latency_ms)],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    @property
    def base_url(self) -> str:
        if not hasattr(self, "_url"):
            self._url = self.proc.stdout.readline().strip()
            assert self._url.startswith("http"), "robustft.sim did not start"
        return self._url

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


REPLICA_CONFIG = "model:\n  timeout_s: {timeout}\n  connect_timeout_s: 1\n  give_up_after_s: 60\n"


def replica_run(tmp_path: Path, name: str, urls: list[str], embeddings: str, *, data: Path, limit: int,
                concurrency: int, timeout_s: float = 5, watch=None) -> tuple[int, float, dict]:
    """A denoise run over `urls`; (exit code, seconds, summary)."""
    config = tmp_path / "replicas.yaml"
    config.write_text(REPLICA_CONFIG.format(timeout=timeout_s))
    out = tmp_path / name
    args = ["denoise", "--config", str(config), "--data", str(data), "--limit", str(limit), "--model", "sim",
            "--embedding-base-url", embeddings, "--embedding-model", "e", "--concurrency", str(concurrency),
            "--out", str(out), "--quiet"]
    for url in urls:
        args += ["--base-url", url]
    watcher = Watcher(lambda: watch[0](out), watch[1]) if watch else None
    start = time.monotonic()
    try:
        code = main(args)
    finally:
        if watcher is not None:
            watcher.close()
    elapsed = time.monotonic() - start
    return code, elapsed, strict_json(out / "summary.json") if (out / "summary.json").exists() else {}


def health(summary: dict, url: str) -> dict:
    [found] = [r for r in summary["replicas"] if r["url"] == url.rstrip("/") and r["serves"].startswith("model")]
    return found


@needs_full_data("a timed 600-row FPB run, with and without a killed replica (20 FPB rows are carried)")
def test_one_of_three_replicas_killed_mid_detection_loses_nothing_rests_no_healthy_one_and_costs_little(
        tmp_path, capsys):
    gold, data = shared_file("fpb", "labeled.csv"), shared_file("fpb", "noisy30.csv")
    replicas = [SimProcess(gold, latency_ms=20) for _ in range(4)]  # the fourth replaces the killed one
    try:
        urls = [r.base_url for r in replicas]
        with SimServer(gold, accuracy=0.8, seed=0) as embeddings:
            def run(name, urls, watch=None):
                return replica_run(tmp_path, name, urls, embeddings.base_url, data=data, concurrency=48,
                                   limit=20 if name == "warm" else 600, watch=watch)

            assert run("warm", urls[:3])[0] == 0
            code, before_s, whole = run("whole", urls[:3])
            assert code == 0 and whole["failed"] == 0

            def mid_detection(out: Path) -> bool:
                return len(journal_statuses(out)) >= 150

            code, killed_s, summary = run("killed", urls[:3], watch=(mid_detection, replicas[1].kill))
            # The same run again with no kill: the machine's load drifts (other jobs share its two
            # cores), so the kill is compared with the runs just before and just after it.
            after_code, after_s, _ = run("again", [urls[0], urls[3], urls[2]])
        err = capsys.readouterr().err
    finally:
        for r in replicas:
            r.kill()
    assert code == 0 and after_code == 0, err
    assert summary["total"] == 600 and summary["failed"] == 0
    dead, alive = health(summary, urls[1]), [health(summary, urls[0]), health(summary, urls[2])]
    assert dead["failed"] >= 1 and dead["rested"] >= 1, dead
    assert all(r["rested"] == 0 and r["failed"] == 0 for r in alive), alive
    assert sum(r["sent"] for r in alive) > dead["sent"]  # the survivors carried the rest
    whole_s = (before_s + after_s) / 2
    print(f"600 rows, concurrency 48: {before_s:.1f} s and {after_s:.1f} s with no kill, {killed_s:.1f} s with one "
          f"replica killed; {dead}")
    assert killed_s <= 1.5 * whole_s, (killed_s, before_s, after_s)


def hung(conn_script=None):
    async def script(conn: RawConnection) -> None:  # accepts, reads, never answers (a hung GPU)
        while await conn.read_request() is not None:
            await asyncio.sleep(3600)
    return script


@pytest.mark.parametrize("bad", ["hung", "500 to everything"])
def test_a_hung_or_failing_replica_is_worked_around_within_about_one_timeout(tmp_path, capsys, bad):
    timeout_s = 1.0
    with SimServer(DEMO_GOLD, accuracy=0.8, seed=0, latency_ms=10) as a, \
            SimServer(DEMO_GOLD, accuracy=0.8, seed=0, latency_ms=10) as b:
        common = dict(data=DEMO_DATA, limit=80, concurrency=16, timeout_s=timeout_s)
        assert replica_run(tmp_path, "warm", [a.base_url, b.base_url], a.base_url, **{**common, "limit": 8})[0] == 0
        code, healthy_s, _ = replica_run(tmp_path, "healthy", [a.base_url, b.base_url], a.base_url, **common)
        assert code == 0
        if bad == "hung":
            broken = RawServer(hung())
            broken.start()
        else:
            broken = SimServer(DEMO_GOLD, error_rate=1.0)
            broken.start()
        try:
            urls = [a.base_url, broken.base_url, b.base_url]
            code, bad_s, summary = replica_run(tmp_path, "bad", urls, a.base_url, **common)
        finally:
            broken.stop()
    assert code == 0, capsys.readouterr().err
    assert summary["total"] == 80 and summary["failed"] == 0
    sick = health(summary, broken.base_url)
    assert sick["failed"] >= 3 and sick["rested"] >= 1, sick
    assert all(health(summary, url)["rested"] == 0 and health(summary, url)["failed"] == 0
               for url in (a.base_url, b.base_url)), summary["replicas"]
    print(f"{bad}: {bad_s:.1f} s, healthy pair alone {healthy_s:.1f} s; {sick}")
    # The calls on the bad replica waited about one timeout and moved on; nothing waited longer.
    assert bad_s <= healthy_s + 4 * timeout_s, (bad_s, healthy_s)


# --- impossible numbers in a whole run --------------------------------------------------------------

def first_question(n: int = 1) -> str:
    with open(DEMO_DATA, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))[n]["question"]


def with_logprob(value):
    """A chat_body hook: every token logprob replaced by `value` (a string, as a broken server sends)."""
    def hook(request: bytes, reply: bytes) -> bytes:
        data = json.loads(reply)
        for entry in (data["choices"][0].get("logprobs") or {}).get("content") or []:
            entry["logprob"] = value
        return json.dumps(data).encode()
    return hook


def test_nan_logprobs_never_reach_a_score_or_a_file_and_fail_only_their_sample(tmp_path, capsys):
    trigger = first_question(1)[:40].encode()
    seen: set[bytes] = set()

    def nan_for_one_question_and_every_first_attempt(request: bytes, reply: bytes) -> bytes:
        if trigger in json.dumps(json.loads(request)).encode() or request not in seen:
            seen.add(request)
            return with_logprob("NaN")(request, reply)
        return reply

    args = denoise_args(tmp_path, "URL")
    with Expert(chat_body=nan_for_one_question_and_every_first_attempt) as server:
        code = main([a.replace("URL", server.base_url) for a in args])
    err = capsys.readouterr().err
    assert code == 3, err
    out = tmp_path / "run"
    records = read_jsonl(out / "samples.jsonl")
    failed = [r for r in records if r["status"] == "failed"]
    assert len(failed) == 1, [r["error"] for r in failed]
    assert (f"malformed reply from {server.base_url}: choices[0].logprobs.content[*].logprob: not a number"
            in failed[0]["error"])
    summary = strict_json(out / "summary.json")
    assert summary["failed"] == 1 and summary["total"] == 40
    for name in ("samples.jsonl", "denoised.jsonl"):
        for line in (out / name).read_text(encoding="utf-8").splitlines():
            json.loads(line, parse_constant=lambda c: pytest.fail(f"{name} holds {c}"))
    scores = [r["score"] for r in read_jsonl(out / "denoised.jsonl") if r["source"] == "relabeled"]
    assert scores and all(isinstance(s, float) and math.isfinite(s) for s in scores)
    with Expert() as fixed:  # a rerun against a sound server finishes the one that failed
        assert main([a.replace("URL", fixed.base_url) for a in args]) == 0


@pytest.mark.parametrize("usage", [{"prompt_tokens": 10 ** 30, "completion_tokens": 3},
                                   {"prompt_tokens": -5, "completion_tokens": 3}])
def test_out_of_range_usage_is_caught_before_the_run_with_the_field_named(tmp_path, capsys, usage):
    def hook(request: bytes, reply: bytes) -> bytes:
        data = json.loads(reply)
        data["usage"] = usage
        return json.dumps(data).encode()

    with Expert(chat_body=hook) as server:
        code = main([a.replace("URL", server.base_url) for a in denoise_args(tmp_path, "URL")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"malformed reply from {server.base_url}: usage.prompt_tokens" in err
    assert "Traceback" not in err and not (tmp_path / "run" / "samples.jsonl").exists() or \
        read_jsonl(tmp_path / "run" / "samples.jsonl") == []


# --- embedding dimensions ---------------------------------------------------------------------------

def test_a_dimension_change_between_batches_is_a_clear_error_and_the_run_directory_stays_usable(tmp_path, capsys):
    args = denoise_args(tmp_path, "URL", extra=("--embedding-model", "e"))
    args[args.index("--concurrency") + 1] = "4"
    config = tmp_path / "patient.yaml"
    config.write_text(PATIENT + "denoise:\n  embedding_batch_size: 8\n")
    with Expert(embedding_dims=lambda n: 32 if n <= 2 else 48) as server:
        code = main([a.replace("URL", server.base_url) for a in args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "the embedding model 'e' gave vectors of 48 dimensions" in err and "and of 32 dimensions" in err, err
    assert "--embedding-model" in err and "Traceback" not in err
    with Expert(embedding_dims=lambda n: 32) as server:  # the server fixed: the same directory finishes
        assert main([a.replace("URL", server.base_url) for a in args]) == 0, capsys.readouterr().err
    assert strict_json(tmp_path / "run" / "summary.json")["failed"] == 0


def test_a_dimension_change_within_one_reply_is_a_clear_error(tmp_path, capsys):
    def mixed(request: bytes, reply: bytes) -> bytes:
        return reply

    class Mixed(Expert):
        async def _reply(self, request: web.Request) -> web.StreamResponse:
            if request.path.endswith("/embeddings"):
                texts = (await request.json())["input"]
                data = [{"index": i, "embedding": [0.5] * (16 if i else 8)} for i in range(len(texts))]
                return web.json_response({"data": data})
            return await super()._reply(request)

    with Mixed() as server:
        code = main([a.replace("URL", server.base_url) for a in denoise_args(tmp_path, "URL")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "the embedding model 'e' gave vectors of 16 dimensions (data[1] of the same reply)" in err
    assert "and of 8 dimensions (data[0] of one reply from" in err and "denoise.embedding_model (--embedding-model)" in err


def test_a_dimension_change_between_runs_is_a_clear_error_and_a_new_model_name_fixes_it(tmp_path, capsys):
    first = denoise_args(tmp_path, "URL", limit=20)
    more = denoise_args(tmp_path, "URL", limit=40)
    with Expert(embedding_dims=lambda n: 32) as server:
        assert main([a.replace("URL", server.base_url) for a in first]) == 0
    with Expert(embedding_dims=lambda n: 64) as server:  # the server now serves another model, same name
        code = main([a.replace("URL", server.base_url) for a in more])
        err = capsys.readouterr().err
        assert code == 2, err
        assert ("the embedding model 'e' gave vectors of 64 dimensions (made in this run) and of 32 dimensions "
                "(kept in the run directory from an earlier run)") in err, err
        renamed = [a if a != "e" else "e-64" for a in more]  # the fix the message gives
        assert main([a.replace("URL", server.base_url) for a in renamed]) == 0, capsys.readouterr().err
    assert strict_json(tmp_path / "run" / "summary.json")["failed"] == 0


# --- idle connections across a pause in a whole run --------------------------------------------------

class ClosesIdle(Expert):
    """The expert behind a server that closes a kept-alive connection idle for `idle_s` (vLLM: 5 s),
    with embedding requests held until `release` is set: a pause before relabeling."""

    def __init__(self, idle_s: float):
        self.idle_s = idle_s
        self.release = threading.Event()
        super().__init__()

    async def _start(self) -> int:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2, keepalive_timeout=self.idle_s)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _reply(self, request: web.Request) -> web.StreamResponse:
        if request.path.endswith("/embeddings"):
            while not self.release.is_set():
                await asyncio.sleep(0.01)
        return await super()._reply(request)


@pytest.mark.parametrize("idle_s", [0.2, 1.0])
def test_connections_the_server_closed_during_a_pause_before_relabeling_cost_nothing(tmp_path, capsys, idle_s):
    # Embeddings from a separate server, held until every model connection has been idle past the
    # model server's limit and closed by it; relabeling then starts on closed connections.
    out = tmp_path / "run"
    with ClosesIdle(idle_s) as model, ClosesIdle(idle_s) as embeddings:
        args = [a.replace("URL", model.base_url) for a in denoise_args(tmp_path, "URL")]
        args[args.index("--embedding-base-url") + 1] = embeddings.base_url
        args[args.index("--config") + 1] = str(tmp_path / "slow.yaml")
        (tmp_path / "slow.yaml").write_text("model:\n  timeout_s: 30\n")

        def detection_done_and_idle() -> bool:
            return len(journal_statuses(out)) == 40 and model.in_flight == 0 and idle_closed(model)

        watcher = Watcher(detection_done_and_idle, embeddings.release.set)
        try:
            code = main(args)
        finally:
            watcher.close()
        ended = time.monotonic()
    assert code == 0, capsys.readouterr().err
    assert watcher.acted_at is not None
    # Relabeling (18 or so samples at 0 latency) takes well under the 30 s a dead connection would cost.
    assert ended - watcher.acted_at < 10, ended - watcher.acted_at
    assert strict_json(out / "summary.json")["failed"] == 0


def idle_closed(server: StubServer) -> bool:
    """Every connection the server had is closed (by its keep-alive limit)."""
    runner = server._runner
    return runner is not None and runner.server is not None and not runner.server.connections


def test_the_progress_line_shows_each_replicas_health_when_there_are_several_or_one_fails():
    from robustft.run.progress import replica_figures

    one = [{"serves": "model 'm'", "url": "http://10.0.0.7:8000/v1", "sent": 9, "failed": 0, "rested": 0}]
    assert replica_figures(one) == ""
    failing = [{**one[0], "failed": 2, "rested": 1}]
    assert replica_figures(failing) == "replicas sent/failed/rested: 10.0.0.7:8000 9/2/1"
    two = one + [{"serves": "model 'm'", "url": "https://gpu-2.example/v1", "sent": 31, "failed": 12, "rested": 2}]
    assert replica_figures(two) == "replicas sent/failed/rested: 10.0.0.7:8000 9/0/0, gpu-2.example 31/12/2"


def test_every_json_writer_is_strict_a_gap_in_the_users_data_becomes_null(tmp_path):
    from robustft.files import json_text, write_json, write_jsonl

    data = {"score": float("nan"), "rows": [1.5, float("inf"), -float("inf")], "ok": 0.25}
    assert json.loads(json_text(data)) == {"score": None, "rows": [1.5, None, None], "ok": 0.25}
    write_json(tmp_path / "a.json", data)
    write_jsonl(tmp_path / "b.jsonl", [data, {"x": 1}])
    assert strict_json(tmp_path / "a.json")["rows"] == [1.5, None, None]
    for line in (tmp_path / "b.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(c))


def test_a_reply_built_to_stall_answer_parsing_does_not_block_the_run(tmp_path, capsys):
    # "Answer" and 60,000 spaces: with a quadratic pattern, 4 calls took 60 s to read.
    def bomb(request: bytes, reply: bytes) -> bytes:
        data = json.loads(reply)
        data["choices"][0]["message"]["content"] = "Answer" + " " * 60_000 + "x"
        data["choices"][0]["logprobs"] = None
        return json.dumps(data).encode()

    start = time.monotonic()
    with Expert(chat_body=bomb) as server:
        code = main([a.replace("URL", server.base_url) for a in denoise_args(tmp_path, "URL", limit=8)])
    elapsed = time.monotonic() - start
    assert code in (0, 3), capsys.readouterr().err
    records = read_jsonl(tmp_path / "run" / "samples.jsonl")
    assert len(records) == 8 and server.requests >= 16  # every sample read its (unreadable) replies
    assert elapsed < 30, elapsed
