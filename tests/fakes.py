"""Scripted experts for graph tests: one FakeChatModel per role, answering by question."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

from robustft.backends.base import Generation
from robustft.backends.fake import FakeChatModel
from robustft.backends.registry import ModelPool
from robustft.config import ROLES, RobustFTConfig, load_config
from robustft.data import Dataset, Sample

QUESTIONS = {  # id -> (question, options, gold)
    f"q{i}": (f"Question number {i}: which option is right for item {i}?", ["alpha", "beta", "gamma", "delta"], "ABCD"[i % 4])
    for i in range(12)
}


def make_dataset(labels: dict[str, str] | None = None, path: Path = Path("inline.csv")) -> Dataset:
    samples = []
    for row, (sid, (question, options, gold)) in enumerate(QUESTIONS.items()):
        label = (labels or {}).get(sid, gold)
        samples.append(Sample(id=sid, question=question, label=label, options=options, row=row, extra={}))
    return Dataset(samples=samples, task="multiple_choice", path=path)


def target_id(messages) -> str:
    """The sample a prompt is about: the question that appears last (context prompts show examples first)."""
    text = "\n".join(m["content"] for m in messages)
    best, best_pos = None, -1
    for sid, (question, _, _) in QUESTIONS.items():
        pos = text.rfind(question)
        if pos > best_pos:
            best, best_pos = sid, pos
    assert best is not None, "prompt shows no known question"
    return best


Reply = Callable[[str, list], "str | Generation | Exception"]


def answering(answer_for: Callable[[str], str], logprob: Callable[[str], float] = lambda sid: -0.1) -> Reply:
    def reply(sid: str, messages):
        text = f"Some thoughts.\nAnswer: {answer_for(sid)}"
        n = len(text.split())
        return Generation(text=text, token_logprobs=[logprob(sid)] * n, tokens=None, prompt_tokens=10, completion_tokens=n)
    return reply


def config_for(tmp_path: Path, **denoise) -> RobustFTConfig:
    roles = {role: {"name": f"fake-{role}"} for role in ROLES}
    return load_config(None, {"model": {"provider": "fake", "name": "fake"}, "roles": roles,
                              "out": str(tmp_path / "run"), "denoise": denoise or None})


def fake_pool(config: RobustFTConfig, replies: dict[str, Reply]) -> tuple[ModelPool, dict[str, FakeChatModel]]:
    pool, fakes = ModelPool(), {}
    for role in ROLES:
        reply = replies.get(role)

        def script(messages, reply=reply, role=role):
            if reply is None:
                raise AssertionError(f"the {role} model was not expected to be called")
            return reply(target_id(messages), messages)

        fakes[role] = FakeChatModel(script, name=f"fake-{role}")
        pool.add(config.model_for(role), fakes[role])
    return pool, fakes


def prompt_text(model: FakeChatModel) -> list[str]:
    return [m[0]["content"] for m in model.calls]


LETTER = re.compile(r"Answer: ([A-D])")
