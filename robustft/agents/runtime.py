"""What every agent node shares: its role's model, the prompts, retries, and the node record.

`AgentRuntime.ask` is the one path from a node to a model: render the prompt, call the model with
retries on transport failures, re-ask when the reply holds no usable answer, score the reply, and
return a `NodeRecord` dict that goes into the sample's state as it is (and so into samples.jsonl).
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any, Callable

from ..answers import extract_answer
from ..config import RobustFTConfig
from ..entropy import response_score
from ..errors import ModelCallError
from ..prompts import PromptLibrary, prompt_values
from ..retrieval import Example
from ..backends.base import ChatBackend as ChatModel, Generation
from ..backends.registry import ModelPool

# 4xx errors other than these are the request's own fault (bad model name, bad key, prompt too
# long): sending it again cannot help.
_RETRYABLE_4XX = {408, 409, 425, 429}


def is_retryable(exc: BaseException) -> bool:
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and 400 <= status < 500:
        return status in _RETRYABLE_4XX
    return True


def describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:500] if text else type(exc).__name__


@dataclass
class AgentRuntime:
    config: RobustFTConfig
    task: str
    pool: ModelPool
    prompts: PromptLibrary
    examples: dict[str, list[Example]] = field(default_factory=dict)
    backoff_s: float = 0.5

    def model(self, role: str) -> ChatModel:
        return self.pool.get(self.config.model_for(role))

    def prompt_values(self, state: dict) -> dict[str, Any]:
        return prompt_values(state["question"], state.get("options"), self.task, self.config.data.instruction)

    async def generate(self, role: str, prompt: str) -> Generation:
        """One model call, retried with exponential backoff and jitter on retryable failures."""
        cfg = self.config.model_for(role)
        model = self.model(role)
        messages = [{"role": "user", "content": prompt}]
        for attempt in range(cfg.max_retries + 1):
            try:
                return await asyncio.wait_for(model.generate(messages), timeout=cfg.timeout_s * 1.5)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - every backend raises its own types
                if attempt == cfg.max_retries or not is_retryable(exc):
                    tries = f"after {attempt + 1} attempt{'s' if attempt else ''}"
                    raise ModelCallError(f"{role} model call failed {tries}: {describe(exc)}") from exc
                await asyncio.sleep(self.backoff_s * (2 ** attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    async def ask(self, role: str, prompt_name: str, state: dict, *,
                  parse: Callable[[str], str | None] | None = None, **extra: Any) -> dict[str, Any]:
        """Ask `role` with template `prompt_name`; re-ask while no answer can be read from the reply.

        Raises ModelCallError when the model keeps failing; a reply without an answer is not an
        exception: the record carries answer None and an error note, and the graph decides.
        """
        prompt = self.prompts.render(prompt_name, **self.prompt_values(state), **extra)
        parse = parse or (lambda text: extract_answer(text, self.task, state.get("options")))
        record: dict[str, Any] = {"prompt": prompt, "response": None, "answer": None, "score": None,
                                  "attempts": 0, "prompt_tokens": 0, "completion_tokens": 0, "error": None}
        for _ in range(self.config.denoise.parse_retries + 1):
            gen = await self.generate(role, prompt)
            record["attempts"] += 1
            record["prompt_tokens"] += gen.prompt_tokens
            record["completion_tokens"] += gen.completion_tokens
            record["response"] = gen.text
            record["answer"] = parse(gen.text)
            record["score"] = response_score(self.config.denoise.score, gen)
            if record["answer"] is not None:
                break
        if record["answer"] is None:
            n = record["attempts"]
            record["error"] = f"no usable 'Answer:' line in the response ({n} attempt{'s' if n > 1 else ''})"
        return record


def failure(node: str, exc: ModelCallError) -> dict[str, Any]:
    """The state update of a node whose model kept failing: the sample ends as failed."""
    return {"nodes": {node: {"error": str(exc)}}, "status": "failed", "error": str(exc)}
