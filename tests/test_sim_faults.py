"""robustft.sim failing on purpose (fault injection) and counting what it serves, over real HTTP."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time

import aiohttp
import openai
import pytest

from robustft.errors import ConfigError
from robustft.sim import DEMO_DATA, SimServer, load_gold
from robustft.sim.faults import FAULT_KINDS, parse_faults
from simhelp import ARC_GOLD, LETTERS, arc_gold_path, ask, each_prompt_gets_through, final_answer, mc_prompt, post


@pytest.fixture(scope="module")
def gold():
    return load_gold(arc_gold_path())


def chat_body(item, *, logprobs: bool = True, judge_label: str | None = None) -> dict:
    prompt = mc_prompt(item)
    if judge_label is not None:
        prompt += (f"Given answer (may be wrong): {judge_label}\n"
                   "Finish with \"Answer: \", then Y if the given answer is wrong, or N if it is right.")
    return {"model": "sim", "messages": [{"role": "user", "content": prompt}], "logprobs": logprobs}


async def _send(url: str, bodies: list[dict], concurrency: int = 16, timeout_s: float = 30) -> list[dict]:
    """Each body's outcome: status, headers, raw text, parsed JSON (or None), seconds taken."""
    results: list[dict] = [{}] * len(bodies)
    queue = iter(enumerate(bodies))

    async def worker(session):
        for number, body in queue:
            started = time.perf_counter()
            async with session.post(url + "/chat/completions", json=body) as response:
                raw = await response.text()
            try:
                parsed = json.loads(raw)
            except json.JSONDecodeError:
                parsed = None
            results[number] = {"status": response.status, "headers": dict(response.headers), "raw": raw,
                               "json": parsed, "seconds": time.perf_counter() - started}

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return results


def send(url: str, bodies: list[dict], **kwargs) -> list[dict]:
    return asyncio.run(_send(url, bodies, **kwargs))


def classify(result: dict, item, hang_s: float) -> str | None:
    """Which fault kind a reply shows, or None for a good reply."""
    if result["status"] == 500:
        return "500"
    if result["status"] == 429:
        return "429"
    if result["json"] is None:
        return "broken_json"
    choice = result["json"]["choices"][0]
    content = choice["message"]["content"]
    if content == "":
        return "empty"
    if choice["logprobs"] is None:
        return "no_logprobs"
    answer = final_answer(content)
    if answer is None:
        return "no_answer"
    if answer not in LETTERS[:len(item.options)]:
        return "not_an_option"
    if result["seconds"] >= hang_s:
        return "hang"
    return None


def test_parse_faults():
    assert parse_faults(None) == tuple(FAULT_KINDS) == parse_faults("all")
    assert parse_faults("429, hang,429") == ("429", "hang")
    with pytest.raises(ConfigError, match="'timeout'.*choose from"):
        parse_faults("500,timeout")
    with pytest.raises(ConfigError):
        SimServer(DEMO_DATA / "demo_gold.csv", fault_rate=1.5)


@pytest.mark.parametrize("kind", ["500", "429", "broken_json", "empty", "no_logprobs", "no_answer", "not_an_option"])
def test_each_fault_kind_alone(gold, kind):
    items = gold[:12]
    with SimServer(ARC_GOLD, faults=[kind], fault_rate=1.0, retry_after_s=0.5) as sim:
        results = send(sim.base_url, [chat_body(item) for item in items])
        assert [classify(r, item, hang_s=1e9) for r, item in zip(results, items)] == [kind] * len(items)
        assert sim.faults == {kind: len(items)} and sim.requests == len(items)
        if kind == "429":
            assert all(r["headers"]["Retry-After"] == "0.5" for r in results)
            assert results[0]["json"]["error"]["type"] == "rate_limit_error"
        if kind == "500":
            assert results[0]["json"]["error"]["type"] == "server_error"
        if kind == "not_an_option":
            assert [final_answer(r["json"]["choices"][0]["message"]["content"]) for r in results] == [
                LETTERS[len(item.options)] for item in items]
            judged = send(sim.base_url, [chat_body(items[0], judge_label=items[0].answer)])[0]
            assert final_answer(judged["json"]["choices"][0]["message"]["content"]) == "Maybe"
        if kind == "no_logprobs":  # a request without logprobs cannot show this fault, so it gets none
            plain = send(sim.base_url, [chat_body(item, logprobs=False) for item in items[:3]])
            assert all(final_answer(r["json"]["choices"][0]["message"]["content"]) for r in plain)
            assert sim.faults == {kind: len(items)}


def test_openai_sdk_sees_the_http_faults(gold):
    with SimServer(ARC_GOLD, faults="500", fault_rate=1.0) as sim, \
            openai.OpenAI(base_url=sim.base_url, api_key="x", max_retries=0) as c:
        with pytest.raises(openai.InternalServerError):
            ask(c, mc_prompt(gold[0]))
    with SimServer(ARC_GOLD, faults="429", fault_rate=1.0) as sim, \
            openai.OpenAI(base_url=sim.base_url, api_key="x", max_retries=0) as c:
        with pytest.raises(openai.RateLimitError):
            ask(c, mc_prompt(gold[0]))


def test_hang_holds_the_request_then_answers(gold):
    with SimServer(ARC_GOLD, faults=["hang"], fault_rate=1.0, hang_s=0.6) as sim:
        result = send(sim.base_url, [chat_body(gold[0])])[0]
        assert result["status"] == 200 and final_answer(result["json"]["choices"][0]["message"]["content"])
        assert result["seconds"] >= 0.6 and sim.faults == {"hang": 1}
        with openai.OpenAI(base_url=sim.base_url, api_key="x", max_retries=0, timeout=0.2) as c:
            with pytest.raises(openai.APITimeoutError):
                ask(c, mc_prompt(gold[1]))


def test_all_kinds_mixed_each_counted(gold):
    items = gold[:400]
    hang_s = 1.5
    with SimServer(ARC_GOLD, fault_rate=0.2, hang_s=hang_s, seed=5) as sim:
        results = send(sim.base_url, [chat_body(item) for item in items], concurrency=64)
        seen: dict[str, int] = {}
        for result, item in zip(results, items):
            kind = classify(result, item, hang_s)
            if kind:
                seen[kind] = seen.get(kind, 0) + 1
        assert seen == dict(sim.faults) and set(seen) == set(FAULT_KINDS)
    failed = sum(seen.values())
    print(f"faults at rate 0.2 over {len(items)} calls: {seen}")
    assert abs(failed / len(items) - 0.2) < 0.06


def _normalised(results: list[dict]) -> list[tuple]:
    return [(r["status"], r["headers"].get("Retry-After"), re.sub(r'"created": ?\d+', "", r["raw"])) for r in results]


def test_faults_are_deterministic_per_attempt_and_retries_succeed(gold):
    bodies = [chat_body(item) for item in gold[:30] for _ in range(3)]  # each prompt three times in a row

    def run(seed):
        with SimServer(ARC_GOLD, fault_rate=0.5, faults="500,429,broken_json,empty,no_answer", seed=seed) as sim:
            return _normalised(send(sim.base_url, bodies, concurrency=1))

    first, again, other = run(1), run(1), run(2)
    assert first == again and first != other
    attempts = [first[i:i + 3] for i in range(0, len(first), 3)]
    assert any(len({status for status, _, _ in a}) > 1 for a in attempts)  # a retry can go another way
    with SimServer(ARC_GOLD, fault_rate=0.5, faults="500", seed=1) as sim, \
            openai.OpenAI(base_url=sim.base_url, api_key="x", max_retries=0) as c:
        each_prompt_gets_through(c, gold[:10], tries=12)


def test_embeddings_get_the_endpoint_faults_only(gold):
    body = json.dumps({"model": "m", "input": ["a text", "another text"]}).encode()
    with SimServer(ARC_GOLD, faults="429", fault_rate=1.0) as sim:
        status, payload = post(sim.base_url + "/embeddings", body)
        assert status == 429 and sim.faults == {"429": 1}
    with SimServer(ARC_GOLD, faults="empty,no_logprobs,no_answer,not_an_option", fault_rate=1.0) as sim:
        status, payload = post(sim.base_url + "/embeddings", body)
        assert status == 200 and len(payload["data"]) == 2 and sim.faults == {}
    with SimServer(ARC_GOLD, error_rate=1.0) as sim:
        assert post(sim.base_url + "/embeddings", body)[0] == 500 and sim.errors == 1


def test_calls_in_flight_are_counted_and_stop_ends_held_requests(gold):
    """Eight requests held by the hang fault are all in flight at once; stop() cancels them promptly."""
    sim = SimServer(ARC_GOLD, faults=["hang"], fault_rate=1.0, hang_s=60)
    sim.start()
    outcomes: list[object] = []

    def client():
        try:
            send(sim.base_url, [chat_body(item) for item in gold[:8]], concurrency=8, timeout_s=30)
            outcomes.append("answered")
        except Exception as exc:  # the server closes the held connections on stop
            outcomes.append(exc)

    thread = threading.Thread(target=client)
    thread.start()
    deadline = time.monotonic() + 20
    while sim.in_flight < 8 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sim.in_flight == sim.max_in_flight == 8
    assert sim.in_flight_by_path == {"/v1/chat/completions": 8}
    started = time.perf_counter()
    sim.stop()
    assert time.perf_counter() - started < 2
    thread.join(timeout=10)
    assert not thread.is_alive() and outcomes and outcomes[0] != "answered"
    assert sim.in_flight == 0 and sim.max_in_flight == 8 and sim.paths == {"/v1/chat/completions": 8}
    sim.reset_max_in_flight()
    assert sim.max_in_flight == 0
