"""The ways the simulated server fails on purpose (`faults` with `fault_rate`)."""

from __future__ import annotations

from typing import Iterable

from ..errors import ConfigError

__all__ = ["FAULT_KINDS", "ENDPOINT_FAULTS", "parse_faults"]

FAULT_KINDS: dict[str, str] = {
    "500": "HTTP 500 with an OpenAI error body",
    "429": "HTTP 429 with a Retry-After header (retry_after_s)",
    "broken_json": "HTTP 200 whose body is cut off mid-JSON",
    "empty": "a reply whose content is the empty string",
    "no_logprobs": "logprobs null although the request asked for them (only requests that ask)",
    "no_answer": "a reply without an 'Answer:' line",
    "not_an_option": "an answer the task cannot take: a letter past the last option, a verdict that is "
                     "not Y or N, a word for a number (multiple choice, judge and numeric requests only)",
    "hang": "the request is held for hang_s seconds, then answered",
}
"""Every fault kind and what the client sees."""

ENDPOINT_FAULTS = ("500", "429", "broken_json", "hang")
"""The kinds that also apply to `/v1/embeddings` (the others concern chat replies)."""


def parse_faults(faults: str | Iterable[str] | None) -> tuple[str, ...]:
    """The chosen kinds, from a list or a comma-separated string; None or "all": every kind."""
    if faults is None:
        return tuple(FAULT_KINDS)
    names = faults.split(",") if isinstance(faults, str) else list(faults)
    names = [str(name).strip() for name in names if str(name).strip()]
    if names == ["all"]:
        return tuple(FAULT_KINDS)
    unknown = [name for name in names if name not in FAULT_KINDS]
    if unknown or not names:
        raise ConfigError(f"unknown fault kind(s) {', '.join(map(repr, unknown)) or '(none given)'}; "
                          f"choose from {', '.join(FAULT_KINDS)} (comma-separated), or 'all'")
    return tuple(dict.fromkeys(names))
