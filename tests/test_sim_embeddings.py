"""robustft.sim's /v1/embeddings over real HTTP: the OpenAI schema, determinism, similar texts close."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import struct
import time

import aiohttp
import openai
import pytest

from robustft.sim import DEMO_DATA, SimServer
from robustft.sim.embeddings import DIMENSIONS, embed
from simhelp import post

DEMO_GOLD = DEMO_DATA / "demo_gold.csv"
TEXTS = ["Which transition is most responsible for gaps in the fossil record?",
         "What transition is mostly responsible for the gaps in the fossil record?",
         "How do green plants make their food from sunlight?"]


def cosine(a, b) -> float:
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


@pytest.fixture(scope="module")
def server():
    with SimServer(DEMO_GOLD) as sim:
        yield sim


def test_openai_sdk_gets_unit_vectors_in_input_order(server):
    with openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0) as c:
        reply = c.embeddings.create(model="sim-embed", input=TEXTS)  # the SDK asks for base64
        single = c.embeddings.create(model="sim-embed", input=TEXTS[2], encoding_format="float")
    assert reply.object == "list" and reply.model == "sim-embed"
    assert [d.index for d in reply.data] == [0, 1, 2] and all(d.object == "embedding" for d in reply.data)
    vectors = [d.embedding for d in reply.data]
    assert all(len(v) == DIMENSIONS and abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-5 for v in vectors)
    assert single.data[0].embedding == pytest.approx(vectors[2], abs=1e-6)
    assert reply.usage.prompt_tokens == reply.usage.total_tokens == sum(len(t.split()) for t in TEXTS)
    assert server.paths["/v1/embeddings"] == 2


def test_float_and_base64_encodings_agree(server):
    url = server.base_url + "/embeddings"
    status, floats = post(url, json.dumps({"model": "m", "input": TEXTS[0]}).encode())
    assert status == 200
    status, packed = post(url, json.dumps({"model": "m", "input": TEXTS[0], "encoding_format": "base64"}).encode())
    raw = base64.b64decode(packed["data"][0]["embedding"])
    unpacked = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert unpacked == pytest.approx(floats["data"][0]["embedding"], abs=1e-6)
    assert floats["data"][0]["embedding"] == embed(TEXTS[0])


def test_deterministic_across_servers_and_sizes(server):
    with SimServer(DEMO_GOLD, seed=9) as other:
        first = post(server.base_url + "/embeddings", json.dumps({"model": "m", "input": TEXTS}).encode())[1]
        second = post(other.base_url + "/embeddings", json.dumps({"model": "m", "input": TEXTS}).encode())[1]
    assert first["data"] == second["data"]
    status, small = post(server.base_url + "/embeddings",
                         json.dumps({"model": "m", "input": TEXTS[0], "dimensions": 32}).encode())
    assert status == 200 and len(small["data"][0]["embedding"]) == 32


def test_a_paraphrase_is_closer_than_an_unrelated_text():
    original, paraphrase, unrelated = (embed(t) for t in TEXTS)
    assert cosine(original, paraphrase) > 0.6 > 0.2 > cosine(original, unrelated)
    assert cosine(original, original) == pytest.approx(1.0)
    assert embed("") == [0.0] * DIMENSIONS
    pairs = [("The boiling point of water is 100 degrees Celsius at sea level.",
              "At sea level, water boils at 100 degrees Celsius.",
              "Mitochondria release energy from food in the cell."),
             ("Plants need sunlight, water and carbon dioxide to make food.",
              "To make their food, plants need water, carbon dioxide and sunlight.",
              "The Moon orbits the Earth about once a month.")]
    for text, close, far in pairs:
        assert cosine(embed(text), embed(close)) > cosine(embed(text), embed(far)) + 0.3


def test_a_batch_of_64_is_cheap():
    texts = [f"{TEXTS[i % 3]} Variant number {i} of this short text." for i in range(64)]
    embed(texts[0])
    started = time.process_time()
    for _ in range(20):
        [embed(t) for t in texts]
    per_batch = (time.process_time() - started) / 20
    print(f"64 short texts embedded in {per_batch * 1000:.2f} ms of CPU")
    assert per_batch < 0.050  # an order-of-magnitude guard; the figure itself is a benchmark's job


def test_bad_embedding_requests_get_400(server):
    url = server.base_url + "/embeddings"
    for body in ({"input": "x"}, {"model": "m"}, {"model": "m", "input": []}, {"model": "m", "input": [1, 2]},
                 {"model": "m", "input": "x", "encoding_format": "int8"},
                 {"model": "m", "input": "x", "dimensions": 0}):
        status, payload = post(url, json.dumps(body).encode())
        assert status == 400 and payload["error"]["type"] == "invalid_request_error", body
    assert post(url, b"{oops")[0] == 400


def test_latency_applies_and_does_not_serialise_requests():
    async def run(url):
        async with aiohttp.ClientSession() as session:
            async def one(i):
                async with session.post(url + "/embeddings", json={"model": "m", "input": f"text {i}"}) as r:
                    return r.status
            started = time.perf_counter()
            statuses = await asyncio.gather(*(one(i) for i in range(20)))
            return time.perf_counter() - started, statuses

    with SimServer(DEMO_GOLD, latency_ms=300) as sim:
        elapsed, statuses = asyncio.run(run(sim.base_url))
        assert statuses == [200] * 20 and sim.paths["/v1/embeddings"] == 20
        assert sim.max_in_flight_by_path["/v1/embeddings"] > 1 and sim.max_in_flight == 0
    assert 0.3 <= elapsed < 3.0  # one latency, not twenty
