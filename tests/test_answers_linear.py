"""Every reader of model text runs in linear time: a hostile or runaway reply of a megabyte is read
in milliseconds, never blocking the event loop.

The replies below are the shapes that make a backtracking pattern quadratic (a marker followed by
a long run of what its neighbouring quantifiers both accept, with the final character missing),
plus seeded random mixtures of the tokens the patterns look for. A quadratic reader takes hours
on the first kind; the bound, one second of CPU time per call (not wall time, so that other work
on a shared machine does not count), is several times what any reader needs.
"""

from __future__ import annotations

import random
import time

import pytest

from robustft.agents.checker import parse_verdict
from robustft.answers import (
    TASKS,
    answer_char_span,
    asks_for_bare_answer,
    bare_answer,
    answers_match,
    canonical_number,
    extract_answer,
    normalize_label,
)
from robustft.entropy import answer_nll

MB = 1_000_000
LIMIT_S = 1.0

_PIECES = ["answer", "Answer", " ", "\t", "\n", "*", "**", "__", ":", "\uff1a", "\\boxed{", "{", "}", "1", "12",
           ",", ",123", ".", "/", "%", "-", "$", "A", "B", "(", ")", "[", "is", "the answer is", " would be",
           "option", "Y", "N", "\\text{", ">", "#", "`", "\r"]


def _fill(pattern: str, tail: str = "") -> str:
    return pattern * (MB // len(pattern)) + tail


def _random(seed: int) -> str:
    rng = random.Random(seed)
    out, size = [], 0
    while size < MB:
        piece = rng.choice(_PIECES) * rng.choice((1, 1, 1, 2, 50, 5000))
        out.append(piece)
        size += len(piece)
    return "".join(out)


HOSTILE = {
    "marker+spaces": "Answer" + " " * MB,
    "marker+tabs+stars": "Answer" + " \t" * (MB // 4) + "**" + " " * (MB // 2),
    "marker+colon+spaces": "Answer:" + " " * MB,
    "marker+colon+blank lines": "Answer:" + "\n" * MB,
    "marker+colon+star lines": "Answer:" + "*\n `\n" * (MB // 5),
    "line marker": "\n" + " " * MB + "answer",
    "line marker prefix": "> # * _" * (MB // 7) + "answer" + " " * MB,
    "many markers": _fill("answer "),
    "many colon markers": _fill("Answer: "),
    "answer is+spaces": "the answer is" + " " * MB,
    "answer would be+stars": "answer would be " + "* " * (MB // 2),
    "boxed unclosed": "\\boxed{" + "a" * MB,
    "boxed nested": _fill("\\boxed{{a}"),
    "boxed many": _fill("\\boxed{"),
    "digits": "Answer: " + "1" * MB,
    "thousands": "Answer: " + "1" + ",234" * (MB // 4) + "5",
    "fraction spaces": "Answer: 1" + " " * MB + "x",
    "signs": "Answer: " + "-" * MB,
    "currency": "Answer: " + "- $ " * (MB // 4),
    "letter spaces": "Answer: A" + " " * MB + "x",
    "paren spaces": "Answer: (" + " " * MB,
    "verdict": "Answer:" + " *" * (MB // 2) + " (",
    "verdict spaces": "answer" + " " * MB + ":" + " " * MB,
    "only spaces": " " * MB,
    "only newlines": "\n" * MB,
    "stars": "*" * MB,
    "latex": _fill("\\text{") + "}",
    **{f"random {seed}": _random(seed) for seed in range(2)},
}

READERS = {
    **{f"extract_answer[{task}]": (lambda t, task=task: extract_answer(t, task)) for task in TASKS},
    "extract_answer[multiple_choice, options]": lambda t: extract_answer(t, "multiple_choice", ["x", "y", "z"]),
    **{f"answer_char_span[{task}]": (lambda t, task=task: answer_char_span(t, task)) for task in (None, "open")},
    "parse_verdict": parse_verdict,
    "canonical_number": canonical_number,  # parse_number's path too
    "answers_match[text]": lambda t: answers_match(t, "Paris", "text"),  # normalize_text's too
    "answers_match[numeric]": lambda t: answers_match(t, "1.5", "numeric"),
    "normalize_label[multiple_choice]": lambda t: _label(t, "multiple_choice"),
    "normalize_label[numeric]": lambda t: _label(t, "numeric"),
    "answer_nll": lambda t: answer_nll(t, [t], [-0.5], "text"),
    "bare_answer[text]": lambda t: bare_answer(t, "text"),
    "asks_for_bare_answer": asks_for_bare_answer,
}


def _label(text: str, task: str) -> str | None:
    try:
        return normalize_label(text, task, ["x", "y"] if task == "multiple_choice" else None)
    except ValueError:
        return None


@pytest.mark.parametrize("reader", sorted(READERS))
def test_every_reader_is_linear_on_hostile_replies(reader):
    read = READERS[reader]
    slow = {}
    for name, text in HOSTILE.items():
        start = time.process_time()  # CPU time: other work on a shared machine does not count
        read(text)
        took = time.process_time() - start
        if took > LIMIT_S:
            slow[name] = round(took, 2)
    assert not slow, f"{reader} took over {LIMIT_S} s on a 1 MB reply: {slow}"


def test_the_hostile_replies_still_read_as_before():
    # linear is not enough: the rewritten patterns must still find what they found
    assert extract_answer("Answer" + " " * 1000 + ": B", "multiple_choice") == "B"
    assert extract_answer("Answer ** : 42", "numeric") == "42"
    assert extract_answer("**Answer:**\n\n\n  `Paris`", "text") == "Paris"
    assert extract_answer("Answer:" + "\n" * 5000 + "7", "numeric") == "7"
    assert extract_answer("the answer would be ** C", "multiple_choice") == "C"
    assert extract_answer("so \\boxed{\\frac{1}{2}}", "text") == "\\frac{1}{2}"
    assert extract_answer("Answer: 1 / 4", "numeric") == "0.25"
    assert extract_answer("> **Answer:**  a long\nresponse\n", "open") == "a long\nresponse"
    assert parse_verdict("Answer: ** (Y)") == "Y"
    assert parse_verdict("answer :\n*  N") == "N"
