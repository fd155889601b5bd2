"""Selection scores from token log-probabilities, and β selection over all relabeled samples.

The paper scores a response by the mean negative log-probability of its generated tokens (it calls
this entropy); lower means the model was more certain. `answer_nll` narrows that to the tokens of
the final answer, which ignores how confidently the model phrased its reasoning.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from .answers import answer_char_span


def mean_nll(logprobs: Sequence[float] | None) -> float | None:
    if not logprobs:
        return None
    return -math.fsum(logprobs) / len(logprobs)


def answer_nll(text: str, tokens: Sequence[str] | None, logprobs: Sequence[float] | None) -> float | None:
    """Mean negative log-probability of the tokens that spell the final answer.

    Token strings from OpenAI-compatible servers concatenate to the response text; when they do not
    (some local tokenizers add byte markers), the whole-response score is the honest fallback.
    """
    if not logprobs:
        return None
    span = answer_char_span(text)
    if not tokens or span is None or len(tokens) != len(logprobs) or "".join(tokens) != text:
        return mean_nll(logprobs)
    start, end = span
    picked, pos = [], 0
    for tok, lp in zip(tokens, logprobs):
        tok_start, pos = pos, pos + len(tok)
        if tok_start < end and pos > start:
            picked.append(lp)
    return mean_nll(picked) if picked else mean_nll(logprobs)


def response_score(method: str, text: str, tokens: Sequence[str] | None,
                   logprobs: Sequence[float] | None) -> float | None:
    if method == "mean_nll":
        return mean_nll(logprobs)
    if method == "answer_nll":
        return answer_nll(text, tokens, logprobs)
    raise ValueError(f"unknown score method {method!r}; use 'mean_nll' or 'answer_nll'")


def select_lowest(scores: Mapping[str, float | None], beta: float) -> tuple[list[str], float | None]:
    """Keep the floor(β·n) ids with the lowest scores; return them (in input order) and the threshold.

    floor matches the paper's "strictly below the β-percentile" for distinct scores. Ties break by
    input order, so a run is reproducible. Missing scores (a backend without logprobs) rank last:
    an uncertainty we could not measure is not a low one.
    """
    if not 0.0 < beta <= 1.0:
        raise ValueError(f"beta must be in (0, 1], got {beta}")
    ids = list(scores)
    order = sorted(range(len(ids)), key=lambda i: (scores[ids[i]] is None, scores[ids[i]] or 0.0, i))
    n_keep = math.floor(beta * len(ids) + 1e-9)
    kept_idx = sorted(order[:n_keep])
    kept = [ids[i] for i in kept_idx]
    kept_scores = [scores[k] for k in kept if scores[k] is not None]
    return kept, (max(kept_scores) if kept_scores else None)
