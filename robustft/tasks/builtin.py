"""robustft's own task types, registered like a plugin's (pyproject.toml, `robustft.tasks`).

- ``multiple_choice``: answers and labels are letters ``A``.. (``A`` = first option).
- ``numeric``: answers are canonical number strings (``"1,234.50"`` -> ``"1234.5"``, ``"50%"`` ->
  ``"50"``, ``"3/4"`` -> ``"0.75"``); whole numbers compare exactly, others within a relative
  tolerance (``data.numeric_tolerance``). Numbers are parsed with a strict regular expression,
  never evaluated.
- ``text``: free text, compared DROP-style (normalised, either contains the other): `Task` itself.
- ``open``: an open-ended response: everything after the last ``Answer:`` marker, to the end of the
  reply (it may span several lines). Two responses are compared by meaning, with embeddings
  (`robustft.agents.similarity`), not here: `match` only says whether they are the same text
  (normalised), which is what a string comparison can honestly say.
"""

from __future__ import annotations

from .base import Options, Task
from .reading import (
    _LABEL_LETTER,
    _LATEX_WRAP,
    _MAX_OPTIONS,
    _first_number,
    _letter_in_range,
    _mc_from_value,
    _open_span,
    _option_letter,
    _parse_decimal,
    _canonical,
    canonical_number,
    letters,
    normalize_text,
    numbers_match,
)

__all__ = ["MultipleChoice", "Numeric", "Open", "Text"]


class Text(Task):
    """Short free text: the defaults of `Task`."""


class MultipleChoice(Task):
    phrase = "multiple-choice"
    comparison = "the same option letter"

    def answer_hint(self, options: tuple[str, ...] | None) -> str:
        if not options:
            return Task.hint
        shown = letters(len(options))
        return f"only the letter of the correct option ({', '.join(shown[:-1])} or {shown[-1]})"

    def read(self, value: str, options: Options) -> str | None:
        """The uppercase letter, if within ``options`` (any A-Z when options is None); an option's
        text written instead of its letter maps to that letter."""
        return _mc_from_value(value, options)  # type: ignore[arg-type]

    def read_alone(self, reply: str, options: Options) -> str | None:
        m = _LABEL_LETTER.match(reply)
        return _letter_in_range(m.group(1), options) if m else None  # type: ignore[arg-type]

    def normalize_label(self, label: str, options: Options) -> str:
        """The uppercase letter; ``"b"``, ``"(B)"``, ``"B."`` and an option's exact text (case and
        surrounding whitespace ignored) are accepted. A letter wins over an option whose text is
        that letter."""
        valid = letters(len(options)) if options else letters(_MAX_OPTIONS)
        m = _LABEL_LETTER.match(label)
        if m and m.group(1).upper() in valid:
            return m.group(1).upper()
        if options:
            found = _option_letter(label, options)  # type: ignore[arg-type]
            if found:
                return found
        span = f"{valid[0]}-{valid[-1]}" if len(valid) > 1 else valid[0]
        raise ValueError(f"label {label!r} is neither a letter {span} nor the text of one of the "
                         f"{len(options) if options else _MAX_OPTIONS} options")

    def match(self, pred: str, label: str, tolerance: float) -> bool:
        return pred.strip().upper() == label.strip().upper() != ""


class Numeric(Task):
    phrase = "numerical"
    hint = "only the final number"
    comparison = "numbers: whole numbers exactly, others within a relative tolerance (data.numeric_tolerance)"

    def read(self, value: str, options: Options) -> str | None:
        """The first number in the value, canonical (``"$1,234.50"`` -> ``"1234.5"``)."""
        return _first_number(_LATEX_WRAP.sub(r"\1", value))

    def read_alone(self, reply: str, options: Options) -> str | None:
        value = _parse_decimal(reply.rstrip("."))
        return None if value is None else _canonical(value)

    def normalize_label(self, label: str, options: Options) -> str:
        value = canonical_number(label)
        if value is None:
            raise ValueError(f"label {label!r} is not a number")
        return value

    def match(self, pred: str, label: str, tolerance: float) -> bool:
        return numbers_match(pred, label, tolerance)


class Open(Task):
    phrase = "open-ended"
    hint = "your complete response (it may span several lines)"
    comparison = "by meaning (embeddings; denoise.open_similarity)"
    compares_meaning = True

    def extract(self, text: str, options: Options = None) -> str | None:
        """Everything after the last marker to the end of the reply, stripped (it may span several
        lines); no fallbacks: a reply without a marker has no readable response."""
        if not text:
            return None
        span = _open_span(text)
        return text[span[0]:span[1]] if span is not None else None

    def bare(self, text: str, options: Options = None) -> str | None:
        return self.extract(text, options)

    def answer_span(self, text: str) -> tuple[int, int] | None:
        """Every line of the response after the last marker, and nothing without a marker."""
        return _open_span(text) if text else None

    def match(self, pred: str, label: str, tolerance: float) -> bool:
        p, g = normalize_text(pred), normalize_text(label)
        return p == g and (bool(p) or pred.strip() == label.strip())
