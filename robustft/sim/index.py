"""Finding the target gold question in a prompt."""

from __future__ import annotations

import re
from typing import Iterable

from .gold import GoldItem

__all__ = ["QuestionIndex", "normalize_space"]

_WS = re.compile(r"\s+")
_WORD = re.compile(r"\w+")


def normalize_space(text: str) -> str:
    """Whitespace runs as one space, ends stripped: how questions are compared with prompts."""
    return _WS.sub(" ", text).strip()


class QuestionIndex:
    """Finds the target gold question in a prompt: the matched question that starts last.

    Among the gold questions whose text occurs in the prompt (whitespace runs compared as one
    space), the target is the one whose occurrence starts last, since context prompts show example
    questions first; an occurrence lying inside a longer matched question's occurrence does not
    count. Gold rows sharing one question text are told apart by how many of their options the
    prompt shows after it (rows without options: the first such row).

    Each question is indexed under its rarest interior word (a word that is not its first or last,
    so it is a whole word of any text the question occurs in); a prompt's words pick the candidates
    and a substring search confirms them. About 0.1 ms per prompt for a few thousand questions.
    """

    def __init__(self, items: Iterable[GoldItem]):
        self._groups: dict[str, list[GoldItem]] = {}
        for item in items:
            self._groups.setdefault(normalize_space(item.question), []).append(item)
        words = {question: _WORD.findall(question) for question in self._groups}
        interior = {question: set(w[1:-1]) for question, w in words.items()}
        frequency: dict[str, int] = {}
        for found in interior.values():
            for word in found:
                frequency[word] = frequency.get(word, 0) + 1
        self._by_word: dict[str, list[str]] = {}
        self._always: list[str] = []
        for question, found in interior.items():
            if not found:
                self._always.append(question)
                continue
            anchor = min(found, key=lambda w: (frequency[w], -len(w), w))
            self._by_word.setdefault(anchor, []).append(question)

    def __len__(self) -> int:
        return sum(len(group) for group in self._groups.values())

    def find(self, prompt: str) -> GoldItem | None:
        text = normalize_space(prompt)
        candidates = list(self._always)
        for word in set(_WORD.findall(text)):
            candidates.extend(self._by_word.get(word, ()))
        spans = []
        for question in candidates:
            start = text.rfind(question)
            if start >= 0:
                spans.append((start, start + len(question), question))
        if not spans:
            return None
        # an occurrence inside a longer matched question's occurrence is part of that question
        spans = [s for s in spans
                 if not any(o[0] <= s[0] and s[1] <= o[1] and o[1] - o[0] > s[1] - s[0] for o in spans)]
        start, end, question = max(spans, key=lambda s: (s[0], s[1]))
        group = self._groups[question]
        if len(group) == 1:
            return group[0]
        after = text[end:]
        return max(group, key=lambda item: sum(normalize_space(o) in after for o in item.options or ()))
