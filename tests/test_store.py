"""The response store and the call path over it: every response kept, replayed draw for draw."""

from __future__ import annotations

import asyncio

import pytest

from robustft.agents.calls import ModelCalls
from robustft.backends.base import Generation
from robustft.backends.fake import FakeChatModel
from robustft.backends.registry import ModelPool
from robustft.backends.store import ResponseStore, decode_generation, encode_generation, model_identity
from robustft.config import ModelConfig
from robustft.errors import ModelCallError

MSGS = [{"role": "user", "content": "same prompt"}]


def calls_over(store, cfg, model, concurrency=4):
    pool = ModelPool()
    pool.add(cfg, model)
    return ModelCalls(pool, store, concurrency, backoff_s=0.0)


def test_identical_requests_in_a_run_get_successive_draws_and_a_new_run_replays_them(tmp_path):
    cfg = ModelConfig(provider="fake", name="m", temperature=1.0)
    inner = FakeChatModel(["Answer: A", "Answer: B", "Answer: C"])
    store = ResponseStore(tmp_path / "r.sqlite")
    calls = calls_over(store, cfg, inner)

    async def three(calls):
        return [(await calls.call(cfg, MSGS)).text for _ in range(3)]

    assert asyncio.run(three(calls)) == ["Answer: A", "Answer: B", "Answer: C"]
    assert len(inner.calls) == 3 and (calls.stats.paid, calls.stats.reused) == (3, 0)
    again = calls_over(store, cfg, inner)  # a new run over the same store
    assert asyncio.run(three(again)) == ["Answer: A", "Answer: B", "Answer: C"]  # the same draws, in order
    assert len(inner.calls) == 3 and (again.stats.paid, again.stats.reused) == (0, 3)
    store.close()
    # The store persists: a new process (a new store object over the same file) replays too.
    reopened = calls_over(ResponseStore(tmp_path / "r.sqlite"), cfg, FakeChatModel([RuntimeError("not called")]))
    assert asyncio.run(reopened.call(cfg, MSGS)).text == "Answer: A"


def test_a_failed_call_gives_its_occurrence_to_the_retry(tmp_path):
    cfg = ModelConfig(provider="fake", name="m", max_retries=0)
    inner = FakeChatModel([ConnectionError("down"), "Answer: B"])
    store = ResponseStore(tmp_path / "r.sqlite")
    calls = calls_over(store, cfg, inner)
    with pytest.raises(ModelCallError, match="down"):
        asyncio.run(calls.call(cfg, MSGS))
    assert asyncio.run(calls.call(cfg, MSGS)).text == "Answer: B"
    assert asyncio.run(calls_over(store, cfg, inner).call(cfg, MSGS)).text == "Answer: B"  # stored as draw 0
    assert len(inner.calls) == 2


def test_identity_is_the_model_and_its_sampling_not_where_it_is_served():
    a = ModelConfig(name="m", base_url="http://a/v1", timeout_s=5)
    assert model_identity(a) == model_identity(ModelConfig(name="m", base_url="http://b/v1", max_retries=9))
    assert model_identity(a) != model_identity(ModelConfig(name="m", base_url="http://a/v1", temperature=0.2))
    assert model_identity(a) != model_identity(ModelConfig(name="other", base_url="http://a/v1"))


# Keys computed before backends declared their own options (device, dtype, script, adapter were
# shared settings then): the same configs must give the same keys, or resuming an older run dir
# would pay again for every response its store holds.
PINNED_KEYS = [
    (dict(name="m", base_url="http://127.0.0.1:8000/v1", batch_discount=0.3, connect_timeout_s=3),
     "2a95c837280c2a6d463310d8bdd2c05000000001"),
    (dict(provider="transformers", name="tiny", device="cpu", dtype="float32", adapter="/a", batch_size=4),
     "61607acb8753865525b8bc9cc3fc2bac00000001"),
    (dict(provider="fake", script=["Answer: A", "Answer: B"], temperature=0.0, seed=7),
     "f890be5e582ba3c083bab8611a77eca300000001"),
]


@pytest.mark.parametrize("settings,key", PINNED_KEYS)
def test_store_keys_of_existing_configs_do_not_change(settings, key):
    from robustft.backends.store import identity_digest, request_digest, response_key

    identity = identity_digest(model_identity(ModelConfig(**settings)))
    assert response_key(request_digest(identity, [{"role": "user", "content": "What is 2+2?"}]), 1).hex() == key


@pytest.mark.parametrize("gen", [
    Generation("Some thoughts.\nAnswer: B", [-0.5, -0.25, -0.125], ["Some thoughts.", "\nAnswer:", " B"], 12, 3,
               [0.1, 0.2, 0.3]),
    Generation("ab", [-1.0, -2.0], ["a\ufffd", "b"], 1, 2),  # tokens that do not join back to the text
    Generation("no logprobs", None, None, 0, 0),
])
def test_stored_generations_come_back_exactly(gen):
    back = decode_generation(encode_generation(gen))
    assert back.text == gen.text and back.tokens == gen.tokens
    assert back.prompt_tokens == gen.prompt_tokens and back.completion_tokens == gen.completion_tokens
    assert back.token_logprobs == (None if gen.token_logprobs is None else pytest.approx(gen.token_logprobs, rel=1e-6))
    assert back.token_entropies == (None if gen.token_entropies is None else pytest.approx(gen.token_entropies))
    # What a fresh call uses is what a replay will read: identical, bit for bit.
    assert decode_generation(encode_generation(back)) == back


def test_store_hits_take_no_concurrency_slot_and_the_limit_holds(tmp_path):
    cfg = ModelConfig(provider="fake", name="m")
    state = {"now": 0, "max": 0}

    class Slow:
        name = "slow"

        async def generate(self, messages):
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            state["now"] -= 1
            return Generation(f"Answer: {messages[0]['content']}")

    calls = calls_over(ResponseStore(tmp_path / "r.sqlite"), cfg, Slow(), concurrency=3)

    async def many():
        return await asyncio.gather(*(calls.call(cfg, [{"role": "user", "content": str(i)}]) for i in range(20)))

    assert [g.text for g in asyncio.run(many())] == [f"Answer: {i}" for i in range(20)]
    assert state["max"] == 3
