"""How the micro-batcher forms batches, and what batching must not change: the transformers
backend's text, logprobs and entropies under greedy decoding, on the tiny random Llama."""

from __future__ import annotations

import asyncio
import math
import time

import pytest
import torch

from robustft.backends import batching
from robustft.backends.batching import _MicroBatchingModel
from robustft.backends.base import Generation
from robustft.backends.transformers import TransformersChatModel, cpu_generation_threads
from robustft.config import ModelConfig

PROMPTS = ["Hi", "What is 2 + 3?", "Which option is correct? A. one B. two C. three D. four",
           "Let's think step by step about a long question with many words in it, then answer.",
           "0 1 2 3 4 5 6 7 8 9", "The capital of France is", "Reflect on the answer.", "Answer with a letter."]


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def chat_model(model_dir, **settings) -> TransformersChatModel:
    settings = {"temperature": 0.0, "max_tokens": 12, **settings}
    return TransformersChatModel(ModelConfig(provider="transformers", name=str(model_dir), **settings))


class Echo(_MicroBatchingModel):
    """A batching model without a model: replies with the prompt, after `seconds` per batch."""

    name = "echo"

    def __init__(self, batch_size: int, seconds: float = 0.0) -> None:
        super().__init__(batch_size)
        self.seconds = seconds

    def _generate_batch(self, batch):
        time.sleep(self.seconds)
        return [Generation(text=messages[-1]["content"]) for messages in batch]


async def callers(model, n_callers: int, calls_each: int) -> list[list[str]]:
    """`n_callers` tasks, each making `calls_each` calls one after another (as a run's samples do)."""
    async def caller(k: int) -> list[str]:
        return [(await model.generate(user(f"{k}-{i}"))).text for i in range(calls_each)]

    return await asyncio.gather(*(caller(k) for k in range(n_callers)))


async def test_callers_that_come_back_fill_each_batch(monkeypatch):
    """Sequential callers return a moment after their batch; the worker waits for them (here without
    a time limit), so every batch is full, and each caller gets its own replies in order."""
    monkeypatch.setattr(batching, "FILL_WAIT_FRACTION", 1e6)
    model = Echo(batch_size=6)
    try:
        replies = await callers(model, n_callers=6, calls_each=4)
        assert replies == [[f"{k}-{i}" for i in range(4)] for k in range(6)]
        assert model.batch_sizes == {6: 4}
    finally:
        model.close()


async def test_batches_cap_at_batch_size_and_a_lone_caller_is_never_held(monkeypatch):
    monkeypatch.setattr(batching, "FILL_WAIT_FRACTION", 1e6)
    model = Echo(batch_size=4)
    try:
        assert len(await callers(model, n_callers=10, calls_each=2)) == 10
        assert max(model.batch_sizes) == 4 and sum(s * n for s, n in model.batch_sizes.items()) == 20
        # One caller in flight: nothing else is coming, so even an unbounded wait never starts.
        lone = Echo(batch_size=4)
        try:
            assert await callers(lone, n_callers=1, calls_each=5) == [[f"0-{i}" for i in range(5)]]
            assert lone.batch_sizes == {1: 5}
        finally:
            lone.close()
    finally:
        model.close()


async def test_the_wait_for_callers_that_do_not_come_back_is_bounded():
    """After a batch of 4, a single new request waits at most half a batch's time for company."""
    model = Echo(batch_size=4, seconds=0.2)
    try:
        await asyncio.gather(*(model.generate(user(str(k))) for k in range(4)))
        started = time.monotonic()
        assert (await model.generate(user("alone"))).text == "alone"
        assert time.monotonic() - started < 5  # unbounded, it would never return
        assert model.batch_sizes == {4: 1, 1: 1}
    finally:
        model.close()


def test_close_does_not_wait_for_a_batch_to_fill(monkeypatch):
    monkeypatch.setattr(batching, "FILL_WAIT_FRACTION", 1e6)
    model = Echo(batch_size=4, seconds=0.01)

    async def main():
        await asyncio.gather(*(model.generate(user(str(k))) for k in range(4)))

    asyncio.run(main())  # the worker now waits for 4 callers that never come back
    model.close()
    with pytest.raises(RuntimeError, match="after close"):
        asyncio.run(model.generate(user("late")))


def alone_and_batched(chat: TransformersChatModel) -> tuple[list[Generation], list[Generation]]:
    async def together():
        return await asyncio.gather(*(chat.generate(user(p)) for p in PROMPTS))

    alone = [asyncio.run(chat.generate(user(p))) for p in PROMPTS]
    before = chat.batch_calls
    batched = asyncio.run(together())
    assert chat.batch_calls == before + 1, "all prompts should have been generated in one batch"
    return alone, batched


def test_batched_greedy_generation_equals_alone_including_entropies(tiny_model_dir):
    chat = chat_model(tiny_model_dir, batch_size=len(PROMPTS))
    try:
        alone, batched = alone_and_batched(chat)
    finally:
        chat.close()
    assert len({g.prompt_tokens for g in alone}) >= 6, "the test needs prompts of different lengths"
    for single, together in zip(alone, batched):
        assert together.text == single.text and together.tokens == single.tokens
        assert together.completion_tokens == single.completion_tokens == len(single.token_entropies)
        assert together.token_logprobs == pytest.approx(single.token_logprobs, abs=1e-4)
        assert together.token_entropies == pytest.approx(single.token_entropies, abs=1e-4)


def step_distributions(chat: TransformersChatModel, prompt: list[int], completion: list[int]):
    """Per generated step, the model's log-softmax over the vocabulary, from one plain forward pass."""
    with torch.no_grad():
        logits = chat._model(torch.tensor([prompt + completion])).logits[0].float()
    return torch.log_softmax(logits, dim=-1)[len(prompt) - 1:len(prompt) - 1 + len(completion)]


@pytest.mark.parametrize("temperature", [0.0, 0.7])
async def test_entropies_are_those_of_the_untempered_distribution(tiny_model_dir, temperature, monkeypatch):
    """Each step's entropy is -sum p log p over the whole vocabulary of the raw (untempered) logits."""
    chat = chat_model(tiny_model_dir, temperature=temperature, seed=5, max_tokens=8)
    sequences = []
    original = chat._model.generate

    def generate(*args, **kwargs):
        out = original(*args, **kwargs)
        sequences.append(out.sequences[0, kwargs["input_ids"].shape[1]:].tolist())
        return out

    monkeypatch.setattr(chat._model, "generate", generate)
    try:
        messages = user("Which option is correct? A. one B. two")
        result = await chat.generate(messages)
    finally:
        chat.close()
    logp = step_distributions(chat, chat._encode(messages), sequences[0][:result.completion_tokens])
    expected = [-(row.exp() * row).sum().item() for row in logp]
    assert result.token_entropies == pytest.approx(expected, abs=1e-4)
    assert all(0 < h <= math.log(len(chat._tokenizer)) + 1e-4 for h in result.token_entropies)
    assert len(set(round(h, 4) for h in result.token_entropies)) > 1


async def test_no_entropies_or_logprobs_when_logprobs_are_off(tiny_model_dir):
    chat = chat_model(tiny_model_dir, logprobs=False, max_tokens=4)
    try:
        result = await chat.generate(user("Hi"))
    finally:
        chat.close()
    assert result.token_logprobs is None and result.token_entropies is None and result.completion_tokens > 0


def test_a_batch_that_runs_out_of_memory_is_generated_in_halves(tiny_model_dir, monkeypatch):
    chat = chat_model(tiny_model_dir, batch_size=len(PROMPTS))
    try:
        alone = [asyncio.run(chat.generate(user(p))) for p in PROMPTS]
        sizes: list[int] = []
        original = chat._model.generate

        def generate(*args, **kwargs):
            sizes.append(kwargs["input_ids"].shape[0])
            if kwargs["input_ids"].shape[0] > 3:
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
            return original(*args, **kwargs)

        monkeypatch.setattr(chat._model, "generate", generate)

        async def together():
            return await asyncio.gather(*(chat.generate(user(p)) for p in PROMPTS))

        batched = asyncio.run(together())
    finally:
        chat.close()
    assert sizes == [8, 4, 2, 2, 4, 2, 2]
    assert [g.text for g in batched] == [g.text for g in alone]
    for single, together in zip(alone, batched):
        assert together.token_logprobs == pytest.approx(single.token_logprobs, abs=1e-4)


def test_cpu_generation_leaves_a_core_to_the_event_loop(tiny_model_dir, monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert cpu_generation_threads() == 1
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0}, raising=False)
    assert cpu_generation_threads() == 1
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(512)), raising=False)
    assert cpu_generation_threads() == torch.get_num_threads()  # never more than torch's own setting

    monkeypatch.undo()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    chat = chat_model(tiny_model_dir, device="cpu", max_tokens=2)
    try:
        asyncio.run(chat.generate(user("Hi")))
        assert chat._executor.submit(torch.get_num_threads).result() == cpu_generation_threads()
    finally:
        chat.close()
