"""A scripted backend for tests: replies in turn or from a function, and records every prompt."""

from __future__ import annotations

from typing import Callable, Sequence

from pydantic import Field

from ..config import ModelConfig
from .base import BackendOptions, Generation, Messages, options_of


class FakeChatModel:
    """Scripted model for tests: replies from a list (in turn) or a function of the messages.

    Records every message list it receives in `.calls`, so tests can check what each node sent.
    A reply that is an Exception instance is raised instead of returned, to script failures.
    """

    class Options(BackendOptions):
        script: list[str] | None = Field(None, description="Responses returned in turn (tests). None: \"Answer: A\".")

    def __init__(self, script: Sequence[str | Generation | Exception] | Callable[[Messages], str | Generation] = (),
                 name: str = "fake", logprob: float = -0.1):
        self.name = name
        self.calls: list[Messages] = []
        self._script = script if callable(script) else list(script)
        self._index = 0
        self._logprob = logprob

    @classmethod
    def from_config(cls, config: ModelConfig) -> "FakeChatModel":
        """Provider `fake`: `model.script` in turn (default: always "Answer: A")."""
        return cls(options_of(config, cls.Options).script or ["Answer: A"], name=config.name or "fake")

    async def generate(self, messages: Messages) -> Generation:
        self.calls.append(messages)
        if callable(self._script):
            reply = self._script(messages)
        else:
            if not self._script:
                raise RuntimeError("FakeChatModel has no scripted replies")
            reply = self._script[self._index % len(self._script)]
            self._index += 1
        if isinstance(reply, Exception):
            raise reply
        if isinstance(reply, Generation):
            return reply
        tokens = reply.split()
        return Generation(text=reply, token_logprobs=[self._logprob] * len(tokens), tokens=tokens,
                          prompt_tokens=sum(len(m["content"].split()) for m in messages),
                          completion_tokens=len(tokens))
