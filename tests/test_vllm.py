"""The vLLM engine backend without vLLM (it needs CUDA): its output objects are rebuilt here with
vLLM's own field names and shapes (vllm/outputs.py `RequestOutput`, `CompletionOutput`;
vllm/logprobs.py `Logprob`, `FlatLogprobs`), and a stand-in `vllm` module checks the wiring."""

from __future__ import annotations

import asyncio
import math
import sys
import types
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from robustft.backends.registry import build_chat_model
from robustft.backends.vllm import VLLMChatModel, generation_from_output
from robustft.config import ModelConfig


@dataclass
class Logprob:
    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: Sequence[int]
    cumulative_logprob: float | None
    logprobs: Any
    routed_experts: Any = None
    finish_reason: str | None = None
    stop_reason: int | str | None = None
    lora_request: Any = None
    kv_transfer_params: dict | None = None


class RequestOutput:
    def __init__(self, request_id, prompt, prompt_token_ids, prompt_logprobs, outputs, finished, metrics=None,
                 lora_request=None, encoder_prompt=None, encoder_prompt_token_ids=None, num_cached_tokens=None):
        self.request_id, self.prompt, self.prompt_token_ids = request_id, prompt, prompt_token_ids
        self.prompt_logprobs, self.outputs, self.finished = prompt_logprobs, outputs, finished
        self.metrics, self.num_cached_tokens = metrics, num_cached_tokens


@dataclass
class FlatLogprobs(Sequence):
    """vLLM's flat container: one run of columns, positions delimited by start/end indices."""

    start_indices: list[int] = field(default_factory=list)
    end_indices: list[int] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    ranks: list[int | None] = field(default_factory=list)
    decoded_tokens: list[str | None] = field(default_factory=list)

    def append(self, position: dict[int, Logprob] | None) -> None:
        self.start_indices.append(len(self.logprobs))
        for token_id, lp in (position or {}).items():
            self.token_ids.append(token_id)
            self.logprobs.append(lp.logprob)
            self.ranks.append(lp.rank)
            self.decoded_tokens.append(lp.decoded_token)
        self.end_indices.append(len(self.logprobs))

    def __len__(self) -> int:
        return len(self.start_indices)

    def __getitem__(self, index):
        return {self.token_ids[i]: Logprob(self.logprobs[i], self.ranks[i], self.decoded_tokens[i])
                for i in range(self.start_indices[index], self.end_indices[index])}

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]


L = math.log
# logprobs=2 in SamplingParams: each position holds the sampled token (first, with its rank) and the
# two most likely ones; when the sampled token is among them the mapping has 2 entries, else 3.
STEPS = [
    {11: Logprob(L(0.5), 1, "Answer"), 13: Logprob(L(0.25), 2, "The")},
    {12: Logprob(L(0.9), 1, ":"), 15: Logprob(L(0.05), 2, " is")},
    {2: Logprob(L(0.1), 4, " A"), 5: Logprob(L(0.6), 1, " B"), 6: Logprob(L(0.2), 2, " C")},
]
TOKEN_IDS = [11, 12, 2]


def request_output(logprobs: Any, text: str = "Answer: A") -> RequestOutput:
    completion = CompletionOutput(index=0, text=text, token_ids=TOKEN_IDS, cumulative_logprob=L(0.5 * 0.9 * 0.1),
                                  logprobs=logprobs, finish_reason="stop")
    return RequestOutput("req-1", None, list(range(40)), None, [completion], finished=True)


def entropy(*probs: float) -> float:
    rest = 1 - sum(probs)
    return -sum(p * math.log(p) for p in (*probs, rest) if p > 0)


def test_conversion_keeps_text_logprobs_tokens_counts_and_top_k_entropies():
    gen = generation_from_output(request_output(STEPS), entropies=True)
    assert gen.text == "Answer: A" and gen.tokens == ["Answer", ":", " A"]
    assert gen.token_logprobs == pytest.approx([L(0.5), L(0.9), L(0.1)])
    assert (gen.prompt_tokens, gen.completion_tokens) == (40, 3)
    assert gen.token_entropies == pytest.approx([entropy(0.5, 0.25), entropy(0.9, 0.05), entropy(0.1, 0.6, 0.2)])
    assert gen.token_entropies[0] == pytest.approx(-(0.5 * L(0.5) + 2 * 0.25 * L(0.25)))


def test_flat_logprobs_convert_exactly_as_the_list_of_dicts():
    flat = FlatLogprobs()
    for step in STEPS:
        flat.append(step)
    assert generation_from_output(request_output(flat), entropies=True) == \
        generation_from_output(request_output(STEPS), entropies=True)


def test_without_logprobs_or_alternatives():
    gen = generation_from_output(request_output(None))
    assert gen.token_logprobs is gen.tokens is gen.token_entropies is None and gen.completion_tokens == 3
    assert generation_from_output(request_output(STEPS)).token_entropies is None  # not asked for


@pytest.fixture
def fake_vllm(monkeypatch):
    """A stand-in for the `vllm` package: records what the backend asks of it."""
    module = types.ModuleType("vllm")
    calls: dict[str, list] = {"llm": [], "params": [], "chat": []}

    class SamplingParams:
        def __init__(self, **kwargs):
            calls["params"].append(kwargs)

    class LLM:
        def __init__(self, **kwargs):
            calls["llm"].append(kwargs)

        def chat(self, conversations, sampling_params=None, use_tqdm=True):
            calls["chat"].append(conversations)
            return [request_output(STEPS, text=conv[-1]["content"]) for conv in conversations]

    module.LLM, module.SamplingParams = LLM, SamplingParams
    monkeypatch.setitem(sys.modules, "vllm", module)
    return calls


def test_the_backend_asks_vllm_for_top_k_logprobs_and_batches_concurrent_requests(fake_vllm):
    config = ModelConfig(provider="vllm", name="org/model", dtype="bfloat16", seed=3, temperature=0.0,
                         max_tokens=16, top_logprobs=2, batch_size=8)
    model = build_chat_model(config)
    assert isinstance(model, VLLMChatModel)
    assert fake_vllm["llm"] == [{"model": "org/model", "dtype": "bfloat16", "seed": 3}]
    assert fake_vllm["params"] == [{"temperature": 0.0, "max_tokens": 16, "logprobs": 2, "seed": 3}]

    async def both():
        return await asyncio.gather(*(model.generate([{"role": "user", "content": f"q{i}"}]) for i in range(2)))
    try:
        gens = asyncio.run(both())
    finally:
        model.close()
    assert [g.text for g in gens] == ["q0", "q1"] and len(fake_vllm["chat"]) == 1  # one engine call
    assert all(g.token_entropies and len(g.token_entropies) == 3 for g in gens)


def test_logprobs_off_and_no_alternatives(fake_vllm):
    VLLMChatModel(ModelConfig(provider="vllm", name="m", logprobs=False)).close()
    VLLMChatModel(ModelConfig(provider="vllm", name="m", top_logprobs=0)).close()
    assert [p["logprobs"] for p in fake_vllm["params"]] == [None, 0]
