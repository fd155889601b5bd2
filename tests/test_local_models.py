"""The in-process backends (robustft.backends.transformers, robustft.backends.vllm) on a tiny random Llama built offline."""

from __future__ import annotations

import asyncio
import shutil
import sys
import threading

import pytest
import torch

from robustft.backends.transformers import TransformersChatModel
from robustft.backends.vllm import VLLMChatModel
from robustft.backends.registry import build_chat_model
from robustft.config import ModelConfig
from robustft.errors import ConfigError
from tiny_model import build_tiny_model, fingerprint

QUESTIONS = ["What is 2 + 3?", "Which option is correct? A. one B. two", "Reflect on the answer.",
             "The capital of France is", "Answer with a letter.", "0 1 2 3 4 5 6 7 8 9",
             "Let's think step by step about a long question with many words in it.", "Hi"]


def chat_model(model_dir, **settings) -> TransformersChatModel:
    settings = {"temperature": 0.0, "max_tokens": 16, **settings}
    return TransformersChatModel(ModelConfig(provider="transformers", name=str(model_dir), **settings))


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def spy_generate(chat: TransformersChatModel, monkeypatch) -> list[dict]:
    """Record every `model.generate` call (its inputs and output sequences) during the test."""
    calls: list[dict] = []
    original = chat._model.generate

    def generate(*args, **kwargs):
        out = original(*args, **kwargs)
        calls.append({"input_ids": kwargs["input_ids"], "sequences": out.sequences})
        return out

    monkeypatch.setattr(chat._model, "generate", generate)
    return calls


def rescore(chat: TransformersChatModel, call: dict, row: int, n_tokens: int) -> list[float]:
    """Log-probabilities of a row's generated tokens from one plain forward pass, without padding."""
    prompt = call["input_ids"][row][call["input_ids"][row] != chat._pad_id].tolist()
    completion = call["sequences"][row, call["input_ids"].shape[1]:][:n_tokens].tolist()
    with torch.no_grad():
        logits = chat._model(torch.tensor([prompt + completion])).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    return [logprobs[len(prompt) - 1 + k, token].item() for k, token in enumerate(completion)]


def test_build_tiny_model_is_reproducible_and_cached(tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    again = build_tiny_model(tmp_path / "again")
    assert fingerprint(again) == fingerprint(tiny_model_dir)
    assert fingerprint(build_tiny_model(tmp_path / "other", seed=1)) != fingerprint(again)

    weights = again / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    assert build_tiny_model(again) == again and weights.stat().st_mtime_ns == stamp
    words = build_tiny_model(tmp_path / "words", vocab_texts=["quokka zebra quokka zebra"])
    assert fingerprint(words) != fingerprint(again)

    tokenizer = AutoTokenizer.from_pretrained(again)
    model = AutoModelForCausalLM.from_pretrained(again)
    assert model.config.num_hidden_layers == 2 and model.config.vocab_size == len(tokenizer)
    prompt = tokenizer.apply_chat_template(user("Answer: B"), tokenize=False, add_generation_prompt=True)
    assert prompt == "<s><|user|>\nAnswer: B\n<|assistant|>\n"
    assert tokenizer.decode(tokenizer("Answer: C 42").input_ids, skip_special_tokens=True) == "Answer: C 42"

    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="does not hold a tiny model"):
        build_tiny_model(tmp_path / "foreign")


async def test_generate_returns_text_and_logprobs(tiny_model_dir):
    chat = chat_model(tiny_model_dir, temperature=1.0, seed=0)
    result = await chat.generate(user("What is 2 + 3?"))
    assert chat.name == str(tiny_model_dir)
    assert isinstance(result.text, str) and result.text
    assert 0 < result.completion_tokens <= 16
    assert len(result.token_logprobs) == len(result.tokens) == result.completion_tokens
    assert all(lp <= 0 for lp in result.token_logprobs)
    assert result.prompt_tokens > 5
    assert "".join(result.tokens).replace("\ufffd", "") == result.text.replace("\ufffd", "")


@pytest.mark.parametrize("temperature", [1.0, 0.5, 0.0])
async def test_logprobs_are_those_of_the_models_distribution(tiny_model_dir, temperature, monkeypatch):
    """At any temperature the logprobs are the untempered model's (as vLLM reports by default)."""
    chat = chat_model(tiny_model_dir, temperature=temperature, seed=3)
    calls = spy_generate(chat, monkeypatch)
    result = await chat.generate(user("Which option is correct? A. one B. two"))
    expected = rescore(chat, calls[0], 0, result.completion_tokens)
    assert result.token_logprobs == pytest.approx(expected, abs=1e-4)


async def test_greedy_is_deterministic_and_seeded_sampling_reproducible(tiny_model_dir):
    greedy = chat_model(tiny_model_dir)
    first, second = [await greedy.generate(user("Hi")) for _ in range(2)]
    assert first == second

    sampled = [await chat_model(tiny_model_dir, temperature=1.0, seed=7).generate(user("Hi")) for _ in range(2)]
    assert sampled[0] == sampled[1]
    other_seed = await chat_model(tiny_model_dir, temperature=1.0, seed=8).generate(user("Hi"))
    assert other_seed.text != sampled[0].text


def make_some_answers_stop_early(chat: TransformersChatModel, completions: list[list[int]]) -> None:
    """Rewire the output layer so the model says end-of-sequence where it would have said a token
    that occurs in some greedy completions but not in others: answers of different lengths."""
    counts = [set(c) for c in completions]
    token = next(t for t in completions[0] if not all(t in c for c in counts) and t not in chat._eos_ids)
    (eos,) = chat._eos_ids
    with torch.no_grad():
        head = chat._model.get_output_embeddings().weight
        head[eos] = head[token] * 1.001


async def test_concurrent_calls_are_batched_with_left_padding(tiny_model_dir, tmp_path, monkeypatch):
    own_copy = shutil.copytree(tiny_model_dir, tmp_path / "tiny")  # its weights get edited below
    chat = chat_model(own_copy, batch_size=8)
    calls = spy_generate(chat, monkeypatch)
    for question in QUESTIONS:
        await chat.generate(user(question))
    make_some_answers_stop_early(chat, [c["sequences"][0, c["input_ids"].shape[1]:].tolist() for c in calls])

    alone = [await chat.generate(user(q)) for q in QUESTIONS]
    lengths = {r.completion_tokens for r in alone}
    assert min(lengths) < 16 and 16 in lengths, "the test needs answers of different lengths"
    assert len({r.prompt_tokens for r in alone}) > 1, "the test needs prompts of different lengths"

    calls.clear()
    together = await asyncio.gather(*(chat.generate(user(q)) for q in QUESTIONS))
    assert len(calls) == 1 < len(QUESTIONS)
    assert calls[0]["input_ids"].shape[0] == len(QUESTIONS)
    for single, batched in zip(alone, together):
        assert batched.text == single.text
        assert batched.tokens == single.tokens
        assert (batched.prompt_tokens, batched.completion_tokens) == (single.prompt_tokens, single.completion_tokens)
        assert batched.token_logprobs == pytest.approx(single.token_logprobs, abs=1e-3)


async def test_batches_are_capped_at_batch_size(tiny_model_dir, monkeypatch):
    chat = chat_model(tiny_model_dir, batch_size=3, max_tokens=4)
    calls = spy_generate(chat, monkeypatch)
    results = await asyncio.gather(*(chat.generate(user(q)) for q in QUESTIONS))
    assert [c["input_ids"].shape[0] for c in calls] == [3, 3, 2]
    assert chat.batch_calls == 3 and len(results) == len(QUESTIONS)


def test_calls_from_several_event_loops_and_threads(tiny_model_dir):
    chat = chat_model(tiny_model_dir, max_tokens=6)
    expected = [asyncio.run(chat.generate(user(q))) for q in QUESTIONS[:4]]
    results: dict[int, list] = {}

    def worker(k: int) -> None:
        async def main():
            return await asyncio.gather(*(chat.generate(user(q)) for q in QUESTIONS[:4]))
        results[k] = asyncio.run(main())

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(results) == [0, 1, 2]
    for got in results.values():
        assert [r.text for r in got] == [r.text for r in expected]


async def test_cancelled_and_failing_requests_leave_the_rest_working(tiny_model_dir, monkeypatch):
    chat = chat_model(tiny_model_dir, max_tokens=4)
    tasks = [asyncio.create_task(chat.generate(user(q))) for q in QUESTIONS[:3]]
    await asyncio.sleep(0)  # all three are queued
    tasks[1].cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(done[1], asyncio.CancelledError) and done[0].text and done[2].text

    def broken(*args, **kwargs):
        raise RuntimeError("device lost")

    with monkeypatch.context() as patch:
        patch.setattr(chat._model, "generate", broken)
        failed = await asyncio.gather(*(chat.generate(user(q)) for q in QUESTIONS[:2]), return_exceptions=True)
    assert all(isinstance(e, RuntimeError) and "device lost" in str(e) for e in failed)
    assert (await chat.generate(user("Hi"))).text


async def test_plain_transcript_without_chat_template(tiny_model_dir, monkeypatch):
    chat = chat_model(tiny_model_dir, max_tokens=2)
    monkeypatch.setattr(chat._tokenizer, "chat_template", None)
    calls = spy_generate(chat, monkeypatch)
    await chat.generate([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
    prompt = chat._tokenizer.decode(calls[0]["input_ids"][0], skip_special_tokens=True)
    assert prompt == "system: Be brief.\nuser: Hi\nassistant:"


async def test_models_of_the_same_weights_share_them(tiny_model_dir):
    greedy, sampled = chat_model(tiny_model_dir), chat_model(tiny_model_dir, temperature=1.0, seed=1)
    assert greedy._model is sampled._model
    assert chat_model(tiny_model_dir, dtype="bfloat16")._model is not greedy._model
    results = await asyncio.gather(greedy.generate(user("Hi")), sampled.generate(user("Hi")))
    assert results[0] == await greedy.generate(user("Hi"))
    assert results[1] == await sampled.generate(user("Hi"))


def test_missing_path_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        chat_model(tmp_path / "no-such-model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="config.json"):
        chat_model(tmp_path / "empty")
    with pytest.raises(ConfigError, match="model.name is empty"):
        TransformersChatModel(ModelConfig(provider="transformers"))


def test_unreachable_hub_name_is_a_config_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConfigError, match="hub"):
        chat_model("robustft-tests/no-such-model")


def test_vllm_without_the_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    with pytest.raises(ConfigError, match=r"pip install -e '\.\[vllm\]'"):
        VLLMChatModel(ModelConfig(provider="vllm", name="any"))
    with pytest.raises(ConfigError, match="needs the vllm package and a GPU"):
        build_chat_model(ModelConfig(provider="vllm", name="any"))


async def test_build_chat_model_makes_a_transformers_backend(tiny_model_dir):
    chat = build_chat_model(ModelConfig(provider="transformers", name=str(tiny_model_dir), max_tokens=3))
    assert isinstance(chat, TransformersChatModel)
    result = await chat.generate(user("Answer: A"))
    assert 0 < result.completion_tokens <= 3
