"""Every prompt the method will use, checked against the values it will receive, before any call.

The templates checked are the dataset's task's (`base_open.jinja` ... for open-ended responses).

A mistake in a late-stage template (context, reviewer, judge, reflection) would otherwise surface
only after the whole detection phase has been paid for. `check_prompts` renders each template in
use with the first sample's real values and representative later-stage values (retrieved
examples, expert answers, an earlier attempt), and also looks at every name a template refers to,
so a value used only in a branch the first sample does not take is caught as well.
`render_first_sample` is what `denoise --dry-run` prints.
"""

from __future__ import annotations

import re
from typing import Any

from jinja2 import meta

from ..answers import format_options
from ..config import RobustFTConfig
from ..data import Dataset, Sample
from ..errors import ConfigError
from ..method import method_of
from . import VALUES_DOC, PromptLibrary, prompt_values, shown_question

_ASKS_FOR_ANSWER = re.compile(r"answer\s*:", re.IGNORECASE)


def prompts_in_use(config: RobustFTConfig, task: str | None = None) -> list[str]:
    """The templates the configured method renders for `task`, in graph order (`Method.prompts`)."""
    return method_of(config, task).prompts


def neighbours(dataset: Dataset, index: int, k: int) -> list[Sample]:
    """k other samples to stand in for the retrieved examples (the sample itself when it is alone)."""
    n = len(dataset.samples)
    others = [dataset.samples[(index + i) % n] for i in range(1, min(k, n - 1) + 1)]
    return others or [dataset.samples[index]]


def stage_values(name: str, sample: Sample, examples: list[Sample], config: RobustFTConfig, task: str,
                 previous: str | None = None) -> dict[str, Any]:
    """The values `name` receives for `sample`; later-stage answers are represented by its label."""
    values = prompt_values(sample.question, sample.options, task, config.data.instruction)
    answer = sample.label
    if name == "reflection":
        values["previous"] = previous if previous is not None else f"Thinking it through step by step.\nAnswer: {answer}"
    elif name == "context":
        values["examples"] = [{"question": shown_question(ex.question, ex.conversation),
                               "options_block": format_options(ex.options) if ex.options else "",
                               "answer": ex.label} for ex in examples]
    elif name == "reviewer":
        first = "Answered directly" if "reasoning" in config.denoise.ablate else "After step-by-step reasoning"
        values.update(first_source=first, reasoning_answer=answer, context_answer=answer)
    elif name == "judge":
        values.update(label=answer, base_answer=answer, reasoning_answer=answer)
    elif name == "claim":
        values.update(claim=answer, label=answer, base_answer=answer, reasoning_answer=answer)
    elif name == "recheck":
        values.update(label=answer)
    return values


def render_first_sample(library: PromptLibrary, config: RobustFTConfig, dataset: Dataset) -> dict[str, str]:
    """Every prompt in use, rendered for the first sample."""
    sample = dataset.samples[0]
    examples = neighbours(dataset, 0, config.denoise.k)
    return {name: library.render(name, **stage_values(name, sample, examples, config, dataset.task))
            for name in prompts_in_use(config, dataset.task)}


def check_prompts(library: PromptLibrary, config: RobustFTConfig, dataset: Dataset) -> None:
    """Raise one ConfigError listing every template that would fail mid-run; call before any model call."""
    if not dataset.samples:
        return
    sample = dataset.samples[0]
    examples = neighbours(dataset, 0, config.denoise.k)
    problems = []
    for name in prompts_in_use(config, dataset.task):
        values = stage_values(name, sample, examples, config, dataset.task)
        source = library.source_of(name, dataset.task)
        unknown = meta.find_undeclared_variables(library.tree_of(name, dataset.task)) - set(values) - library.globals
        if unknown:
            problems.append(f"{source}: uses {', '.join(sorted(unknown))}, which the {name} prompt does not "
                            f"receive; it receives {', '.join(sorted(values))} (see {VALUES_DOC})")
            continue
        try:
            text = library.render(name, **values)
        except ConfigError as e:
            problems.append(str(e))
            continue
        if not _ASKS_FOR_ANSWER.search(text):
            problems.append(f"{source}: the {name} prompt never asks for an 'Answer:' line; robustft reads every "
                            "reply's answer after the last 'Answer:', so every reply would be unreadable. Ask the "
                            "model to end with a line 'Answer: X'")
    if problems:
        raise ConfigError("prompt templates that would fail mid-run (nothing was called):\n  " + "\n  ".join(problems))
