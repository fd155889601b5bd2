"""Selection scores from token log-probabilities, and β selection over all relabeled samples.

Three scores of a reply; lower means the model was more certain:

- `mean_nll` (the paper's, which it calls entropy): the mean negative log-probability of the
  generated tokens, i.e. the surprise of the tokens actually sampled.
- `answer_nll`: the same over the tokens of the final answer only, ignoring how confidently the
  model phrased its reasoning. For open-ended responses the answer is every line after the last
  `Answer:` marker, so the whole response is scored, and no reasoning before it.
- `entropy`: the mean over generated tokens of the predictive entropy of the model's next-token
  distribution, i.e. how spread out the model's belief was at each step, whatever it sampled.
  Servers return only the top-k alternatives (`model.top_logprobs`); the probability mass outside
  them, 1 - (sum of their probabilities), is counted as one more outcome (`topk_entropy`). That
  is the least entropy any full distribution with those top-k tokens can have: a lower bound,
  exact when the top k hold all the mass, never an overstatement of the model's uncertainty.

A score is a function ``score(gen, task) -> float | None`` of a reply (`Scored`) and the task
type's name, registered by name (`denoise.score`) in the entry-point group `robustft.scores`:
robustft's own below, a package's in its pyproject.toml:

    [project.entry-points."robustft.scores"]
    last_token = "my_package.scores:last_token"

A name nobody registered is an error naming `denoise.score` when a run starts.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

from .answers import answer_char_span
from .plugins import Registry


class Scored(Protocol):
    """What a score is computed from: a reply's text and per-token figures (a backend's `Generation`)."""

    text: str
    tokens: Sequence[str] | None
    token_logprobs: Sequence[float] | None
    token_entropies: Sequence[float] | None



def mean_nll(logprobs: Sequence[float] | None) -> float | None:
    if not logprobs:
        return None
    return -math.fsum(logprobs) / len(logprobs)


def answer_nll(text: str, tokens: Sequence[str] | None, logprobs: Sequence[float] | None,
               task: str | None = None) -> float | None:
    """Mean negative log-probability of the tokens that spell the final answer (for `task` "open":
    the whole response after the last `Answer:` marker, see `answers.answer_char_span`).

    Token strings from OpenAI-compatible servers concatenate to the response text; when they do not
    (some local tokenizers add byte markers), the whole-response score is the honest fallback.
    """
    if not logprobs:
        return None
    span = answer_char_span(text, task)
    if not tokens or span is None or len(tokens) != len(logprobs) or "".join(tokens) != text:
        return mean_nll(logprobs)
    start, end = span
    picked, pos = [], 0
    for tok, lp in zip(tokens, logprobs):
        tok_start, pos = pos, pos + len(tok)
        if tok_start < end and pos > start:
            picked.append(lp)
    return mean_nll(picked) if picked else mean_nll(logprobs)


def topk_entropy(logprobs: Iterable[float]) -> float:
    """Entropy in nats of a next-token distribution known by the log-probabilities of some of its
    tokens (the top k): -sum p log p over them, plus the rest of the mass as one more outcome."""
    h = 0.0
    total = 0.0
    for lp in logprobs:
        if lp > -700.0:  # exp underflows below this; such a token adds nothing
            p = math.exp(lp) if lp < 0.0 else 1.0
            total += p
            h -= p * (lp if lp < 0.0 else 0.0)
    rest = 1.0 - total
    if rest > 1e-12:
        h -= rest * math.log(rest)
    return h


def mean_entropy(entropies: Sequence[float] | None) -> float | None:
    if not entropies:
        return None
    return math.fsum(entropies) / len(entropies)


def _mean_nll(gen: Scored, task: str | None) -> float | None:
    return mean_nll(gen.token_logprobs)


def _answer_nll(gen: Scored, task: str | None) -> float | None:
    return answer_nll(gen.text, gen.tokens, gen.token_logprobs, task)


def _entropy(gen: Scored, task: str | None) -> float | None:
    return mean_entropy(gen.token_entropies)


Score = Callable[[Scored, "str | None"], "float | None"]
BUILTIN = {"mean_nll": "robustft.entropy:_mean_nll", "answer_nll": "robustft.entropy:_answer_nll",
           "entropy": "robustft.entropy:_entropy"}
SCORES: tuple[str, ...] = tuple(BUILTIN)  # robustft's own


def _make(loaded: Any, name: str) -> Score:
    if not callable(loaded):
        raise TypeError(f"{type(loaded).__name__} is not a function score(gen, task) -> float | None")
    return loaded


REGISTRY: Registry[Score] = Registry("robustft.scores", "denoise.score", "score method", BUILTIN, _make)


def response_score(method: str, gen: Scored, task: str | None = None) -> float | None:
    """The selection score `method` (a registered score's name) of a reply; None when the backend gave
    nothing to compute it from (no logprobs, or no top-k alternatives for `entropy`), or nothing
    finite (a local model's -inf logprob): NaN and infinity never reach a selection or a file."""
    score = REGISTRY.get(method)(gen, task)
    return score if score is not None and math.isfinite(score) else None


def select_lowest(scores: Mapping[str, float | None], beta: float) -> tuple[list[str], float | None]:
    """Keep the floor(β·n) ids with the lowest scores; return them (in input order) and the threshold.

    floor matches the paper's "strictly below the β-percentile" for distinct scores. Ties break by
    input order, so a run is reproducible. Missing scores (a backend without logprobs) rank last:
    an uncertainty we could not measure is not a low one; so does a NaN or infinite one.
    """
    if not 0.0 < beta <= 1.0:
        raise ValueError(f"beta must be in (0, 1], got {beta}")
    scores = {k: (v if v is not None and math.isfinite(v) else None) for k, v in scores.items()}
    ids = list(scores)
    order = sorted(range(len(ids)), key=lambda i: (scores[ids[i]] is None, scores[ids[i]] or 0.0, i))
    n_keep = math.floor(beta * len(ids) + 1e-9)
    kept_idx = sorted(order[:n_keep])
    kept = [ids[i] for i in kept_idx]
    kept_scores = [scores[k] for k in kept if scores[k] is not None]
    return kept, (max(kept_scores) if kept_scores else None)
