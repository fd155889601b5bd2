"""Answers per task type: pull the final answer out of model text, compare it to a label.

Every prompt asks the model to end with a line ``Answer: X``. `extract_answer` reads the value
after the *last* such marker (markdown such as ``**Answer:** B`` is tolerated) and falls back,
conservatively, to "the answer is X", ``\\boxed{X}`` or a response that is nothing but the answer.
It never guesses from arbitrary text.

Task types:

- ``multiple_choice``: answers and labels are letters ``A``.. (``A`` = first option).
- ``numeric``: answers are canonical number strings (``"1,234.50"`` -> ``"1234.5"``, ``"50%"`` ->
  ``"50"``, ``"3/4"`` -> ``"0.75"``); whole numbers compare exactly, others within a relative
  tolerance (``data.numeric_tolerance``). Numbers are parsed with a strict regular expression,
  never evaluated.

Every pattern here reads in linear time: no two neighbouring quantifiers can share characters
(possessive ``*+`` where they could), so a hostile reply of a megabyte costs milliseconds, not
the event loop (``tests/test_answers_linear.py`` feeds such replies to every reader).
- ``text``: free text, compared DROP-style (normalised, either contains the other).
- ``open``: an open-ended response: everything after the last ``Answer:`` marker, to the end of the
  reply (it may span several lines). Two responses are compared by meaning, with embeddings
  (`robustft.agents.similarity`), not here: `answers_match` only says whether they are the same
  text (normalised), which is what a string comparison can honestly say.
"""

from __future__ import annotations

import math
import re
import string
from decimal import Decimal, InvalidOperation

__all__ = [
    "TASKS",
    "answer_char_span",
    "answers_match",
    "asks_for_bare_answer",
    "bare_answer",
    "extract_answer",
    "format_options",
    "letter_index",
    "letters",
    "numbers_match",
    "normalize_label",
    "normalize_text",
    "option_text",
    "parse_number",
]

TASKS: tuple[str, ...] = ("multiple_choice", "text", "numeric", "open")

_MAX_OPTIONS = 26
DEFAULT_TOLERANCE = 1e-2  # data.numeric_tolerance: relative, for numbers that are not whole


def letters(n: int) -> list[str]:
    """The first ``n`` option letters: ``letters(3) == ["A", "B", "C"]``."""
    if not 0 <= n <= _MAX_OPTIONS:
        raise ValueError(f"{n} options cannot be lettered; at most {_MAX_OPTIONS} options are supported")
    return [chr(ord("A") + i) for i in range(n)]


def letter_index(label: object) -> int | None:
    """The option an option letter names, from 0 (``"C"`` -> 2); None for anything else."""
    if isinstance(label, str) and len(label) == 1 and "A" <= label <= "Z":
        return ord(label) - ord("A")
    return None


def option_text(label: object, options: list[str] | None) -> str | None:
    """The text of the option ``label`` names (``"B"`` -> ``options[1]``); None when it names none."""
    i = letter_index(label)
    return options[i] if options and i is not None and i < len(options) else None


def format_options(options: list[str]) -> str:
    """``"A. first\\nB. second"``: the options as shown in prompts."""
    return "\n".join(f"{letter}. {text}" for letter, text in zip(letters(len(options)), options))


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")


# --- numbers ---------------------------------------------------------------------------------

_SIGN = r"[-+\u2212]"
_CURRENCY = r"[$\u20ac\u00a3\u00a5]"
_UNSIGNED = r"(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+"
_NUMBER = (
    rf"(?P<s1>{_SIGN})?[ \t]?(?P<cur>{_CURRENCY})?[ \t]?(?P<s2>{_SIGN})?"
    rf"(?P<num>{_UNSIGNED})"
    rf"(?:[ \t]*+/[ \t]*+(?P<den>\d++(?:\.\d++)?))?"
    rf"(?:[ \t]*+(?P<pct>%))?"
)
_NUMBER_FULL = re.compile(_NUMBER)
_NUMBER_IN_TEXT = re.compile(rf"(?<![\w.,]){_NUMBER}")


def _number_from_match(m: re.Match[str]) -> Decimal | None:
    if m.group("s1") and m.group("s2"):
        return None
    try:
        value = Decimal(m.group("num").replace(",", ""))
        if m.group("den") is not None:
            den = Decimal(m.group("den"))
            if den == 0:
                return None
            value = value / den
    except InvalidOperation:
        return None
    sign = m.group("s1") or m.group("s2") or "+"
    return -value if sign in "-\u2212" else value


def _canonical(value: Decimal) -> str:
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


def _parse_decimal(text: str) -> Decimal | None:
    m = _NUMBER_FULL.fullmatch(text.strip())
    return _number_from_match(m) if m else None


def parse_number(text: str) -> float | None:
    """The number that ``text`` is, exactly (whole string), or None.

    Accepts ``-3``, ``1,234.5``, ``$12``, ``50%`` (-> 50), ``3/4`` (-> 0.75), ``.5``. Thousands
    separators must be well placed (``1,23`` is not a number). Never evaluates anything.
    """
    value = _parse_decimal(text)
    return None if value is None else float(value)


def canonical_number(text: str) -> str | None:
    """``parse_number`` as a canonical string (``"1,234.50"`` -> ``"1234.5"``), or None."""
    value = _parse_decimal(text)
    return None if value is None else _canonical(value)


_DIGIT = re.compile(r"\d")
_PREFIX_MAX = 6  # sign, space, currency, space, sign, "." : how far before its first digit a number starts


def _first_number(text: str) -> str | None:
    """The first number in ``text``, canonical. Tried only just before each digit: `finditer` would
    try the pattern at every position of a long run of signs or spaces, slowly though linearly."""
    pos = 0
    while (digit := _DIGIT.search(text, pos)) is not None:
        m = None
        for start in range(max(pos, digit.start() - _PREFIX_MAX), digit.start() + 1):
            m = _NUMBER_IN_TEXT.match(text, start)
            if m is not None:
                break
        if m is None:
            pos = digit.end()
            continue
        value = _number_from_match(m)
        if value is not None:
            return _canonical(value)
        pos = m.end()
    return None


# --- locating the answer in model text -------------------------------------------------------

_MARKER = re.compile(r"(?<![A-Za-z])answer[ \t]*+(?:(?:\*\*|__|\*)[ \t]*+)?[:\uff1a]", re.IGNORECASE)
_ANSWER_IS = re.compile(
    r"(?<![A-Za-z])(?:answer|choice|option)[ \t]++(?:is|would be|should be|will be)"
    r"[ \t]*+(?:(?:\*\*|__|\*)[ \t]*+)?:?",
    re.IGNORECASE,
)
_BOXED = re.compile(r"\\boxed\{([^{}\n]*+(?:\{[^{}\n]*+\}[^{}\n]*+)*+)\}")
_EDGE = " \t\r*`"


def _strip_span(text: str, start: int, end: int) -> tuple[int, int] | None:
    # str.lstrip/rstrip, not a loop per character: a reply of a megabyte of spaces stays cheap
    piece = text[start:end]
    start += len(piece) - len(piece.lstrip(_EDGE))
    end -= len(piece) - len(piece.rstrip(_EDGE))
    return (start, end) if start < end else None


def _line_end(text: str, pos: int) -> int:
    end = text.find("\n", pos)
    return len(text) if end == -1 else end


_CONTENT = re.compile(r"[^ \t\r\n*`]")  # a character `_strip_span` keeps: where a non-empty line is


def _value_after(text: str, pos: int, next_line: bool) -> tuple[int, int] | None:
    """The stripped rest of the line at ``pos``; if that is empty, optionally the next non-empty line."""
    end = _line_end(text, pos)
    span = _strip_span(text, pos, end)
    if span is not None or not next_line:
        return span
    # one search for the next kept character, not a Python loop over (possibly a million) empty lines
    found = _CONTENT.search(text, end)
    if found is None:
        return None
    line_start = text.rfind("\n", 0, found.start()) + 1
    return _strip_span(text, line_start, _line_end(text, found.start()))


def _marker_span(text: str) -> tuple[int, int] | None:
    last = None
    for last in _MARKER.finditer(text):
        pass
    return None if last is None else _value_after(text, last.end(), next_line=True)


def _answer_is_span(text: str) -> tuple[int, int] | None:
    last = None
    for last in _ANSWER_IS.finditer(text):
        pass
    return None if last is None else _value_after(text, last.end(), next_line=False)


def _boxed_span(text: str) -> tuple[int, int] | None:
    last = None
    for last in _BOXED.finditer(text):
        pass
    return None if last is None else _strip_span(text, last.start(1), last.end(1))


_MARKER_CLOSE = re.compile(r"(?:\*\*|__|\*)?")  # the close of "**Answer:**", right after the colon


_LINE_MARKER = re.compile(r"^[ \t>#*_]*+answer[ \t]*+(?:(?:\*\*|__|\*)[ \t]*+)?[:\uff1a]", re.IGNORECASE | re.MULTILINE)


def _open_span(text: str) -> tuple[int, int] | None:
    """Everything after the last line that starts with the marker (else the last marker anywhere)
    to the end of the reply, without surrounding whitespace (and without the marker's own closing
    emphasis, as in ``**Answer:**``); a response may end in markdown of its own, which is kept.

    A line start is preferred because a paragraph may say "the short answer: ..." in passing."""
    last = None
    for last in _LINE_MARKER.finditer(text):
        pass
    if last is None:
        for last in _MARKER.finditer(text):
            pass
    if last is None:
        return None
    start = _MARKER_CLOSE.match(text, last.end()).end()
    rest = text[start:]
    end = start + len(rest.rstrip())
    start += len(rest) - len(rest.lstrip())
    return (start, end) if start < end else None


def answer_char_span(text: str, task: str | None = None) -> tuple[int, int] | None:
    """``(start, end)`` of the final answer value in ``text``, so that ``text[start:end]`` is it.

    The value after the last ``Answer:`` marker to the end of that line, stripped of whitespace
    and markdown emphasis (or the next non-empty line when the marker ends its line); None when
    the last marker has nothing after it. Without a marker: the same fallbacks as `extract_answer` ("the answer is X", ``\\boxed{X}``, a
    one-line response). None when there is nothing to point at.

    ``task="open"``: everything after the last marker to the end of the reply (every line of the
    response), and nothing without a marker.
    """
    if not text:
        return None
    if task == "open":
        return _open_span(text)
    if _MARKER.search(text):
        return _marker_span(text)
    span = _answer_is_span(text) or _boxed_span(text)
    if span is None and "\n" not in text.strip():
        span = _strip_span(text, 0, len(text))
    return span


# --- multiple choice -------------------------------------------------------------------------

_LATEX_WRAP = re.compile(r"\\(?:boxed|text|textbf|mathrm|mathbf)\{([^{}]*)\}")
_LETTER_VALUE = re.compile(
    r"^(?:[(\[][ \t]*(?P<b>[A-Za-z])[ \t]*[)\]]"
    r"|(?P<l>[A-Za-z])(?=$|[.):\],;!?]|\s+[-\u2013\u2014:])"
    r"|(?P<u>[A-Z])(?=\s))"
)
_LETTER_PREFIX = re.compile(r"^(?:option|choice)\b[ \t]*", re.IGNORECASE)
_LABEL_LETTER = re.compile(r"^[(\[]?\s*([A-Za-z])\s*[)\]]?\.?$")


def _clean_value(value: str) -> str:
    value = _LATEX_WRAP.sub(r"\1", value)
    return value.strip().strip("$*`_\"'").strip()


def _norm_option(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().strip(".!\"'`*").strip()).casefold()


def _option_letter(value: str, options: list[str]) -> str | None:
    target = _norm_option(value)
    if not target:
        return None
    for letter, option in zip(letters(len(options)), options):
        if _norm_option(option) == target:
            return letter
    return None


def _letter_in_range(letter: str, options: list[str] | None) -> str | None:
    letter = letter.upper()
    n = _MAX_OPTIONS if options is None else len(options)
    index = letter_index(letter)
    return letter if index is not None and index < n else None


def _mc_from_value(value: str, options: list[str] | None) -> str | None:
    value = _clean_value(value)
    if not value:
        return None
    if options and not _LABEL_LETTER.match(value):
        found = _option_letter(value, options)
        if found:
            return found
    body = _LETTER_PREFIX.sub("", value)
    m = _LETTER_VALUE.match(body)
    if m:
        letter = m.group("b") or m.group("l") or m.group("u")
        if not (m.group("u") and letter == "I"):
            return _letter_in_range(letter, options)
    return None


# --- extraction ------------------------------------------------------------------------------


def _from_value(value: str, task: str, options: list[str] | None) -> str | None:
    if task == "multiple_choice":
        return _mc_from_value(value, options)
    if task == "numeric":
        return _first_number(_LATEX_WRAP.sub(r"\1", value))
    if "\\" in value:
        value = _LATEX_WRAP.sub(r"\1", value)
    value = re.sub(r"\*\*|__", "", value)
    return value.strip().strip("*`").strip() or None


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
    _check_task(task)
    if not text:
        return None
    if task == "open":
        span = _open_span(text)
        return text[span[0]:span[1]] if span is not None else None
    span = _marker_span(text)
    if span is not None:
        return _from_value(text[span[0]:span[1]], task, options)
    if _MARKER.search(text):
        return None  # a marker with nothing after it: truncated; let the caller re-ask
    for locate in (_answer_is_span, _boxed_span):
        span = locate(text)
        if span is not None:
            found = _from_value(text[span[0]:span[1]], task, options)
            if found is not None:
                return found
    whole = text.strip().strip("*`").strip()
    if task == "multiple_choice":
        m = _LABEL_LETTER.match(whole)
        return _letter_in_range(m.group(1), options) if m else None
    if task == "numeric":
        value = _parse_decimal(whole.rstrip("."))
        return None if value is None else _canonical(value)
    return None


# --- a conversation that asks for a bare answer ----------------------------------------------

# "Answer with just the name", "Reply only with the number", "no explanation", "nothing else": a
# dataset's system prompt that asks for the answer alone (bounded gaps: linear like the rest)
_ASKS_BARE = re.compile(
    r"\b(?:just|only)\b[^.\n]{0,40}?\b(?:answer|name|number|letter|word|option|value|result)s?\b"
    r"|\bno (?:explanation|reasoning|other text)\b|\bnothing else\b|\bwithout (?:any )?explanation\b",
    re.IGNORECASE)
_BARE_MAX_CHARS = 200


def asks_for_bare_answer(text: str) -> bool:
    """Whether an instruction (a dataset's system prompt, an earlier turn) asks for the answer alone."""
    return bool(text) and _ASKS_BARE.search(text[:20_000]) is not None


def bare_answer(text: str, task: str, options: list[str] | None = None) -> str | None:
    """A reply that is only the answer, as a model following "answer with just the name" writes it:
    one short line (for multiple choice and numbers `extract_answer` already reads these)."""
    found = extract_answer(text, task, options)
    if found is not None or task == "open" or not text:
        return found
    line = text.strip().strip("*`").strip()
    if not line or "\n" in line or len(line) > _BARE_MAX_CHARS:
        return None
    return _from_value(line.rstrip("."), task, options)


# --- comparing -------------------------------------------------------------------------------

_PUNCT = re.compile(rf"[{re.escape(string.punctuation)}\u2018\u2019\u201c\u201d\u2013\u2014]")
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")


def normalize_text(text: str) -> str:
    """Lowercase, drop punctuation and the articles a/an/the, collapse whitespace (DROP/SQuAD)."""
    text = _PUNCT.sub(" ", text.casefold())
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _is_integer(value: Decimal) -> bool:
    return value == value.to_integral_value()


def numbers_match(pred: str, label: str, tolerance: float = DEFAULT_TOLERANCE) -> bool:
    """Whether two number strings name the same number: exactly when either is a whole number
    (a count of 125 is not 126), else within the relative ``tolerance`` (``data.numeric_tolerance``)."""
    p, g = _parse_decimal(pred), _parse_decimal(label)
    if p is None or g is None:
        return False
    if p == g:
        return True
    if _is_integer(p) or _is_integer(g):
        return False
    return math.isclose(float(p), float(g), rel_tol=tolerance, abs_tol=1e-12)


def answers_match(pred: str | None, label: str, task: str, tolerance: float = DEFAULT_TOLERANCE) -> bool:
    """Whether a predicted answer agrees with a label. False when ``pred`` is None.

    - multiple_choice: the letters are equal (case-insensitive).
    - numeric: `numbers_match`: integers exactly, other numbers within the relative ``tolerance``.
    - text: after `normalize_text`, either contains the other on word boundaries
      ("paris" matches "the city of paris"); an empty string matches only an empty one.
    - open: the same text after `normalize_text` (responses that agree in meaning but not in
      wording are told apart by `robustft.agents.similarity`, with embeddings).
    """
    _check_task(task)
    if pred is None or label is None:
        return False
    if task == "multiple_choice":
        return pred.strip().upper() == label.strip().upper() != ""
    if task == "numeric":
        return numbers_match(pred, label, tolerance)
    p, g = normalize_text(pred), normalize_text(label)
    if task == "open":
        return p == g and (bool(p) or pred.strip() == label.strip())
    if not p or not g:
        return p == g and pred.strip().casefold() == label.strip().casefold()
    return f" {p} " in f" {g} " or f" {g} " in f" {p} "


def normalize_label(label: str, task: str, options: list[str] | None = None) -> str:
    """A dataset label in the form the rest of the project compares against.

    - multiple_choice: the uppercase letter; ``"b"``, ``"(B)"``, ``"B."`` and an option's exact
      text (case and surrounding whitespace ignored) are accepted. A letter wins over an option
      whose text is that letter.
    - numeric: the canonical number (``"1,234"`` -> ``"1234"``).
    - text, open: the label stripped.

    Raises ValueError, saying what was expected, for an empty label or one that does not fit.
    """
    _check_task(task)
    text = "" if label is None else str(label).strip()
    if not text:
        raise ValueError("label is empty")
    if task == "multiple_choice":
        valid = letters(len(options)) if options else letters(_MAX_OPTIONS)
        m = _LABEL_LETTER.match(text)
        if m and m.group(1).upper() in valid:
            return m.group(1).upper()
        if options:
            found = _option_letter(text, options)
            if found:
                return found
        span = f"{valid[0]}-{valid[-1]}" if len(valid) > 1 else valid[0]
        raise ValueError(
            f"label {text!r} is neither a letter {span} nor the text of one of the "
            f"{len(options) if options else _MAX_OPTIONS} options"
        )
    if task == "numeric":
        value = canonical_number(text)
        if value is None:
            raise ValueError(f"label {text!r} is not a number")
        return value
    return text


_VERDICT = re.compile(r"answer\s*+:[\s*]*+\(?\s*+([YN])\b", re.IGNORECASE)


def parse_verdict(text: str) -> str | None:
    """'Y' (the label is wrong) or 'N' from a judge reply's last 'Answer:' line."""
    found = _VERDICT.findall(text or "")
    return found[-1].upper() if found else None
