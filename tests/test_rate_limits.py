"""Rate limits: the simulator enforces requests and tokens per window (OpenAI's headers, 429 with
Retry-After), and robustft paces its calls to them: from the configured limits, from the server's
`x-ratelimit-*` headers with no configuration, and after a 429, which is waited out without
counting as a failed attempt while `give_up_after_s` still applies. Windows are a second or less,
so each test takes seconds."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from robustft.agents.calls import ModelCalls, ServiceDown
from robustft.backends.ratelimit import RateLimiter, parse_duration
from robustft.backends.registry import ModelPool
from robustft.cli import main
from robustft.config import load_config
from robustft.demo import DEMO_DATA, DEMO_GOLD
from robustft.errors import ModelCallError
from robustft.sim import SimServer, load_gold
from robustft.sim.ratelimit import SimRateLimits, format_duration


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def chat(url: str, content: str, max_tokens: int = 10) -> tuple[int, dict, dict]:
    body = json.dumps({"model": "sim", "max_tokens": max_tokens,
                       "messages": [{"role": "user", "content": content}]}).encode()
    request = urllib.request.Request(url + "/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, dict(reply.headers), json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


def prompts(n: int) -> list[str]:
    items = load_gold(DEMO_GOLD)
    return [f"Answer directly.\nQuestion:\n{items[i % len(items)].question}\n(variant {i})" for i in range(n)]


# -- the simulator's limits ------------------------------------------------------------------------------

def test_durations_read_and_written_as_openai_writes_them():
    assert [parse_duration(v) for v in ("1s", "6m0s", "20ms", "1h2m3.5s", "0.25", "2")] == [1, 360, 0.02, 3723.5,
                                                                                            0.25, 2]
    assert [parse_duration(v) for v in ("", None, "soon", "5x", "-1", "1s junk")] == [None] * 6
    for seconds in (0.02, 0.5, 1.5, 59.9, 360, 3723):
        assert parse_duration(format_duration(seconds)) == pytest.approx(seconds, abs=0.5 if seconds >= 60 else 1e-3)


def test_sim_buckets_refill_continuously_and_refuse_with_retry_after():
    clock = Clock()
    limits = SimRateLimits(rpm=4, tpm=100, window_s=1.0, clock=clock)
    for left in (3, 2, 1, 0):
        refusal, headers = limits.admit(10)
        assert refusal is None and headers["x-ratelimit-remaining-requests"] == str(left)
    assert headers["x-ratelimit-limit-requests"] == "4" and headers["x-ratelimit-reset-requests"] == "1s"
    assert headers["x-ratelimit-remaining-tokens"] == "60" and headers["x-ratelimit-reset-tokens"] == "400ms"
    refusal, headers = limits.admit(10)
    assert refusal["error"]["code"] == "rate_limit_exceeded" and refusal["error"]["type"] == "requests"
    assert headers["retry-after-ms"] == "250" and headers["Retry-After"] == "1"
    assert (limits.admitted, limits.refused) == (4, 1)  # a refused request takes nothing
    clock.now += 0.25
    assert limits.admit(10)[0] is None
    assert limits.admit(70)[0]["error"]["type"] == "requests"
    clock.now += 1.0  # both full again
    assert limits.admit(60)[0] is None
    refusal, headers = limits.admit(50)
    assert refusal["error"]["type"] == "tokens" and headers["retry-after-ms"] == "100"
    assert limits.allowed("requests") == pytest.approx(4 + 1.25 * 4)


def test_the_simulated_server_sends_the_headers_and_refuses_over_the_limit():
    with SimServer(DEMO_GOLD, rpm=3, rate_window_s=60) as sim:
        replies = [chat(sim.base_url, p) for p in prompts(4)]
    assert [status for status, _, _ in replies] == [200, 200, 200, 429]
    assert [h["x-ratelimit-remaining-requests"] for _, h, _ in replies] == ["2", "1", "0", "0"]
    _, headers, body = replies[-1]
    assert headers["Retry-After"] == "20" and body["error"]["code"] == "rate_limit_exceeded"
    assert sim.requests == 3 and sim.rate_limits.refused == 1  # the refused one never reached the model


# -- pacing in the client ---------------------------------------------------------------------------------

def test_configured_limits_space_the_calls_out():
    async def scenario():
        limiter = RateLimiter(requests_per_minute=600)  # a minute's worth at once, then 10 a second
        start = time.monotonic()
        for _ in range(600):
            await limiter.acquire(1)
        burst = time.monotonic() - start
        await asyncio.gather(*(limiter.acquire(1) for _ in range(3)))
        return burst, time.monotonic() - start

    burst, total = asyncio.run(scenario())
    assert burst < 0.5 and 0.25 <= total - burst < 2.0  # the three past the bucket: 0.1 s apart


def test_headers_alone_teach_the_limiter_the_servers_bucket():
    clock = Clock()
    limiter = RateLimiter(clock=clock)
    assert limiter.buckets["requests"] is None
    asyncio.run(limiter.acquire(50))
    with limiter.sending(50) as sending:
        limiter.observe({"x-ratelimit-limit-requests": "120", "x-ratelimit-remaining-requests": "110",
                         "x-ratelimit-reset-requests": "5s", "x-ratelimit-limit-tokens": "1000",
                         "x-ratelimit-remaining-tokens": "700", "x-ratelimit-reset-tokens": "600ms"}, sending)
    requests, tokens = limiter.buckets["requests"], limiter.buckets["tokens"]
    assert (requests.capacity, requests.rate, requests.level) == (120, 2.0, 110)  # 10 used, refilled in 5 s
    assert (tokens.capacity, tokens.rate, tokens.level) == (1000, 500.0, 700)
    assert limiter.heard_headers


def test_a_429_pauses_every_call_for_the_servers_wait():
    clock = Clock()
    limiter = RateLimiter(requests_per_minute=60, clock=clock)
    with limiter.sending(1) as sending:
        limiter.observe({"retry-after-ms": "1500"}, sending)
    assert limiter.throttled(9.0, sending) == 1.5  # retry-after-ms, to the millisecond, beats Retry-After
    assert limiter.paused_until == 101.5 and limiter.buckets["requests"].level <= 0
    assert limiter.throttled(None) == 1.0 and limiter.throttles == 2


def calls_for(sim: SimServer, **model) -> tuple[ModelCalls, object]:
    config = load_config(None, {"model": {"name": "sim", "base_url": sim.base_url, "logprobs": False,
                                          "max_tokens": 16, **model}})
    return ModelCalls(ModelPool(), None, concurrency=16, backoff_s=0.01), config.model_for("base")


async def _ask_all(calls: ModelCalls, config, texts: list[str]):
    return await asyncio.gather(*(calls.call(config, [{"role": "user", "content": t}], "base") for t in texts))


def test_a_429_that_asks_for_patience_is_not_a_failed_attempt():
    with SimServer(DEMO_GOLD, faults="429", fault_rate=0.5, retry_after_s=0.01, seed=3) as sim:
        calls, config = calls_for(sim, max_retries=0)
        replies = asyncio.run(_ask_all(calls, config, prompts(20)))
    assert all(r.text for r in replies)
    assert calls.stats.throttled > 0 and calls.stats.failed_attempts == 0


def test_a_429_without_retry_after_or_limits_counts_as_a_failure():
    from aiohttp import web

    from httpstub import StubServer

    async def refuse(request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "You exceeded your current quota"}}, status=429)

    with StubServer(refuse) as server:
        config = load_config(None, {"model": {"name": "m", "base_url": server.base_url, "max_retries": 1,
                                              "logprobs": False}})
        calls = ModelCalls(ModelPool(), None, concurrency=1, backoff_s=0.01)
        with pytest.raises(ModelCallError, match="after 2 attempts.*HTTP 429"):
            asyncio.run(calls.call(config.model_for("base"), [{"role": "user", "content": "hi"}]))
    assert server.requests == 2 and calls.stats.throttled == 0


def test_give_up_after_s_still_stops_a_server_that_never_stops_refusing():
    with SimServer(DEMO_GOLD, faults="429", fault_rate=1.0, retry_after_s=0.05) as sim:
        calls, config = calls_for(sim, give_up_after_s=0.4)
        start = time.monotonic()
        with pytest.raises(ServiceDown, match="give_up_after_s = 0.4"):
            asyncio.run(_ask_all(calls, config, prompts(2)))
    assert time.monotonic() - start < 5 and calls.stats.throttled >= 4


def test_a_rate_limited_run_finishes_with_few_429s_and_no_failed_sample(tmp_path):
    """The run the issue measured failing (395 of 400 samples) on a limit, scaled down: 40 requests a
    second (a 0.5 s window of 20), the default concurrency, no configuration: the headers pace it."""
    out = tmp_path / "run"
    with SimServer(DEMO_GOLD, accuracy=0.8, seed=0, latency_ms=20, rpm=20, rate_window_s=0.5) as sim:
        code = main(["denoise", "--data", str(DEMO_DATA), "--limit", "40", "--model", "sim", "--base-url",
                     sim.base_url, "--embedding-base-url", sim.base_url, "--embedding-model", "e", "--out", str(out),
                     "--quiet"])
        limits = sim.rate_limits
    summary = json.loads((out / "summary.json").read_text())
    assert code == 0 and summary["failed"] == 0
    assert summary["this_run"]["failed_attempts"] == 0
    assert summary["this_run"]["throttled_429"] == limits.refused
    assert limits.refused <= 0.05 * (limits.admitted + limits.refused)  # the first burst before any header
