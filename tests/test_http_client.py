"""The OpenAI-compatible client over real HTTP on 127.0.0.1: parsing, errors, replicas, embeddings."""

from __future__ import annotations

import asyncio
import math
import threading
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone

import pytest
from aiohttp import web

from robustft.backends.retry import is_retryable
from robustft.backends.errors import BackendError
from robustft.backends.http import REST_S, Endpoints, parse_retry_after
from robustft.backends.openai import OpenAIChatModel, OpenAIEmbeddings
from robustft.config import ModelConfig
from robustft.demo import DEMO_GOLD
from robustft.sim import SimServer
from httpstub import StubServer, chat_reply

USER = [{"role": "user", "content": "Which is it? Answer with a letter."}]


def reply_with(status: int = 200, body: dict | bytes | None = None, headers: dict | None = None):
    async def handler(request: web.Request) -> web.Response:
        if isinstance(body, (bytes, type(None))):
            return web.Response(status=status, body=body or b"", headers=headers, content_type="application/json")
        return web.json_response(body, status=status, headers=headers)
    return handler


def model(url: str | list[str], **settings) -> OpenAIChatModel:
    return OpenAIChatModel(ModelConfig(name="stub", base_url=url, **settings))


async def generate_once(chat: OpenAIChatModel, messages=USER):
    try:
        return await chat.generate(messages)
    finally:
        await chat.aclose()


def call(chat: OpenAIChatModel, messages=USER):
    return asyncio.run(generate_once(chat, messages))


def failure(chat: OpenAIChatModel) -> BackendError:
    with pytest.raises(BackendError) as info:
        call(chat)
    return info.value


# --- the request and the reply -------------------------------------------------------------------

def entry(token: str, p: float, top: list[tuple[str, float]] | None = None) -> dict:
    return {"token": token, "logprob": math.log(p), "bytes": list(token.encode()),
            "top_logprobs": [{"token": t, "logprob": math.log(q)} for t, q in (top or [])]}


def test_request_carries_the_settings_and_the_reply_keeps_logprobs_tokens_entropies_and_usage(monkeypatch):
    monkeypatch.setenv("STUB_KEY", "sk-test")
    content = [entry("Answer", 0.5, [("Answer", 0.5), ("The", 0.25), ("So", 0.25)]),
               entry(":", 0.9, [(" is", 0.05)])]  # the sampled token outside the top list (OpenAI does this)
    with StubServer(reply_with(body=chat_reply("Answer:", content=content,
                                               usage={"prompt_tokens": 17, "completion_tokens": 2}))) as server:
        gen = call(model(server.base_url, temperature=0.2, max_tokens=9, seed=4, top_logprobs=3,
                         api_key_env="STUB_KEY"))
    body = server.bodies[0]
    assert body == {"model": "stub", "messages": USER, "temperature": 0.2, "max_tokens": 9, "seed": 4,
                    "logprobs": True, "top_logprobs": 3}
    assert gen.text == "Answer:" and gen.tokens == ["Answer", ":"]
    assert gen.token_logprobs == pytest.approx([math.log(0.5), math.log(0.9)])
    assert (gen.prompt_tokens, gen.completion_tokens) == (17, 2)
    # 1/2, 1/4, 1/4: 1.5 ln 2; then 0.9 (sampled), 0.05 (listed) and the remaining 0.05 as one outcome
    second = -(0.9 * math.log(0.9) + 2 * 0.05 * math.log(0.05))
    assert gen.token_entropies == pytest.approx([1.5 * math.log(2), second])


def test_plain_request_without_logprobs_seed_or_top_logprobs():
    with StubServer(reply_with(body=chat_reply("Answer: B"))) as server:
        gen = call(model(server.base_url, logprobs=False))
        call(model(server.base_url, top_logprobs=0))
    assert server.bodies[0] == {"model": "stub", "messages": USER, "temperature": 1.0, "max_tokens": 512}
    assert "top_logprobs" not in server.bodies[1] and server.bodies[1]["logprobs"] is True
    assert gen.text == "Answer: B" and gen.token_logprobs is None and gen.token_entropies is None
    # No usage reported: estimated, never zero
    assert gen.prompt_tokens >= 5 and gen.completion_tokens >= 2


def test_entropies_only_when_every_token_has_alternatives():
    content = [entry("A", 0.9, [("A", 0.9)]), entry(".", 0.8)]
    with StubServer(reply_with(body=chat_reply("A.", content=content))) as server:
        gen = call(model(server.base_url, top_logprobs=2))
    assert gen.token_logprobs is not None and gen.token_entropies is None


def test_against_the_simulated_server_tokens_spell_the_text():
    with SimServer(DEMO_GOLD, accuracy=1.0) as sim:
        gen = call(model(sim.base_url, top_logprobs=5), [{"role": "user", "content": "Think step by step. A. x\nB. y"}])
    assert "".join(gen.tokens) == gen.text and len(gen.token_logprobs) == gen.completion_tokens
    assert len(gen.token_entropies) == len(gen.tokens) and all(h > 0 for h in gen.token_entropies)


# --- errors -----------------------------------------------------------------------------------

def test_429_surfaces_retry_after_in_seconds_and_as_an_http_date():
    with StubServer(reply_with(429, {"error": {"message": "slow down"}}, {"Retry-After": "7"})) as server:
        err = failure(model(server.base_url))
    assert (err.status_code, err.retry_after, err.retryable) == (429, 7.0, True) and is_retryable(err)
    assert "HTTP 429: slow down" in str(err)
    later = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    with StubServer(reply_with(503, {"error": {"message": "warming up"}}, {"Retry-After": later})) as server:
        err = failure(model(server.base_url))
    assert err.status_code == 503 and 27 <= err.retry_after <= 30.5 and err.retryable


@pytest.mark.parametrize("value,expected", [("0", 0.0), ("2.5", 2.5), ("-3", 0.0), ("soon", None), ("", None),
                                            ("nan", None), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)])
def test_retry_after_values(value, expected):
    assert parse_retry_after(value) == expected


@pytest.mark.parametrize("status,retryable", [(400, False), (401, False), (404, False), (408, True), (409, True)])
def test_client_errors_say_whether_a_retry_can_help(status, retryable):
    body = {"error": {"message": "model 'stub' does not exist", "type": "invalid_request_error"}}
    with StubServer(reply_with(status, body)) as server:
        err = failure(model(server.base_url))
    assert err.status_code == status and err.retryable is retryable and is_retryable(err) is retryable
    assert "does not exist" in str(err) and server.requests == 1


@pytest.mark.parametrize("body,needle", [
    (b'{"choices": [{"message": {"content": "Answ', "malformed reply from URL: not JSON"),
    (b'{"choices": []}', "malformed reply from URL: choices: List should have at least 1 item"),
    (b'{"object": "error"}', "malformed reply from URL: choices: Field required"),
    (b'{"choices": [{"message": {"role": "assistant", "content": null}}]}',
     "malformed reply from URL: choices[0].message.content: no text content"),
    (b'{"choices": [{"message": {"content": "A"}, "logprobs": {"content": [{"token": "A"}]}}]}',
     "malformed reply from URL: choices[0].logprobs.content: not a list of {token, logprob}"),
])
def test_malformed_replies_are_retryable_errors_that_say_what_was_wrong(body, needle):
    with StubServer(reply_with(200, body)) as server:
        err = failure(model(server.base_url))
    assert needle.replace("URL", server.base_url) in str(err) and err.retryable and err.status_code is None and is_retryable(err)


def test_a_server_that_does_not_answer_times_out():
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response(chat_reply("late"))

    with StubServer(hang) as server:
        err = failure(model(server.base_url, timeout_s=0.3))
        server.call(release.set)
    assert "no reply within 0.3 s" in str(err) and err.retryable and err.status_code is None


def test_nothing_listening_is_a_retryable_connection_error():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    err = failure(model(f"http://127.0.0.1:{port}/v1"))
    assert "cannot connect" in str(err) and err.retryable and err.status_code is None


def test_a_5xx_from_the_only_server_reaches_the_caller():
    with StubServer(reply_with(500, {"error": {"message": "boom"}})) as server:
        err = failure(model(server.base_url))
    assert err.status_code == 500 and err.retryable and server.requests == 1


# --- concurrency and event loops ----------------------------------------------------------------

def held_until(count: int, seconds: float = 10.0):
    """A handler that holds every request until `count` are in flight at once (or `seconds` pass)."""
    state = {"in": 0, "event": None}

    async def handler(request: web.Request) -> web.Response:
        if state["event"] is None:
            state["event"] = asyncio.Event()
        state["in"] += 1
        if state["in"] >= count:
            state["event"].set()
        try:
            await asyncio.wait_for(state["event"].wait(), seconds)
        except asyncio.TimeoutError:
            pass
        state["in"] -= 1
        return web.json_response(chat_reply("Answer: A"))
    return handler


@pytest.mark.parametrize("limit,calls", [(7, 40), (150, 150)])
def test_calls_in_flight_are_exactly_those_the_callers_semaphore_lets_through(limit, calls):
    """No hidden cap below the caller's limit (aiohttp's default pool holds 100), none above it."""
    async def run(url):
        chat = model(url)
        sem = asyncio.Semaphore(limit)

        async def one(i):
            async with sem:
                return await chat.generate([{"role": "user", "content": f"q{i}"}])
        try:
            return await asyncio.gather(*(one(i) for i in range(calls)))
        finally:
            await chat.aclose()

    with StubServer(held_until(limit)) as server:
        replies = asyncio.run(run(server.base_url))
    assert len(replies) == calls and server.max_in_flight == limit


def test_one_model_object_serves_several_event_loops_with_a_session_each():
    with StubServer(reply_with(body=chat_reply("Answer: C"))) as server:
        chat = model(server.base_url)
        sessions = []

        async def once():
            gen = await chat.generate(USER)
            sessions.append(await chat.endpoints._session())
            return gen

        assert asyncio.run(once()).text == "Answer: C"
        results = []
        worker = threading.Thread(target=lambda: results.append(asyncio.run(once())))
        worker.start()
        worker.join(10)
        assert results[0].text == "Answer: C"
    assert sessions[0] is not sessions[1]
    assert sessions[0].closed and sessions[1].closed  # closed when their loops ended, without aclose()


# --- replicas ---------------------------------------------------------------------------------

def test_three_replicas_share_the_calls_evenly():
    servers = [StubServer(held_until(10)) for _ in range(3)]
    for s in servers:
        s.start()
    try:
        async def run():
            chat = model([s.base_url for s in servers])
            try:
                return await asyncio.gather(*(chat.generate([{"role": "user", "content": f"q{i}"}]) for i in range(30)))
            finally:
                await chat.aclose()
        assert len(asyncio.run(run())) == 30
    finally:
        for s in servers:
            s.stop()
    # 30 calls started together, each to the replica with the fewest in flight: 10 each
    assert [s.requests for s in servers] == [10, 10, 10]


def test_a_replica_killed_mid_run_loses_no_call():
    sims = [SimServer(DEMO_GOLD, accuracy=1.0, seed=i) for i in range(3)]
    for sim in sims:
        sim.start()
    try:
        async def run():
            chat = model([sim.base_url for sim in sims], timeout_s=10)
            sem = asyncio.Semaphore(32)
            done = 0

            async def one(i):
                nonlocal done
                async with sem:
                    gen = await chat.generate([{"role": "user", "content": f"Question {i}? A. x\nB. y"}])
                done += 1
                if done == 150:
                    await asyncio.to_thread(sims[1].stop)
                return gen
            try:
                return await asyncio.gather(*(one(i) for i in range(600))), chat.endpoints.stats()
            finally:
                await chat.aclose()
        replies, stats = asyncio.run(run())
    finally:
        for sim in sims:
            sim.stop()
    assert len(replies) == 600 and all(r.text.startswith("Answer: ") for r in replies)
    served = [sim.requests for sim in sims]
    assert served[1] >= 30 and served[0] > 200 and served[2] > 200, served
    assert sum(served) >= 600
    assert stats[1]["failed"] >= 1 and stats[0]["failed"] == stats[2]["failed"] == 0


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_failing_replica_rests_then_gets_one_trial_call_and_comes_back():
    state = {"healthy": False}

    async def sick(request: web.Request) -> web.Response:
        if state["healthy"]:
            return web.json_response(chat_reply("Answer: A"))
        return web.json_response({"error": {"message": "overloaded"}}, status=500)

    clock = Clock()
    with StubServer(sick) as bad, StubServer(reply_with(body=chat_reply("Answer: A"))) as good:
        endpoints = Endpoints([bad.base_url, good.base_url], api_key=None, timeout_s=5, what="model 'x'", clock=clock)

        async def calls(n):
            for _ in range(n):
                await endpoints.post_json("/chat/completions", {"model": "x", "messages": USER})

        async def scenario():
            await calls(12)  # every call succeeds: those that hit the bad replica are re-sent to the good one
            assert bad.requests == 3  # three failures in a row, then it rests
            clock.now += REST_S - 0.1
            await calls(5)
            assert bad.requests == 3
            clock.now += 0.2
            await calls(5)
            assert bad.requests == 4  # awake: one trial call, which fails, so it rests twice as long
            clock.now += REST_S + 0.1
            await calls(5)
            assert bad.requests == 4
            clock.now += REST_S
            state["healthy"] = True
            await calls(10)
            assert bad.requests >= 8  # the trial succeeded: back in the rotation
            await endpoints.aclose()
        asyncio.run(scenario())
    # every call ended at the good replica except those the recovered one answered
    assert good.requests == 12 + 5 + 5 + 5 + 10 - (bad.requests - 4)


def test_when_every_replica_rests_the_error_is_retryable_and_says_when_to_come_back():
    clock = Clock()
    with StubServer(reply_with(500, {"error": {"message": "down"}})) as a, \
            StubServer(reply_with(502, {"error": {"message": "bad gateway"}})) as b:
        endpoints = Endpoints([a.base_url, b.base_url], api_key=None, timeout_s=5, what="model 'x'", clock=clock)

        async def scenario():
            errors = []
            for _ in range(4):
                try:
                    await endpoints.post_json("/chat/completions", {})
                except BackendError as exc:
                    errors.append(exc)
            await endpoints.aclose()
            return errors
        errors = asyncio.run(scenario())
    assert len(errors) == 4 and a.requests == b.requests == 3
    assert "failed on 2 of 2 replicas" in str(errors[0]) and errors[0].status_code in (500, 502)
    assert "all 2 replicas" in str(errors[3]) and "resting" in str(errors[3])
    assert errors[3].retryable and errors[3].retry_after == pytest.approx(REST_S)


# --- embeddings -------------------------------------------------------------------------------

async def embeddings_handler(request: web.Request) -> web.Response:
    body = await request.json()
    await asyncio.sleep(0)  # let other requests in, so the concurrency bound is exercised
    data = [{"object": "embedding", "index": i, "embedding": [float(len(t)), float(i)]} for i, t in enumerate(body["input"])]
    return web.json_response({"object": "list", "model": body["model"], "data": data[::-1]})  # any order: by index


def test_embeddings_come_back_in_input_order_in_batches_with_bounded_concurrency():
    texts = [f"text number {'x' * i}" for i in range(10)]

    async def run(url):
        emb = OpenAIEmbeddings(url, "embedder", batch_size=4, concurrency=2)
        try:
            return await emb.embed(texts), emb.model_name
        finally:
            await emb.aclose()

    with StubServer(embeddings_handler) as server:
        vectors, name = asyncio.run(run(server.base_url))
    assert name == "embedder"
    assert vectors.tolist() == [[float(len(t)), float(i % 4)] for i, t in enumerate(texts)]
    assert [len(b["input"]) for b in server.bodies] == [4, 4, 2] and server.max_in_flight <= 2
    assert all(b["model"] == "embedder" for b in server.bodies)


def test_embeddings_spread_over_replicas_and_reject_a_short_reply():
    async def short(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"data": [{"index": 0, "embedding": [1.0]}] * (len(body["input"]) - 1)})

    async def run(urls, texts):
        emb = OpenAIEmbeddings(urls, "e", batch_size=2)
        try:
            return await emb.embed(texts)
        finally:
            await emb.aclose()

    with StubServer(embeddings_handler) as a, StubServer(embeddings_handler) as b:
        assert len(asyncio.run(run([a.base_url, b.base_url], [str(i) for i in range(16)]))) == 16
        assert a.requests >= 2 and b.requests >= 2 and a.requests + b.requests == 8
    with StubServer(short) as server, pytest.raises(BackendError, match="1 embeddings for 2 texts"):
        asyncio.run(run(server.base_url, ["a", "b"]))
    assert asyncio.run(run("http://127.0.0.1:9/v1", [])).size == 0


def test_the_inlined_per_token_entropy_equals_topk_entropy():
    import random

    from robustft.backends.replies import _token_entropy
    from robustft.entropy import topk_entropy

    rng = random.Random(2)
    for _ in range(300):
        weights = [rng.random() ** 2 for _ in range(8)]
        probs = [w / sum(weights) for w in weights]
        names = [f"t{i}" for i in range(8)]
        shown = rng.sample(range(8), rng.randint(1, 5))
        sampled = rng.randrange(8)
        values = [math.log(probs[i]) for i in shown] + ([] if sampled in shown else [math.log(probs[sampled])])
        entropy = _token_entropy({"token": names[sampled], "logprob": math.log(probs[sampled]),
                                  "top_logprobs": [{"token": names[i], "logprob": math.log(probs[i])} for i in shown]})
        assert entropy == pytest.approx(topk_entropy(values), abs=1e-12)
