"""Model backends and the shared call path: the OpenAI-compatible backend over real HTTP, retries."""

from __future__ import annotations

import asyncio

import pytest

from robustft.backends.fake import FakeChatModel
from robustft.backends.openai import OpenAIChatModel
from robustft.backends.registry import ModelPool, build_chat_model
from robustft.agents.calls import ModelCalls
from robustft.backends.retry import is_retryable
from robustft.agents.runtime import AgentRuntime
from robustft.config import ModelConfig, load_config
from robustft.demo import DEMO_GOLD
from robustft.errors import ConfigError, ModelCallError
from robustft.prompts import PromptLibrary
from robustft.sim import SimServer



@pytest.fixture(scope="module")
def flaky_server():
    with SimServer(DEMO_GOLD, accuracy=1.0, error_rate=0.5, seed=3) as sim:
        yield sim


def demo_prompt() -> str:
    import csv

    with open(DEMO_GOLD, newline="", encoding="utf-8") as f:
        row = next(csv.DictReader(f))
    return PromptLibrary().question_prompt(row["question"], __import__("json").loads(row["options"]), "multiple_choice")


def test_openai_backend_keeps_token_logprobs_and_usage():
    with SimServer(DEMO_GOLD, accuracy=1.0) as sim:
        model = OpenAIChatModel(ModelConfig(name="sim", base_url=sim.base_url))
        gen = asyncio.run(model.generate([{"role": "user", "content": demo_prompt()}]))
    assert gen.text.strip().startswith("Answer: ")
    assert gen.token_logprobs and all(lp <= 0 for lp in gen.token_logprobs)
    assert len(gen.token_logprobs) == len(gen.tokens) == gen.completion_tokens
    assert "".join(gen.tokens) == gen.text
    assert gen.prompt_tokens > 20


def test_openai_backend_needs_a_name_and_url():
    with pytest.raises(ConfigError, match="model.base_url"):
        build_chat_model(ModelConfig(name="m"))
    with pytest.raises(ConfigError, match="model.name is empty"):
        build_chat_model(ModelConfig(base_url="http://127.0.0.1:9/v1"))


def test_server_errors_are_retried_until_they_succeed(flaky_server):
    config = load_config(None, {"model": {"name": "sim", "base_url": flaky_server.base_url, "max_retries": 8}})
    pool = ModelPool()
    rt = AgentRuntime(config=config, task="multiple_choice", pool=pool, prompts=PromptLibrary(),
                      calls=ModelCalls(pool, None, concurrency=12, backoff_s=0.01))
    before_errors = flaky_server.errors

    async def many():
        return await asyncio.gather(*(rt.generate("base", demo_prompt() + f"\n(variant {i})") for i in range(12)))

    results = asyncio.run(many())
    assert all(r.text for r in results)
    assert flaky_server.errors > before_errors  # failures happened and were absorbed


class Status(Exception):
    def __init__(self, code):
        super().__init__(f"HTTP {code}")
        self.status_code = code


@pytest.mark.parametrize("code,retry", [(400, False), (401, False), (404, False), (408, True), (429, True),
                                        (500, True), (503, True)])
def test_which_failures_are_retried(code, retry):
    assert is_retryable(Status(code)) is retry


def test_a_request_that_cannot_succeed_is_not_repeated():
    config = load_config(None, {"model": {"provider": "fake", "max_retries": 5}})
    fake = FakeChatModel([Status(404)])
    pool = ModelPool()
    pool.add(config.model_for("base"), fake)
    rt = AgentRuntime(config=config, task="multiple_choice", pool=pool, prompts=PromptLibrary(),
                      calls=ModelCalls(pool, None, concurrency=1, backoff_s=0))
    with pytest.raises(ModelCallError, match="after 1 attempt: Status: HTTP 404"):
        asyncio.run(rt.generate("base", "hi"))
    assert len(fake.calls) == 1


def test_roles_naming_the_same_model_share_one_backend():
    config = load_config(None, {"model": {"provider": "fake"}, "roles": {"reviewer": {"name": "other"}}})
    pool = ModelPool()
    assert pool.get(config.model_for("base")) is pool.get(config.model_for("context"))
    assert pool.get(config.model_for("base")) is not pool.get(config.model_for("reviewer"))
