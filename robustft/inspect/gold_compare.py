"""How `report --gold` decides that an answer equals the gold one: the run's own comparison.

- multiple choice, numbers, short text: `answers.answers_match` with the run's settings (letters;
  whole numbers exactly, others within `data.numeric_tolerance`; normalised containment).
- open-ended responses: by meaning, as the checker decided: the embedding cosine similarity of the
  response and the gold response reaches `denoise.open_similarity`, with the run's embedder
  (`denoise.embedding_model`, or its server). Comparing texts exactly would call every correct
  paraphrase wrong. A gold row with a `facts` column is compared exactly instead: every fact must
  appear in the response (normalised text, on word boundaries). Facts are a JSON list or
  ``;``-separated.

`GoldComparer.rule` says which rule and threshold were used; the report prints it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Iterable

from ..answers import answers_match, normalize_text
from ..errors import UserError

log = logging.getLogger("robustft")
from ..run.rundir import RunFiles
from ..tasks import task_of

__all__ = ["GoldComparer", "gold_comparer", "parse_facts"]


def parse_facts(value: Any) -> list[str] | None:
    """A gold row's `facts`: a list, a JSON list, or text with facts separated by ';'. None when empty."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError:
                value = text.split(";")
        else:
            value = text.split(";")
    if not isinstance(value, list):
        return None
    facts = [str(f).strip() for f in value if str(f).strip()]
    return facts or None


def _states_all(text: str, facts: list[str]) -> bool:
    body = f" {normalize_text(text)} "
    return all(f" {normalize_text(fact)} " in body for fact in facts if normalize_text(fact))


@dataclass
class GoldComparer:
    task: str
    tolerance: float
    rule: str
    threshold: float | None = None
    facts: dict[str, list[str]] = field(default_factory=dict)
    _vectors: dict[str, Any] = field(default_factory=dict)

    def __call__(self, pred: Any, gold: str, sid: str) -> bool:
        if pred is None:
            return False
        pred = str(pred)
        if self.task != "open":
            return answers_match(pred, gold, self.task, self.tolerance)
        if sid in self.facts:
            return _states_all(pred, self.facts[sid])
        a, b = self._vectors.get(pred), self._vectors.get(gold)
        if a is None or b is None:  # not prepared: only the same text counts
            return answers_match(pred, gold, "open")
        return float(a @ b) >= (self.threshold or 0.0)

    def describe(self) -> dict[str, Any]:
        return {"rule": self.rule, "threshold": self.threshold, "with_facts": len(self.facts)}


REPORT_GIVE_UP_S = 15.0


def _embed(run: RunFiles, texts: list[str]) -> dict[str, Any]:
    """Unit vectors of `texts` with the run's embedder; UserError saying the fix when it cannot."""
    from ..retrieval import TextVectors, make_embedder

    # A report waits on an unreachable embedding server for seconds, not a run's whole give-up time:
    # the fallback the message offers (a `facts` column) is the user's next step.
    chat = run.config.model.model_copy(update={"give_up_after_s": min(run.config.model.give_up_after_s,
                                                                      REPORT_GIVE_UP_S)})

    async def go() -> Any:
        embedder = make_embedder(run.config.denoise, chat)
        try:
            return await TextVectors(embedder, None).vectors(texts)
        finally:
            close = getattr(embedder, "aclose", None) or getattr(embedder, "close", None)
            if close is not None:
                result = close()
                if asyncio.iscoroutine(result):
                    await result

    try:
        asyncio.get_running_loop()
        in_loop = True
    except RuntimeError:
        in_loop = False
    try:
        if in_loop:  # called from inside an event loop (a notebook): run it on a thread of its own
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                vectors = pool.submit(asyncio.run, go()).result()
        else:
            vectors = asyncio.run(go())
    except Exception as exc:  # noqa: BLE001 - any embedder failure becomes the message below
        raise _embed_error(run, exc) from None
    return {text: v for text, v in zip(texts, vectors)}


def _embed_error(run: RunFiles, exc: Exception) -> UserError:
    d = run.config.denoise
    where = f"the embedding server {d.embedding_base_url}" if d.embedding_base_url else f"the local {d.embedding_model}"
    return UserError(f"comparing the open-ended responses with gold by meaning needs the run's embedder ({where}), "
                     f"which failed: {exc}. Start it again, or give the gold file a 'facts' column (every fact must "
                     "appear in a response) to compare without embeddings")


def gold_comparer(run: RunFiles, gold: dict[str, str], facts: dict[str, list[str]] | None = None,
                  texts: Iterable[Any] = ()) -> GoldComparer:
    """The comparer for this run's task; for open-ended data, `texts` (every response to be compared)
    and the gold responses are embedded now, in one batch."""
    task, tol = run.task, run.tolerance
    if task == "numeric":
        return GoldComparer(task, tol, f"numbers: whole numbers exactly, others within a relative tolerance of "
                                       f"{tol:g} (data.numeric_tolerance)")
    if task == "multiple_choice":
        return GoldComparer(task, tol, "the same option letter")
    kind = task_of(task)
    if not kind.compares_meaning:  # text, or a task type from a package: compared as it says
        return GoldComparer(task, tol, kind.comparison)
    threshold = run.config.denoise.open_similarity
    facts = {sid: f for sid, f in (facts or {}).items() if f and sid in gold}
    rule = (f"by meaning: embedding cosine similarity >= {threshold:g} (denoise.open_similarity, the checker's "
            f"threshold) with {run.config.denoise.embedding_model}")
    if facts:
        rule += f"; {len(facts)} gold rows with facts: every fact must appear"
    comparer = GoldComparer(task, tol, rule, threshold, facts)
    needed = {str(t) for t in texts if t is not None} | {g for sid, g in gold.items() if sid not in facts}
    if len(facts) < len(gold) and needed:
        try:
            comparer._vectors = _embed(run, sorted(needed))
        except UserError as e:
            # the report still comes out, and says plainly that it fell back to the same text
            log.warning(str(e))
            comparer.rule = (f"as the same text only (normalised), NOT by meaning: {e}")
            comparer.threshold = None
    return comparer
