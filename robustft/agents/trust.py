"""The trust score of a given open-ended response: 0 (surely wrong) to 1 (surely right).

Cleanlab's TLM combines the agreement of resampled answers, the model's self-reflection and token
probabilities; FActScore / SelfCheckGPT check long responses claim by claim. Here, per sample:

- **agreement**: each expert's response (base, reasoning) compared with the given one by meaning
  (embedding cosine `s`), as `sigmoid((s - open_similarity) / 0.1)`: 0.5 at the threshold the
  checker uses, near 1 for a paraphrase, near 0 for another question's response; the mean over the
  experts. No new call.
- **reflection**: the judge's verdict on the given response (`judge_open.jinja`, one call; the judge
  checker's own call when `checker: judge`): 1 right, 0 wrong.
- **token_prob**: that verdict's token probability `c = exp(-score)` of the judge's reply, turned into
  the probability that the given response is right (`c` for "right", `1 - c` for "wrong").
- **claims** (responses of two or more sentences): the response is split into at most
  `trust_max_claims` claims; each claim's support is its best cosine with any sentence of the
  experts' responses, mapped like agreement. The `trust_claim_checks` least supported claims are
  checked by the judge (`claim_open.jinja`, one call each), whose verdict and token probability are
  averaged with the support. The weakest claim is the signal.

The trust score is the mean of the available signals (a signal that could not be had, such as an
unreadable verdict, is left out), bounded above by the weakest claim: at most (1 + claims) / 2, so
one claim nothing supports caps the score of a response at 0.5, however well the rest agrees. (A
plain minimum with the weakest claim ranked worse on the development sets: the claim signal alone
is noisier than the mean; benchmarks/open_trust.py.) Every signal and the weakest claim are kept
in `trust_signals`, so a reviewer sees why a response scored as it did.

Calls per sample: 1 reflection + `trust_claim_checks` claim checks (none with `checker: judge` for
the reflection), whatever the length of the response.
"""

from __future__ import annotations

import math
import re

import numpy as np

from ..answers import parse_verdict
from ..errors import ModelCallError
from .runtime import AgentRuntime, failure
from .state import NodeRecord, SampleState, TrustSignals

__all__ = ["SIGNALS", "combine", "split_claims", "score_trust", "verdict_probability"]

SIGNALS = ("agreement", "reflection", "token_prob", "claims")
_SCALE = 0.1  # cosine units from "as likely right as wrong" to about 73 % either way
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_WORDS = re.compile(r"\w+")


def split_claims(text: str, max_claims: int) -> list[str]:
    """The claims of a response: its sentences (a fragment of fewer than three words is joined to its
    neighbour), joined in neighbouring groups when there are more than `max_claims`."""
    parts: list[str] = []
    for piece in _SENTENCE_END.split(text or ""):
        piece = piece.strip()
        if not piece:
            continue
        if parts and (len(_WORDS.findall(piece)) < 3 or len(_WORDS.findall(parts[-1])) < 3):
            parts[-1] = f"{parts[-1]} {piece}"
        else:
            parts.append(piece)
    if len(parts) > max_claims:
        size = math.ceil(len(parts) / max_claims)
        parts = [" ".join(parts[i:i + size]) for i in range(0, len(parts), size)]
    return parts


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, x))))


def support(similarity: float, threshold: float) -> float:
    """A cosine similarity as the probability of agreeing: 0.5 at `threshold`."""
    return _sigmoid((similarity - threshold) / _SCALE)


def verdict_probability(record: NodeRecord | None) -> tuple[float | None, float | None]:
    """(reflection, token_prob) of a judge record whose answer is Y (wrong) or N (right)."""
    verdict = (record or {}).get("answer")
    if verdict not in ("Y", "N"):
        return None, None
    score = record.get("score")  # type: ignore[union-attr]
    confidence = math.exp(-score) if isinstance(score, (int, float)) and score >= 0 else None
    right = verdict == "N"
    token = None if confidence is None else (confidence if right else 1.0 - confidence)
    return (1.0 if right else 0.0), token


def combine(signals: dict[str, float | None]) -> float | None:
    """The trust score: the mean of the available signals, at most (1 + weakest claim) / 2."""
    values = [signals[name] for name in SIGNALS if signals.get(name) is not None]
    if not values:
        return None
    score = sum(values) / len(values)
    if signals.get("claims") is not None:
        score = min(score, (1.0 + signals["claims"]) / 2)  # type: ignore[operator]
    return round(float(score), 6)


async def _claims(rt: AgentRuntime, state: dict, given: str, experts: list[str], answers: dict[str, str | None],
                  updates: SampleState) -> tuple[float | None, TrustSignals]:
    d = rt.config.denoise
    claims = split_claims(given, d.trust_max_claims)
    if len(claims) < 2 or not experts:
        return None, {"claims_split": len(claims)}
    sentences = [s for e in experts for s in split_claims(e, d.trust_max_claims)]
    vectors = await rt.texts.vectors(claims + sentences)  # type: ignore[union-attr]
    sims = vectors[:len(claims)] @ vectors[len(claims):].T
    best = np.clip(sims.max(axis=1), -1.0, 1.0)
    scores = [support(float(s), d.open_similarity) for s in best]
    order = sorted(range(len(claims)), key=lambda i: scores[i])
    checked = []
    for n, i in enumerate(order[:d.trust_claim_checks]):
        name = "claim" if n == 0 else f"claim{n + 1}"
        record = await rt.ask("judge", "claim", state, parse=parse_verdict, claim=claims[i], label=given,
                              base_answer=answers.get("base") or "(none)",
                              reasoning_answer=answers.get("reasoning") or "(none)")
        updates.setdefault("nodes", {})[name] = record
        _, judged = verdict_probability(record)
        if judged is None and record.get("answer") in ("Y", "N"):
            judged = 1.0 if record["answer"] == "N" else 0.0
        if judged is not None:
            scores[i] = (scores[i] + judged) / 2
        checked.append(i)
    weakest = min(range(len(claims)), key=lambda i: scores[i])
    return scores[weakest], {"claims_split": len(claims), "weakest_claim": claims[weakest],
                             "weakest_claim_similarity": round(float(best[weakest]), 4),
                             "claims_checked": len(checked)}



async def score_trust(rt: AgentRuntime, state: dict, answers: dict[str, str | None],
                      similarities: list[float | None], judge: NodeRecord | None, *,
                      prefix: str = "") -> SampleState:
    """The state update with `trust` and `trust_signals` (and the judge's and claim checks' node
    records, named `prefix` + judge / claim); `status: failed` when a call keeps failing. `judge`: a
    verdict already asked for. The response scored is `state["label"]`."""
    d = rt.config.denoise
    given = state["label"]
    updates = SampleState()
    try:
        if judge is None:
            judge = await rt.ask("judge", "judge", state, parse=parse_verdict, label=given,
                                 base_answer=answers.get("base") or "(none)",
                                 reasoning_answer=answers.get("reasoning") or "(none)")
            updates["nodes"] = {"judge": judge}
        experts = [a for a in answers.values() if a]
        claims, claim_info = await _claims(rt, state, given, experts, answers, updates)
    except ModelCallError as exc:
        return failure(f"{prefix}judge", exc)
    if prefix and "nodes" in updates:
        updates["nodes"] = {f"{prefix}{name}": record for name, record in updates["nodes"].items()}
    agreeing = [support(s, d.open_similarity) for s in similarities if s is not None]
    reflection, token_prob = verdict_probability(judge)
    signals: dict[str, float | None] = {"agreement": sum(agreeing) / len(agreeing) if agreeing else None,
                               "reflection": reflection, "token_prob": token_prob, "claims": claims}
    trust = combine(signals)
    shown = {name: None if v is None else round(float(v), 4) for name, v in signals.items()}
    return {**updates, "trust": trust, "trust_signals": {**shown, **claim_info}}
