"""Key facts of open-ended responses: when a response is right, and how the simulated expert rewords one.

A fact is *stated* by a text when the fact's words (runs of letters and digits, case ignored)
occur in the text in order, separated only by spaces or punctuation, and that occurrence does not
lie inside a longer occurrence of another fact being checked. So with the key "dry" and the
distractor "warm and dry", "it is warm and dry" states the distractor only.

A response is *right* for a gold row when it states the row's key fact and none of its
distractors. This is checkable by anyone holding the gold file, and it is what the simulated
judge decides, what the simulated expert's paraphrases keep, and what the open-ended benchmark data
generator (`robustft.sim.open_data`) breaks on purpose.
"""

from __future__ import annotations

import random
import re
from functools import lru_cache
from typing import Sequence

__all__ = ["ANSWER_MARKER", "change_fact", "fact_words", "is_right", "paraphrase", "stated"]

ANSWER_MARKER = "answer:"
_WORD = re.compile(r"\w+")

# Word-level rewording that keeps the meaning; never produces the word "answer".
SYNONYMS: dict[str, tuple[str, ...]] = {
    "because": ("since", "as"), "since": ("because",), "therefore": ("thus", "so"), "thus": ("therefore",),
    "shows": ("indicates", "demonstrates"), "show": ("indicate", "demonstrate"),
    "indicates": ("shows", "suggests"), "suggests": ("indicates",), "explains": ("accounts for",),
    "best": ("most fitting", "strongest"), "correct": ("right", "accurate"), "right": ("correct",),
    "important": ("significant", "key"), "significant": ("important",), "main": ("principal", "central"),
    "large": ("big", "sizeable"), "big": ("large",), "small": ("little", "minor"), "many": ("numerous",),
    "uses": ("employs", "relies on"), "use": ("employ",), "helps": ("assists", "serves"), "help": ("assist",),
    "makes": ("produces", "creates"), "make": ("produce",), "causes": ("brings about", "leads to"),
    "clearly": ("plainly", "evidently"), "clear": ("evident", "plain"), "obvious": ("apparent",),
    "question": ("problem", "query"), "asks": ("wants to know", "enquires"), "asked": ("posed",),
    "fits": ("matches", "suits"), "matches": ("fits",), "situation": ("scenario", "case"),
    "scenario": ("situation",), "evidence": ("observations", "facts at hand"), "reason": ("rationale",),
    "reasoning": ("logic", "argument"), "idea": ("notion", "concept"), "concept": ("idea",),
    "happens": ("occurs", "takes place"), "occurs": ("happens",), "change": ("shift",), "changes": ("shifts",),
    "needs": ("requires",), "need": ("require",), "requires": ("needs",), "gets": ("obtains", "receives"),
    "very": ("highly", "quite"), "often": ("frequently",), "usually": ("typically", "normally"),
    "typically": ("usually",), "considering": ("taking into account", "weighing"),
    "consider": ("weigh", "take into account"), "option": ("choice", "alternative"),
    "options": ("choices", "alternatives"), "possibilities": ("alternatives", "other choices"),
    "basic": ("fundamental", "underlying"), "simple": ("straightforward",), "looking": ("examining",),
    "points": ("leads", "steers"), "follows": ("results", "comes"), "describes": ("portrays", "depicts"),
    "described": ("outlined", "presented"), "different": ("distinct",), "same": ("identical",),
    "increase": ("rise",), "decrease": ("drop",), "quickly": ("rapidly",), "slowly": ("gradually",),
    "example": ("instance",), "whole": ("entire",), "part": ("portion",), "amount": ("quantity",),
    "able": ("capable",), "only": ("solely",), "true": ("accurate",), "fact": ("point",),
    "facts": ("points",), "given": ("provided",), "other": ("remaining",),
    "match": ("agree with", "fit"), "strongly": ("firmly",), "supports": ("backs", "favours"),
    "also": ("as well",), "again": ("once more",), "explanation": ("account",), "wrong": ("mistaken",),
    "sensible": ("reasonable",), "reasonable": ("sensible",), "key": ("central",), "central": ("key",),
    "science": ("scientific knowledge",), "principle": ("rule",), "rule": ("principle",),
    "conclusion": ("finding", "verdict"), "choose": ("pick", "select"),
}

_LEAD_INS = ("In short, ", "Put simply, ", "In other words, ", "To sum up, ")
_COMMON_STARTS = frozenset(("The", "This", "That", "These", "It", "A", "An", "In", "When", "There", "If", "So"))


def fact_words(text: str) -> tuple[str, ...]:
    """The words that make a fact: runs of letters and digits, lowercased."""
    return tuple(word.lower() for word in _WORD.findall(text))


@lru_cache(maxsize=65536)
def _pattern(words: tuple[str, ...]) -> re.Pattern:
    return re.compile(r"(?<!\w)" + r"\W+".join(map(re.escape, words)) + r"(?!\w)", re.IGNORECASE)


def _spans(text: str, facts: Sequence[str]) -> list[tuple[int, int, int]]:
    spans = []
    for number, fact in enumerate(facts):
        words = fact_words(fact)
        if words:
            spans.extend((m.start(), m.end(), number) for m in _pattern(words).finditer(text))
    return [s for s in spans
            if not any(o[0] <= s[0] and s[1] <= o[1] and o[1] - o[0] > s[1] - s[0] for o in spans)]


def stated(text: str, facts: Sequence[str]) -> set[int]:
    """The positions in `facts` of the facts that `text` states (see the module docstring)."""
    return {number for _, _, number in _spans(text, facts)}


def is_right(response: str, key: str, distractors: Sequence[str] = ()) -> bool:
    """Whether `response` states the key fact and none of the distractors."""
    return stated(response, (key, *distractors)) == {0}


def change_fact(text: str, fact: str, new: str) -> str:
    """`text` with every occurrence of `fact` replaced by `new`."""
    return _pattern(fact_words(fact)).sub(lambda _: new, text)


def _cased_like(word: str, replacement: str) -> str:
    if len(word) > 1 and word.isupper():
        return replacement.upper()
    if word[:1].isupper():
        return replacement[:1].upper() + replacement[1:]
    return replacement


def paraphrase(text: str, keep: Sequence[str], rng: random.Random) -> str:
    """`text` reworded word by word (about half of the words that have synonyms), never touching
    an occurrence of a fact in `keep`. Text with nothing to reword gets a short lead-in instead."""
    protected = [(start, end) for start, end, _ in _spans(text, keep)]
    candidates = [m for m in _WORD.finditer(text) if m.group().lower() in SYNONYMS
                  and not any(start <= m.start() < end for start, end in protected)]
    if not candidates:
        first = _WORD.match(text)
        if first and first.group() in _COMMON_STARTS and not any(start == 0 for start, _ in protected):
            text = text[:1].lower() + text[1:]
        return rng.choice(_LEAD_INS) + text
    chosen = [m for m in candidates if rng.random() < 0.5] or [rng.choice(candidates)]
    parts, last = [], 0
    for m in chosen:
        parts.append(text[last:m.start()])
        parts.append(_cased_like(m.group(), rng.choice(SYNONYMS[m.group().lower()])))
        last = m.end()
    parts.append(text[last:])
    return "".join(parts)
