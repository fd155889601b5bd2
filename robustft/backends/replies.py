"""The replies of an OpenAI-compatible server as typed models, checked before anything uses them.

A reply is data from another machine: a field of the wrong type, a logprob that is NaN, infinite
or positive, a token count that is negative or absurd, is a *malformed reply* (retried like a 5xx,
charged to the replica that sent it), never a value that reaches a score, a selection or a file.

    reply = chat_reply(data, where)          # ChatReply, or MalformedReply naming the field
    vectors = embedding_reply(data, n, where)  # a float32 matrix, one row per text sent
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import EmbeddingDimensionError
from .http import MalformedReply

# No single call reads or writes more tokens than this; a larger count is a broken server, and
# summing such counts would overflow the run's totals.
MAX_TOKENS_PER_CALL = 100_000_000

TokenCount = Annotated[int, Field(ge=0, le=MAX_TOKENS_PER_CALL)]


class _Model(BaseModel):
    # strict: "NaN" or "-0.5" as a string is not a number, 1.0 is not a count; unknown fields are ignored.
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class Logprobs(_Model):
    # Per token {token, logprob, top_logprobs}: checked by `token_logprobs`, which does the work of
    # a typed list of models at a twentieth of its cost (it runs for every token of every reply).
    content: list | None = None


class ContentPart(_Model):
    text: str = ""


class Message(_Model):
    content: str | list[ContentPart] | None = None


class Choice(_Model):
    message: Message
    logprobs: Logprobs | None = None


class PromptTokensDetails(_Model):
    cached_tokens: TokenCount | None = None  # read from the server's prompt cache (priced apart)


class Usage(_Model):
    prompt_tokens: TokenCount | None = None
    completion_tokens: TokenCount | None = None
    prompt_tokens_details: PromptTokensDetails | None = None


class ChatReply(_Model):
    choices: list[Choice] = Field(min_length=1)
    usage: Usage | None = None

    @property
    def text(self) -> str | None:
        content = self.choices[0].message.content
        if isinstance(content, list):  # content parts
            return "".join(part.text for part in content)
        return content


def chat_reply(data: Any, url: str) -> ChatReply:
    try:
        reply = ChatReply.model_validate(data)
    except ValidationError as exc:
        raise MalformedReply(f"malformed reply from {url}: {_field(exc)}") from None
    if reply.text is None:
        raise MalformedReply(f"malformed reply from {url}: choices[0].message.content: no text content")
    return reply


def token_logprobs(content: list, entropies: bool, url: str
                   ) -> tuple[list[float], list[str], list[float] | None]:
    """(logprobs, tokens, per-token entropies or None) of `choices[0].logprobs.content`; every
    logprob a finite number <= 0, every token a string."""
    where = "choices[0].logprobs.content"
    try:
        logprobs = [t["logprob"] for t in content]
        tokens = [t.get("token") or "" for t in content]
    except (KeyError, TypeError, AttributeError):
        raise MalformedReply(f"malformed reply from {url}: {where}: not a list of {{token, logprob}}") from None
    _check_logprobs(logprobs, url, where + "[*].logprob")
    if not all(type(t) is str for t in tokens):
        raise MalformedReply(f"malformed reply from {url}: {where}[*].token: not a string")
    token_entropies = None
    if entropies and all(isinstance(t, dict) and t.get("top_logprobs") for t in content):
        try:
            token_entropies = [_token_entropy(t) for t in content]
        except (KeyError, TypeError, ValueError, AttributeError):
            raise MalformedReply(f"malformed reply from {url}: {where}[*].top_logprobs: not a list of "
                                 "{token, logprob} with finite logprobs <= 0") from None
        if not math.isfinite(sum(token_entropies)):
            raise MalformedReply(f"malformed reply from {url}: {where}[*].top_logprobs[*].logprob: not a finite "
                                 "number <= 0")
    return logprobs, tokens, token_entropies


def _check_logprobs(values: list, url: str, where: str) -> None:
    # One sum and one max: a string makes either raise TypeError, NaN or an infinity makes the sum
    # non-finite. (JSON itself, as orjson reads it, admits neither; a server may send "NaN".)
    try:
        finite = math.isfinite(sum(values)) and (not values or max(values) <= 0.0)
    except TypeError:
        raise MalformedReply(f"malformed reply from {url}: {where}: not a number") from None
    if not finite:
        raise MalformedReply(f"malformed reply from {url}: {where}: not a finite number <= 0")


def _token_entropy(entry: dict, exp=math.exp, log=math.log) -> float:
    """`topk_entropy` of one position's top alternatives and the sampled token (vLLM lists it
    first; OpenAI leaves it out when it is not in the top k), inlined: it runs for every token of
    every reply, and this is 2.5 times faster than building the list for `topk_entropy`. A logprob
    that is not a number <= 0 raises ValueError (a string TypeError; -inf makes the result NaN)."""
    token = entry["token"]
    h = total = 0.0
    listed = False
    for alt in entry["top_logprobs"]:
        lp = alt["logprob"]
        if not listed and alt["token"] == token:
            listed = True
        if lp < 0.0:
            p = exp(lp)
            total += p
            h -= p * lp
        elif lp == 0.0:
            total += 1.0
        else:  # positive, +inf or NaN
            raise ValueError(lp)
    if not listed:
        lp = entry["logprob"]  # checked by the caller
        if lp < 0.0:
            p = exp(lp)
            total += p
            h -= p * lp
        else:
            total += 1.0
    rest = 1.0 - total
    if rest > 1e-12:
        h -= rest * log(rest)
    return h


def embedding_reply(data: Any, count: int, url: str, model: str) -> np.ndarray:
    """The vectors of an `/embeddings` reply in input order, as float32 rows: exactly `count` of
    them, every value finite, all of one dimension (else `EmbeddingDimensionError` naming `model`:
    no retry makes a server that mixes dimensions consistent)."""
    items = data.get("data") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise MalformedReply(f"malformed reply from {url}: data: not a list")
    if len(items) != count:
        raise MalformedReply(f"malformed reply from {url}: data: {len(items)} embeddings for {count} texts")
    ordered: list[Any] = [None] * count
    for i, item in enumerate(items):
        index = item.get("index") if isinstance(item, dict) else None
        if type(index) is not int or not 0 <= index < count or ordered[index] is not None:
            raise MalformedReply(f"malformed reply from {url}: data[{i}].index: missing, repeated or out of range")
        vector = item.get("embedding")
        if not isinstance(vector, list) or not vector:
            raise MalformedReply(f"malformed reply from {url}: data[{i}].embedding: not a list of numbers")
        ordered[index] = vector
    first = len(ordered[0])
    for i, vector in enumerate(ordered):
        if len(vector) != first:
            raise EmbeddingDimensionError(model, first, len(vector), before_where=f"data[0] of one reply from {url}",
                                          now_where=f"data[{i}] of the same reply")
    try:
        matrix = np.asarray(ordered, dtype=np.float32)
    except (TypeError, ValueError):
        raise MalformedReply(f"malformed reply from {url}: data[*].embedding: not a list of numbers") from None
    if not np.isfinite(matrix).all():
        raise MalformedReply(f"malformed reply from {url}: data[*].embedding: a value that is not finite")
    return matrix


def _field(exc: ValidationError) -> str:
    """The first failing field as a path (`choices[0].logprobs.content[3].logprob`) and why."""
    error = exc.errors(include_url=False, include_input=False)[0]
    path = ""
    for part in error["loc"]:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not str(part).startswith(("list[", "str", "function")):  # union branch names
            path += f".{part}" if path else str(part)
    return f"{path or '(the reply)'}: {error['msg']}"
