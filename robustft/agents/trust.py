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
- **claims**: the response is split into at most `trust_max_claims` claims (sentences); each claim's
  support is its best cosine with any sentence of the experts' responses, mapped like agreement.
  The judge (`claim_open.jinja`, one call each, `trust_claim_checks` in all) checks the least
  supported claims the experts do not support (support below 0.5); when fewer stand out, the
  budget left checks the response as a whole once, as one claim: a second, differently worded
  self-reflection (TLM asks several). That is the check a consistent error needs: the experts share
  the mistake, so every claim is supported and a claim check would go to a filler sentence. A
  checked claim's score is the mean of its support and the verdict's probability (a whole-response
  verdict counts for every claim); the weakest claim is the `claims` signal.
- **recheck** (`trust_recheck`): the judge asked once more whether the response is wrong, in other
  words and without the experts' responses (`recheck_open.jinja`): a third verdict, as TLM asks
  several self-reflections, with its token probability as `recheck`. Asked at the same time as the
  claim checks.

The trust score adds the signals' evidence in log-odds: `sigmoid(BIAS + sum(WEIGHTS[s] x logit(s)))`
over agreement, token_prob, the weakest claim's support, the claim check's, the whole-response
check's and the recheck's verdict probabilities, and every verdict's sign (+1 right, -1 wrong: the
reflection's, the claim check's, the whole-response check's, the recheck's); a signal that could not
be had (an unreadable verdict, a one-sentence response's claims) adds nothing. The weights were
fitted by logistic regression on a calibration split only (the simulator's dev, dev2 and dev3 sets,
1,350 rows; `python -m benchmarks.open_trust --calibrate`,
benchmarks/results/trust_calibration.json) and are frozen: the figures reported are on other
questions and seeds. Unlike a mean, a confident signal is not diluted by lukewarm ones. One term is
not fitted: a response off the question's topic (far from every expert response and from the
question itself: `off_topic`, see OFF_TOPIC_MARGIN) loses log-odds in proportion, so that another
question's response ranks below a right response that wrong verdicts put low. The weights describe the simulator's experts and
judge; a real model's calibration differs, and refitting them on gold-labelled rows of one's own
runs is not built yet (they are constants here).
Every signal and the weakest claim are kept in `trust_signals`, so a reviewer sees why a response
scored as it did.

Calls per sample: 1 reflection + `trust_claim_checks` checks (none with `checker: judge` for the
reflection) + 1 recheck (`trust_recheck`), whatever the length of the response.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
from typing import Any, Mapping

import numpy as np

from ..answers import parse_verdict
from ..errors import ModelCallError
from .runtime import AgentRuntime, failure
from .state import NodeRecord, SampleState, TrustSignals

__all__ = ["FEATURES", "SIGNALS", "VERDICT_PROBABILITIES", "WEIGHTS", "combine", "features", "fit_weights", "scoring_digest", "split_claims",
           "score_trust", "verdict_probability"]

# The signals shown alone beside the trust score (report --gold, benchmarks), and the verdict
# probabilities whose mean is self-reflection alone at the trust score's judge calls ("verdicts").
SIGNALS = ("agreement", "reflection", "token_prob", "claims", "recheck")
VERDICT_PROBABILITIES = ("token_prob", "claim_check", "response_check", "recheck")
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


# The combination: a logistic model over the signals' log-odds (a signal that could not be had adds
# nothing). Fitted by logistic regression on the calibration split (the simulator's *dev* sets at
# 30/50/70 % noise, 450 rows; `python -m benchmarks.open_trust --calibrate`) and frozen here; every
# figure reported is on other questions and seeds. In log-odds a confident signal is not diluted by
# lukewarm ones, as it is in a mean, and the judge's verdict enters with its token probability.
FEATURES = ("agreement", "token_prob", "reflection", "claim_support", "claim_check", "response_check",
            "claim_verdict", "response_verdict", "recheck", "recheck_verdict")
# Verdicts enter as +1 (right) / -1 (wrong), the same for every judge asked: the whole-response check
# is a second self-reflection and counts like the first, and a claim judged wrong counts as such,
# besides the token probability each verdict came with.
VERDICTS = ("reflection", "claim_verdict", "response_verdict", "recheck_verdict")
WEIGHTS = {"agreement": 0.3, "token_prob": 1.429, "reflection": 1.109, "claim_support": 0.366,
           "claim_check": 0.68, "response_check": 1.315, "claim_verdict": 0.388, "response_verdict": 0.978,
           "recheck": 1.23, "recheck_verdict": 1.051}  # benchmarks/results/trust_calibration.json
BIAS = -1.442
# A response off the question's topic (another question's response): not even the closest expert
# response comes near it (cosine more than OFF_TOPIC_MARGIN below open_similarity), and it is no
# nearer the question itself (cosine more than RELEVANCE_MARGIN below open_similarity; a right
# response whose experts both went astray still answers the question). It loses OFF_TOPIC_SLOPE
# log-odds per 0.1 of cosine that the closest expert response lies further below. Not fitted: such
# responses are flagged at any threshold whatever their verdicts, so a logistic fit of right / wrong
# gives this no weight; what it changes is their order at the bottom of the ranking, below right
# responses that wrong verdicts put low (README, Trust scores: the three numbers were chosen on the
# simulator's development sets, from the middle of the range that did best).
OFF_TOPIC_MARGIN = 0.1
RELEVANCE_MARGIN = 0.25
OFF_TOPIC_SLOPE = 2.0
_EPS = 1e-3  # probabilities are clipped to [0.001, 0.999]: no one signal is certain


def scoring_digest() -> str:
    """A digest of the combination's constants: a run directory records it, so that a resumed run
    scored with other weights reruns its samples instead of mixing two scorings."""
    constants = [WEIGHTS, BIAS, _EPS, _SCALE, OFF_TOPIC_MARGIN, RELEVANCE_MARGIN, OFF_TOPIC_SLOPE, FEATURES, VERDICTS]
    return hashlib.sha256(json.dumps(constants, sort_keys=True).encode()).hexdigest()[:12]


def _logit(p: float) -> float:
    p = min(max(float(p), _EPS), 1.0 - _EPS)
    return math.log(p / (1.0 - p))


def features(signals: Mapping[str, Any]) -> dict[str, float]:
    """Each signal as evidence in log-odds (0 when it could not be had): probabilities as their logit,
    verdicts (reflection, claim_verdict, response_verdict) as +1 (right) or -1 (wrong)."""
    out = {}
    for name in FEATURES:
        value = signals.get(name)
        if value is None:
            out[name] = 0.0
        elif name in VERDICTS:
            out[name] = 1.0 if value >= 0.5 else -1.0
        else:
            out[name] = _logit(value)
    return out


def combine(signals: Mapping[str, Any], weights: dict[str, float] | None = None, bias: float | None = None) -> float | None:
    """The trust score: sigmoid(BIAS + sum of WEIGHTS x each signal's log-odds); None without any signal."""
    if all(signals.get(name) is None for name in FEATURES):
        return None
    weights = WEIGHTS if weights is None else weights
    x = features(signals)
    z = (BIAS if bias is None else bias) + sum(weights[name] * x[name] for name in FEATURES)
    z -= OFF_TOPIC_SLOPE * float(signals.get("off_topic") or 0.0)
    return round(_sigmoid(z), 6)


def fit_weights(rows: list[tuple[dict[str, float], bool]], l2: float = 1.0) -> dict[str, Any]:
    """Logistic regression (Newton's method, a light L2 penalty on the weights, none on the bias) of
    right (1) / wrong (0) on the signals' log-odds (`features`): the trust score's
    weights, fitted on the calibration split only."""
    x = np.array([[f[name] for name in FEATURES] + [1.0] for f, _ in rows])
    y = np.array([1.0 if right else 0.0 for _, right in rows])
    w = np.zeros(x.shape[1])
    penalty = l2 * np.diag([1.0] * len(FEATURES) + [0.0])
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-x @ w))
        step = np.linalg.solve((x.T * (p * (1 - p))) @ x + penalty, x.T @ (p - y) + penalty @ w)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    return {"weights": {name: round(float(v), 3) for name, v in zip(FEATURES, w[:-1])},
            "bias": round(float(w[-1]), 3), "rows": len(rows), "right": int(y.sum()), "l2": l2}


async def _claims(rt: AgentRuntime, state: dict, given: str, experts: list[str], answers: dict[str, str | None],
                  updates: SampleState) -> tuple[float | None, TrustSignals]:
    """The weakest claim's score, and what the checks found (`claim_support`, `claim_check`,
    `response_check`). The judge checks the least supported claims that the experts do not support
    (support below 0.5); when fewer stand out than `trust_claim_checks`, the budget left checks the
    response as a whole once, as one claim: a second, differently worded self-reflection (TLM asks
    several), which a shared mistake (a consistent error, every claim supported) can only be caught by."""
    d = rt.config.denoise
    claims = split_claims(given, d.trust_max_claims)
    if not experts or not claims:
        return None, {"claims_split": len(claims)}
    scores: list[float] = []
    best = np.zeros(0)
    if len(claims) >= 2:
        sentences = [s for e in experts for s in split_claims(e, d.trust_max_claims)]
        vectors = await rt.texts.vectors(claims + sentences)  # type: ignore[union-attr]
        sims = vectors[:len(claims)] @ vectors[len(claims):].T
        best = np.clip(sims.max(axis=1), -1.0, 1.0)
        scores = [support(float(s), d.open_similarity) for s in best]
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    unsupported = [i for i in order if scores[i] < 0.5][:d.trust_claim_checks]
    whole = len(unsupported) < d.trust_claim_checks
    info: TrustSignals = {"claims_split": len(claims)}
    if scores:
        weakest_support = min(scores)
        info["claim_support"] = round(weakest_support, 4)
    checks: list[tuple[str, int | None]] = [(claims[i], i) for i in unsupported] + ([(given, None)] if whole else [])
    claim_checks: list[float] = []
    claim_verdicts: list[float] = []
    for n, (claim, i) in enumerate(checks):
        name = "claim" if n == 0 else f"claim{n + 1}"
        record = await rt.ask("judge", "claim", state, parse=parse_verdict, claim=claim, label=given,
                              base_answer=answers.get("base") or "(none)",
                              reasoning_answer=answers.get("reasoning") or "(none)")
        updates.setdefault("nodes", {})[name] = record
        reflection, judged = verdict_probability(record)
        judged = reflection if judged is None else judged
        if judged is None:
            continue
        if i is None:  # the response as a whole: its verdict bears on every claim
            info["response_check"] = round(judged, 4)
            info["response_verdict"] = reflection  # type: ignore[typeddict-item]
            scores = [(s + judged) / 2 for s in scores]
        else:
            claim_checks.append(judged)
            claim_verdicts.append(reflection)  # type: ignore[arg-type]
            scores[i] = (scores[i] + judged) / 2
    if claim_checks:
        info["claim_check"] = round(min(claim_checks), 4)
        info["claim_verdict"] = min(claim_verdicts)
    info["claims_checked"] = len(checks)
    if not scores:
        return None, info
    weakest = min(range(len(claims)), key=lambda i: scores[i])
    return scores[weakest], {**info, "weakest_claim": claims[weakest],
                             "weakest_claim_similarity": round(float(best[weakest]), 4)}


async def _recheck(rt: AgentRuntime, state: dict, given: str) -> NodeRecord | None:
    """The recheck: the judge asked again, in other words and without the experts' responses
    (`recheck_open.jinja`), whether the given response is wrong; None with `trust_recheck` off."""
    if not rt.config.denoise.trust_recheck:
        return None
    return await rt.ask("judge", "recheck", state, parse=parse_verdict, label=given)


def off_topic(similarities: list[float | None], threshold: float, relevance: float | None = None) -> float | None:
    """How far the closest expert response lies below `threshold - OFF_TOPIC_MARGIN` in cosine, in steps of 0.1
    (0 when any lies above it, or when the response is near the question: `relevance`, its cosine with the
    question, at least `threshold - RELEVANCE_MARGIN`; None without a similarity)."""
    known = [s for s in similarities if s is not None]
    if not known:
        return None
    if relevance is not None and relevance >= threshold - RELEVANCE_MARGIN:
        return 0.0
    return round(max(0.0, (threshold - OFF_TOPIC_MARGIN - max(known)) / _SCALE), 4)


async def _relevance(rt: AgentRuntime, state: dict, given: str) -> float | None:
    """The response's cosine with the question it answers (the last user turn of a chat); None without one."""
    question = state.get("question")
    if not question or not given or rt.texts is None:
        return None
    return await rt.texts.similarity(question, given)


async def score_trust(rt: AgentRuntime, state: dict, answers: dict[str, str | None],
                      similarities: list[float | None], judge: NodeRecord | None, *,
                      prefix: str = "") -> SampleState:
    """The state update with `trust` and `trust_signals` (and the node records of the judge, the
    claim checks and the recheck, named `prefix` + judge / claim / recheck); `status: failed` when a
    call keeps failing. `judge`: a verdict already asked for. The response scored is `state["label"]`."""
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
        # the claim checks, the recheck and the relevance do not depend on each other: asked at the same
        # time, and all awaited before a failure of one is raised (none is left running unseen)
        found = await asyncio.gather(_claims(rt, state, given, experts, answers, updates),
                                     _recheck(rt, state, given), _relevance(rt, state, given), return_exceptions=True)
        failed = next((f for f in found if isinstance(f, BaseException)), None)
        if failed is not None:
            raise failed
        (claims, claim_info), recheck, relevance = found
    except ModelCallError as exc:
        return failure(f"{prefix}judge", exc)
    if recheck is not None:
        updates.setdefault("nodes", {})["recheck"] = recheck
        verdict, probability = verdict_probability(recheck)
        if verdict is not None:
            claim_info["recheck"] = round(verdict if probability is None else probability, 4)
            claim_info["recheck_verdict"] = verdict
    if prefix and "nodes" in updates:
        updates["nodes"] = {f"{prefix}{name}": record for name, record in updates["nodes"].items()}
    agreeing = [support(s, d.open_similarity) for s in similarities if s is not None]
    reflection, token_prob = verdict_probability(judge)
    signals: dict[str, float | None] = {"agreement": sum(agreeing) / len(agreeing) if agreeing else None,
                               "reflection": reflection, "token_prob": token_prob, "claims": claims}
    if relevance is not None:
        claim_info["relevance"] = round(relevance, 4)
    away = off_topic(similarities, d.open_similarity, relevance)
    if away:
        claim_info["off_topic"] = away
    trust = combine({**signals, **claim_info})
    shown = {name: None if v is None else round(float(v), 4) for name, v in signals.items()}
    return {**updates, "trust": trust, "trust_signals": {**shown, **claim_info}}
