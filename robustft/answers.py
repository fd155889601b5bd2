"""Answers by task name: pull the final answer out of model text, compare it to a label.

Every prompt asks the model to end with a line ``Answer: X``. `extract_answer` reads the value
after the *last* such marker (markdown such as ``**Answer:** B`` is tolerated) and falls back,
conservatively, to "the answer is X", ``\\boxed{X}`` or a response that is nothing but the answer.
It never guesses from arbitrary text.

What each task type does is its `robustft.tasks.Task` class (``multiple_choice``, ``text``,
``numeric`` and ``open`` in `robustft.tasks.builtin`, others from packages: `robustft.tasks.registry`);
the functions here look the task up by the name `data.task` gives and ask it. The readers every
task shares (numbers, option letters, where the answer stands) are `robustft.tasks.reading`, and
read in linear time (``tests/test_answers_linear.py``).
"""

from __future__ import annotations

from .tasks.reading import (
    DEFAULT_TOLERANCE,
    answer_span,
    asks_for_bare_answer,
    canonical_number,
    format_options,
    letter_index,
    letters,
    normalize_text,
    numbers_match,
    option_text,
    parse_number,
    parse_verdict,
)
from .tasks.registry import TASKS, task_of

__all__ = [
    "DEFAULT_TOLERANCE",
    "TASKS",
    "answer_char_span",
    "answers_match",
    "asks_for_bare_answer",
    "bare_answer",
    "canonical_number",
    "extract_answer",
    "format_options",
    "letter_index",
    "letters",
    "numbers_match",
    "normalize_label",
    "normalize_text",
    "option_text",
    "parse_number",
    "parse_verdict",
]


def answer_char_span(text: str, task: str | None = None) -> tuple[int, int] | None:
    """``(start, end)`` of the final answer value in ``text``, so that ``text[start:end]`` is it.

    The value after the last ``Answer:`` marker to the end of that line, stripped of whitespace
    and markdown emphasis (or the next non-empty line when the marker ends its line); None when
    the last marker has nothing after it. Without a marker: the same fallbacks as `extract_answer` ("the answer is X", ``\\boxed{X}``, a
    one-line response). None when there is nothing to point at.

    ``task="open"``: everything after the last marker to the end of the reply (every line of the
    response), and nothing without a marker. Another task type may say otherwise (`Task.answer_span`).
    """
    if task is None:
        return answer_span(text)
    return task_of(task).answer_span(text)


def extract_answer(text: str, task: str, options: list[str] | None = None) -> str | None:
    """The final answer in model ``text`` for ``task``, or None when there is no usable one.

    - multiple_choice: the uppercase letter, if within ``options`` (any A-Z when options is None);
      an option's text written instead of its letter maps to that letter.
    - numeric: the first number on the answer line, canonical (``"$1,234.50"`` -> ``"1234.5"``).
    - text: the answer line, stripped.
    - open: everything after the last marker to the end of the reply, stripped (it may span
      several lines); no fallbacks: a reply without a marker has no readable response.

    The last ``Answer:`` marker decides (a later, unusable one means None: it is the model's final
    word). Without any marker: "the answer is X", then ``\\boxed{X}``, then a response that is
    only the answer (a letter like ``B.`` or a lone number).
    """
    return task_of(task).extract(text, options)


def bare_answer(text: str, task: str, options: list[str] | None = None) -> str | None:
    """A reply that is only the answer, as a model following "answer with just the name" writes it:
    one short line (for multiple choice and numbers `extract_answer` already reads these)."""
    return task_of(task).bare(text, options)


def answers_match(pred: str | None, label: str, task: str, tolerance: float = DEFAULT_TOLERANCE) -> bool:
    """Whether a predicted answer agrees with a label. False when ``pred`` is None.

    - multiple_choice: the letters are equal (case-insensitive).
    - numeric: `numbers_match`: integers exactly, other numbers within the relative ``tolerance``.
    - text: after `normalize_text`, either contains the other on word boundaries
      ("paris" matches "the city of paris"); an empty string matches only an empty one.
    - open: the same text after `normalize_text` (responses that agree in meaning but not in
      wording are told apart by `robustft.agents.similarity`, with embeddings).
    """
    kind = task_of(task)
    if pred is None or label is None:
        return False
    return kind.match(pred, label, tolerance)


def normalize_label(label: str, task: str, options: list[str] | None = None) -> str:
    """A dataset label in the form the rest of the project compares against.

    - multiple_choice: the uppercase letter; ``"b"``, ``"(B)"``, ``"B."`` and an option's exact
      text (case and surrounding whitespace ignored) are accepted. A letter wins over an option
      whose text is that letter.
    - numeric: the canonical number (``"1,234"`` -> ``"1234"``).
    - text, open: the label stripped.

    Raises ValueError, saying what was expected, for an empty label or one that does not fit.
    """
    kind = task_of(task)
    text = "" if label is None else str(label).strip()
    if not text:
        raise ValueError("label is empty")
    return kind.normalize_label(text, options)
