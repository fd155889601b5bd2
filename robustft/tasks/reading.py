"""Reading model text, the parts every task type shares: where the final answer stands in a reply,
numbers, option letters, the text normalisation of comparisons, a judge's verdict.

Every pattern here reads in linear time: no two neighbouring quantifiers can share characters
(possessive ``*+`` where they could), so a hostile reply of a megabyte costs milliseconds, not
the event loop (``tests/test_answers_linear.py`` feeds such replies to every reader). The task
types (`robustft.tasks.builtin`) put these together; `robustft.answers` is the by-name front.
"""

from __future__ import annotations

import math
import re
import string
from decimal import Decimal, InvalidOperation


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


def answer_span(text: str) -> tuple[int, int] | None:
    """``(start, end)`` of the final answer value in ``text``, so that ``text[start:end]`` is it.

    The value after the last ``Answer:`` marker to the end of that line, stripped of whitespace
    and markdown emphasis (or the next non-empty line when the marker ends its line); None when
    the last marker has nothing after it. Without a marker: "the answer is X", ``\\boxed{X}``, a
    one-line response. None when there is nothing to point at.
    """
    if not text:
        return None
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


_VERDICT = re.compile(r"answer\s*+:[\s*]*+\(?\s*+([YN])\b", re.IGNORECASE)


def parse_verdict(text: str) -> str | None:
    """'Y' (the label is wrong) or 'N' from a judge reply's last 'Answer:' line."""
    found = _VERDICT.findall(text or "")
    return found[-1].upper() if found else None
