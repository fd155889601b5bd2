"""`Task`: everything robustft knows about one task type (`data.task`), in one class.

A task type says how a reply's final answer is read, how a dataset's label is written down, when
two answers agree, how prompts name the task and ask for the answer, and where the answer's
tokens are for the `answer_nll` score. The defaults are the short-text task's; a task type
overrides what differs. One instance serves the whole process: keep no per-run state on it.

    class YesNo(Task):
        phrase = "yes-or-no"
        hint = "only yes or no"
        comparison = "yes or no, case aside"

        def read(self, value, options):
            word = value.strip(" .*`").lower()
            return word if word in ("yes", "no") else None
        ...

and register it (`robustft.tasks.registry`): `data.task: yes_no` then selects it.
"""

from __future__ import annotations

import random
import re
from typing import ClassVar, Sequence

from .reading import (
    _BARE_MAX_CHARS,
    _LATEX_WRAP,
    _MARKER,
    _answer_is_span,
    _boxed_span,
    _marker_span,
    answer_span,
    normalize_text,
)

Options = Sequence[str] | None
_EMPHASIS = re.compile(r"\*\*|__")


class Task:
    """A task type. `name` is set from the registration (the entry point's name)."""

    name: str = ""
    #: how prompts name the task: "Answer the following {task_phrase} question" (the `task_phrase` value)
    phrase: ClassVar[str] = "short-answer"
    #: what the answer line should hold (the `answer_hint` value; see `answer_hint` for one that depends on options)
    hint: ClassVar[str] = "only the short final answer"
    #: how two answers are compared, as the dry run and the report say it ("answers compared as ...")
    comparison: ClassVar[str] = "short text: normalised (case, punctuation, a/an/the), either containing the other"
    #: True only for responses compared by meaning, with embeddings (the `open` task's checker and report)
    compares_meaning: ClassVar[bool] = False

    # --- prompts ------------------------------------------------------------------------------

    def answer_hint(self, options: tuple[str, ...] | None) -> str:
        """The `answer_hint` prompt value for a sample with these options (None: no options)."""
        return self.hint

    # --- reading replies ----------------------------------------------------------------------

    def read(self, value: str, options: Options) -> str | None:
        """The answer in ``value``, the text after the last ``Answer:`` marker (or after "the answer
        is", or inside ``\\boxed{}``), or None when it holds none. Short text: the value without
        LaTeX wrappers and markdown emphasis."""
        if "\\" in value:
            value = _LATEX_WRAP.sub(r"\1", value)
        value = _EMPHASIS.sub("", value)
        return value.strip().strip("*`").strip() or None

    def read_alone(self, reply: str, options: Options) -> str | None:
        """A reply with no marker of any kind that is nothing but the answer (``reply`` is stripped
        of whitespace and emphasis), or None. Short text reads nothing here: a sentence is no answer."""
        return None

    def extract(self, text: str, options: Options = None) -> str | None:
        """The final answer in model ``text`` (see `robustft.answers.extract_answer`)."""
        if not text:
            return None
        span = _marker_span(text)
        if span is not None:
            return self.read(text[span[0]:span[1]], options)
        if _MARKER.search(text):
            return None  # a marker with nothing after it: truncated; let the caller re-ask
        for locate in (_answer_is_span, _boxed_span):
            span = locate(text)
            if span is not None:
                found = self.read(text[span[0]:span[1]], options)
                if found is not None:
                    return found
        return self.read_alone(text.strip().strip("*`").strip(), options)

    def bare(self, text: str, options: Options = None) -> str | None:
        """A reply that is only the answer, as a model following "answer with just the name" writes
        it: `extract`, else one short line read as the answer."""
        found = self.extract(text, options)
        if found is not None or not text:
            return found
        line = text.strip().strip("*`").strip()
        if not line or "\n" in line or len(line) > _BARE_MAX_CHARS:
            return None
        return self.read(line.rstrip("."), options)

    def answer_span(self, text: str) -> tuple[int, int] | None:
        """Where the final answer stands in ``text`` (its tokens are what `answer_nll` scores)."""
        return answer_span(text)

    # --- labels and comparing -----------------------------------------------------------------

    def normalize_label(self, label: str, options: Options) -> str:
        """A dataset label (stripped, never empty) in the form answers are compared with; raise
        ValueError saying what was expected when it does not fit. Short text: as written."""
        return label

    def match(self, pred: str, label: str, tolerance: float) -> bool:
        """Whether a read answer agrees with a label (neither is None). Short text, DROP-style:
        after `normalize_text`, either contains the other on word boundaries."""
        p, g = normalize_text(pred), normalize_text(label)
        if not p or not g:
            return p == g and pred.strip().casefold() == label.strip().casefold()
        return f" {p} " in f" {g} " or f" {g} " in f" {p} "

    # --- the simulated expert -------------------------------------------------------------------

    def sim_wrong_answer(self, answer: str, others: Sequence[str], rng: random.Random) -> str:
        """A wrong answer to a question whose right one is ``answer``, as the simulated expert gives
        it when the server is told the task (`robustft.sim`, ``task=``/``--task``): another
        question's answer from ``others`` (every gold answer, sorted), else "not <answer>". Draw only
        from ``rng``, so that a seeded server answers the same every time."""
        pool = [a for a in others if a != answer]
        return rng.choice(pool) if pool else f"not {answer}"

    def __repr__(self) -> str:
        return f"<task {self.name or type(self).__name__}>"
