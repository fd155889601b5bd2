"""The simulated expert: a request body in, a `Reply` out. The rules are in the package docstring."""

from __future__ import annotations

import hashlib
import itertools
import math
import random
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..answers import asks_for_bare_answer, letter_index, letters, option_text, parse_number
from ..tasks import task_of
from ..errors import ConfigError
from . import facts
from .embeddings import DIMENSIONS, embed, encode_base64
from .faults import ENDPOINT_FAULTS, FAULT_KINDS, parse_faults
from .gold import GoldItem
from .index import QuestionIndex, normalize_space

__all__ = ["Reply", "SimModel"]

_TOKEN = re.compile(r"\s*\S+")
_STEP_BY_STEP = re.compile(r"step\s+by\s+step", re.IGNORECASE)
_OPTION_LINE = re.compile(r"^[ \t]*\(?([A-Z])[.)][ \t]", re.MULTILINE)
_VERDICT_LINE = re.compile(r"^[^\n]*\bY\b[^\n]*\bN\b[^\n]*$", re.MULTILINE)
_GIVEN_LABEL = re.compile(r"^[^\n:]*\bgiven\b[^\n:]*:", re.IGNORECASE | re.MULTILINE)
_CLAIM_LABEL = re.compile(r"^[^\n:]*\bgiven\b[^\n:]*\bclaim\b[^\n:]*:", re.IGNORECASE | re.MULTILINE)
_LABELLED_LINE = re.compile(r"^[ \t]*[A-Z][^\n:]{0,60}:", re.MULTILINE)
_BARE_LABEL_LINE = re.compile(r"^[ \t]*[A-Z][^\n:]{0,60}:[ \t]*$", re.MULTILINE)
_Y_TO_N = re.compile(r"\bY\b(.*?)\bN\b")
_SAYS_WRONG = re.compile(r"\b(?:wrong|incorrect|false|noisy|mislabell?ed|erroneous|inaccurate|mistaken|"
                         r"disagrees?|not\s+(?:right|correct|true|accurate|valid))\b", re.IGNORECASE)
_SAYS_RIGHT = re.compile(r"\b(?:right|correct|true|accurate|valid|agrees?|consistent)\b", re.IGNORECASE)
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")
_LETTER = re.compile(r"\(?([A-Z])\)?(?:[.)]|\s|$)")
MAX_EMBEDDING_DIMENSIONS = 4096

_OPENERS = ("Let me think about this step by step.", "Let us work through this step by step.",
            "I will reason about this step by step.")
_MIDDLES = ("First, consider what the question is really asking.",
            "The key facts point in one direction.",
            "Each option has to be weighed against what is known.",
            "Recalling the relevant principle helps here.",
            "Checking the reasoning once more, it holds up.",
            "Some of the alternatives can be ruled out quickly.")
_MALFORMED = ("I am not sure how to respond to this.",
              "This is a difficult question and several readings are possible.",
              "Let me think about this step by step. The key facts point in one direction, but I cannot settle it.")
_FILLER = ("the", "a", "is", "of", "and", "to", "in", "it", "that", "this")


@dataclass
class Reply:
    """What the server sends: `payload` as JSON (or `body` as is), after holding it `hold_s` seconds."""

    status: int
    payload: dict | None = None
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    hold_s: float = 0.0

    def encoded(self) -> bytes:
        return self.body if self.body is not None else orjson.dumps(self.payload)


@dataclass
class _Decision:
    answer: str
    correct: bool
    kind: str  # choice | verdict | numeric | text | open | unknown
    option_text: str | None = None
    # Whether the reply's logprobs look sure; None: as sure as it is right (see the package docstring).
    sure: bool | None = None


@dataclass
class _Request:
    model: str
    prompt: str
    n_messages: int
    logprobs: bool
    top_logprobs: int
    max_tokens: int | None
    seed: int | None
    system: str = ""           # the system turns: one asking for a bare answer is obeyed, as many models do


class _BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


def _digest(*parts: object) -> int:
    data = "\x1f".join(map(str, parts)).encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def _uniform(*parts: object) -> float:
    return _digest(*parts) / 2.0 ** 64


def _rng(*parts: object) -> random.Random:
    return random.Random(_digest(*parts))


def _error(message: str, kind: str, *, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _json_body(body: Any) -> Any:
    if not isinstance(body, (bytes, bytearray, memoryview, str)):
        return body
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _BadRequest(f"the request body is not valid JSON: {exc}") from None


def _int(body: dict, key: str, low: int, high: int | None = None) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bounds = f"from {low} to {high}" if high is not None else f">= {low}"
        raise _BadRequest(f"'{key}' must be an integer {bounds}, got {value!r}", key)
    return value


def _model_name(body: Any) -> str:
    if not isinstance(body, dict):
        raise _BadRequest("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _BadRequest("'model' is required (any name; the simulated server serves every name)", "model")
    return model


def _prompt(messages: Any) -> str:
    if not isinstance(messages, list) or not messages:
        raise _BadRequest("'messages' must be a non-empty list of {role, content} objects", "messages")
    parts = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise _BadRequest(f"messages[{i}] must be an object with a string 'role'", "messages")
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts.extend(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
        elif content is not None:
            raise _BadRequest(f"messages[{i}].content must be a string or a list of parts", "messages")
    return "\n".join(parts)


def _chat_request(body: Any) -> _Request:
    model = _model_name(body)
    prompt = _prompt(body.get("messages"))
    if body.get("stream"):
        raise _BadRequest("streaming is not supported by the simulated server; send stream=false", "stream")
    if _int(body, "n", 1) not in (None, 1):
        raise _BadRequest("only n=1 is supported", "n")
    temperature = body.get("temperature")
    if temperature is not None and (isinstance(temperature, bool) or not isinstance(temperature, (int, float))
                                    or not 0 <= temperature <= 2):
        raise _BadRequest(f"'temperature' must be a number from 0 to 2, got {temperature!r}", "temperature")
    logprobs = body.get("logprobs")
    if logprobs is not None and not isinstance(logprobs, bool):
        raise _BadRequest("'logprobs' must be true or false", "logprobs")
    top = _int(body, "top_logprobs", 0, 20)
    if top and not logprobs:
        raise _BadRequest("'top_logprobs' needs 'logprobs': true", "top_logprobs")
    max_tokens = _int(body, "max_tokens", 1)
    max_completion = _int(body, "max_completion_tokens", 1)
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise _BadRequest(f"'seed' must be an integer, got {seed!r}", "seed")
    system = "\n".join(str(m.get("content")) for m in body["messages"]
                       if isinstance(m, dict) and m.get("role") == "system" and isinstance(m.get("content"), str))
    return _Request(model=model, prompt=prompt, n_messages=len(body["messages"]), logprobs=bool(logprobs),
                    top_logprobs=top or 0, max_tokens=max_completion or max_tokens, seed=seed, system=system)


def _plain(text: str) -> str:
    return normalize_space(text).strip(" .").lower()


def _question_span(prompt: str, question: str) -> tuple[int, int]:
    """Where the last occurrence of `question` lies in `prompt` (whitespace runs as one space)."""
    pattern = re.compile(r"\s+".join(map(re.escape, question.split())))
    last = None
    for last in pattern.finditer(prompt):
        pass
    return (last.start(), last.end()) if last else (len(prompt), len(prompt))


def _verdict_request(prompt: str, span: tuple[int, int] | None) -> re.Match | None:
    """The first line asking for a Y/N verdict, outside the target question and its option lines."""
    for match in _VERDICT_LINE.finditer(prompt):
        inside = span is not None and span[0] <= match.start() < span[1]
        if not inside and not _OPTION_LINE.match(match.group()):
            return match
    return None


def _y_means_wrong(prompt: str, verdict: re.Match) -> bool:
    line = verdict.group()
    before = prompt[:verdict.start()].rstrip().rsplit("\n", 1)[-1]
    between = _Y_TO_N.search(line)
    for text in (between.group(1) if between else "", line, before):
        wrong, right = _SAYS_WRONG.search(text), _SAYS_RIGHT.search(text)
        if wrong or right:
            return bool(wrong) and (not right or wrong.start() <= right.start())
    return True


def _given_text(prompt: str, span: tuple[int, int], verdict: re.Match) -> str:
    """The response a judge request asks about (see the package docstring)."""
    label = _GIVEN_LABEL.search(prompt, span[1])
    if label is None:
        before = list(_GIVEN_LABEL.finditer(prompt, 0, span[0]))
        label = before[-1] if before else None
    start = label.end() if label else span[1]
    ends = [len(prompt)]
    if verdict.start() >= start:
        ends.append(verdict.start())
    if label:
        following = _LABELLED_LINE.search(prompt, start)
        if following:
            ends.append(following.start())
    text = prompt[start:min(ends)]
    if not label:
        text = "\n".join(line for line in text.split("\n")
                         if not _OPTION_LINE.match(line) and not _BARE_LABEL_LINE.match(line))
    return text.strip()


class SimModel:
    """Answers chat completion and embedding requests for a set of gold items (see the package docstring).

    Counters: `requests` (chat completion requests, bad ones included), `errors` (HTTP 500s from
    `error_rate`), `malformed` (replies without an answer line from `malformed_rate`), `unmatched`
    (chat prompts holding no gold question), `bare` (replies that are only the answer, because a system
    prompt asked for that: "answer with just the name"), `faults` (injected faults by kind).
    """

    def __init__(self, items: list[GoldItem], *, accuracy: float = 0.8, seed: int = 0, error_rate: float = 0.0,
                 malformed_rate: float = 0.0, calibration: float = 0.8, faults: Any = None,
                 fault_rate: float = 0.0, retry_after_s: float = 1.0, hang_s: float = 150.0,
                 task: str | None = None):
        for name, value in (("accuracy", accuracy), ("error_rate", error_rate), ("malformed_rate", malformed_rate),
                            ("calibration", calibration), ("fault_rate", fault_rate)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ConfigError(f"{name} must be a number from 0 to 1, got {value!r}")
        for name, value in (("retry_after_s", retry_after_s), ("hang_s", hang_s)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 3600:
                raise ConfigError(f"{name} must be a number of seconds from 0 to 3600, got {value!r}")
        if not items:
            raise ConfigError("the simulated server needs at least one gold question")
        self.items = items
        self.index = QuestionIndex(items)
        self.accuracy, self.seed = float(accuracy), seed
        self.error_rate, self.malformed_rate = float(error_rate), float(malformed_rate)
        self.calibration = float(calibration)
        self.fault_kinds = parse_faults(faults)
        self.fault_rate = float(fault_rate)
        self.retry_after_s, self.hang_s = float(retry_after_s), float(hang_s)
        self.multiple_choice = all(item.options is not None for item in items)
        # a task type named for the server (a package's, say): it writes the wrong short answers
        self.task = task_of(task) if task is not None else None
        self._text_answers = sorted({item.answer for item in items if item.options is None and not item.is_open})
        self._open_items = [item for item in items if item.is_open]
        self._open_keys = sorted({item.key for item in self._open_items})  # type: ignore[misc]
        self._track_attempts = bool(self.error_rate or self.malformed_rate or self.fault_rate)
        self._lock = threading.Lock()
        self._seen: dict[int, int] = {}
        self._ids = itertools.count(1)
        self.requests = 0
        self.errors = 0
        self.malformed = 0
        self.bare = 0
        self.unmatched = 0
        self.faults: Counter[str] = Counter()

    # -- per-attempt draws --------------------------------------------------------------------

    def _attempt(self, *request: object) -> int:
        """How many times this exact request came before (0 the first time)."""
        if not self._track_attempts:
            return 0
        key = _digest(*request)
        with self._lock:
            attempt = self._seen.get(key, 0)
            self._seen[key] = attempt + 1
        return attempt

    def _count(self, counter: str) -> None:
        with self._lock:
            setattr(self, counter, getattr(self, counter) + 1)

    def _fault(self, draw: tuple, applicable: set[str]) -> str | None:
        """The fault this attempt suffers, if any: one of the chosen kinds that apply to it."""
        if not self.fault_rate or _uniform("fault", *draw) >= self.fault_rate:
            return None
        kinds = [kind for kind in self.fault_kinds if kind in applicable]
        if not kinds:
            return None
        kind = kinds[int(_uniform("fault-kind", *draw) * len(kinds))]
        with self._lock:
            self.faults[kind] += 1
        return kind

    def _fault_reply(self, kind: str) -> Reply | None:
        if kind == "500":
            return Reply(500, _error("simulated server error (fault injection); retry the request", "server_error",
                                     code="simulated_error"))
        if kind == "429":
            return Reply(429, _error("simulated rate limit (fault injection); retry after the Retry-After delay",
                                     "rate_limit_error", code="rate_limit_exceeded"),
                         headers={"Retry-After": f"{self.retry_after_s:g}"})
        return None

    # -- answers ------------------------------------------------------------------------------

    def _wrong_answer(self, item: GoldItem, rng: random.Random) -> str:
        if self.task is not None and item.options is None:
            return self.task.sim_wrong_answer(item.answer, self._text_answers, rng)
        if item.options is not None:
            others = [letter for letter in letters(len(item.options)) if letter != item.answer]
            return rng.choice(others) if others else item.answer
        number = item.answer.replace(",", "")
        if _NUMBER.fullmatch(number):
            decimals = len(number.split(".")[1]) if "." in number else 0
            value = float(number)
            delta = max(1.0, abs(value) * rng.uniform(0.1, 0.5)) * rng.choice((-1, 1))
            return f"{round(value + delta, decimals):.{decimals}f}"
        others = [a for a in self._text_answers if a != item.answer]
        return rng.choice(others) if others else f"not {item.answer}"

    def _open_response(self, item: GoldItem, correct: bool, rng: random.Random) -> str:
        key = item.key or ""
        if correct:
            text = facts.paraphrase(item.answer, (key,), rng)
            return text if facts.is_right(text, key, item.distractors) else item.answer
        ways = ["changed", "other"]
        rng.shuffle(ways)
        for way in ways:
            if way == "changed":
                replacements = list(item.distractors) or [k for k in self._open_keys
                                                          if facts.fact_words(k) != facts.fact_words(key)]
                if not replacements:
                    continue
                new = rng.choice(replacements)
                text = facts.paraphrase(facts.change_fact(item.answer, key, new), (new,), rng)
            else:
                others = [o for o in self._open_items if normalize_space(o.question) != normalize_space(item.question)]
                if not others:
                    continue
                other = rng.choice(others)
                text = facts.paraphrase(other.answer, (other.key or "",), rng)
            if not facts.is_right(text, key, item.distractors):
                return text
        return "It cannot be determined from the information given."

    def _hard_response(self, item: GoldItem, rng: random.Random) -> tuple[str, bool]:
        """A reply to a hard open-ended question (package docstring): the response and whether the
        model is sure of it."""
        key = item.key or ""
        if item.confabulates:
            fact = rng.choice((key, *item.distractors))
            sure = False
        elif rng.random() < self.accuracy:
            fact, sure = item.mistake or key, True
        else:
            fact, sure = key, True
        text = item.answer if fact == key else facts.change_fact(item.answer, key, fact)
        return facts.paraphrase(text, (fact,), rng), sure

    def _given_is_right(self, given: str, item: GoldItem, claim: bool = False) -> bool:
        if item.is_open and claim:
            return facts.stated(given, (item.key or "", *item.distractors)) <= {0}
        if item.is_open:
            return facts.is_right(given, item.key or "", item.distractors)
        line = next((line for line in given.split("\n") if line.strip()), "")
        candidate = line.rsplit(":", 1)[-1].strip()
        if item.options is not None:
            texts = [_plain(option) for option in item.options]
            if _plain(candidate) in texts:  # before letters: an option may start with "A "
                return letter_index(item.answer) == texts.index(_plain(candidate))
            letter = _LETTER.match(candidate)
            return bool(letter) and letter.group(1) == item.answer
        number, gold = parse_number(candidate), parse_number(item.answer)
        if number is not None and gold is not None:
            return math.isclose(number, gold, rel_tol=1e-9, abs_tol=1e-12)
        return _plain(candidate) == _plain(item.answer)

    def _decide(self, prompt: str, item: GoldItem | None, rng: random.Random) -> _Decision:
        span = _question_span(prompt, item.question) if item is not None and _VERDICT_LINE.search(prompt) else None
        verdict = _verdict_request(prompt, span) if span is not None or item is None else None
        if item is None:
            if verdict is not None:
                return _Decision(rng.choice("YN"), False, "verdict")
            seen = sorted(set(_OPTION_LINE.findall(prompt)))
            if not seen and self.multiple_choice:
                seen = letters(4)
            return _Decision(rng.choice(seen) if seen else "unknown", False, "unknown")
        correct = rng.random() < self.accuracy
        if verdict is not None:
            if item.is_hard:  # a question the model does not know well: its verdicts are less often right
                correct = rng.random() < (0.5 + self.accuracy) / 2
            claim = _CLAIM_LABEL.search(prompt, span[1]) is not None  # type: ignore[index]
            right = self._given_is_right(_given_text(prompt, span, verdict), item, claim)  # type: ignore[arg-type]
            says_right = right if correct else not right
            says_yes = not says_right if _y_means_wrong(prompt, verdict) else says_right
            return _Decision("Y" if says_yes else "N", correct, "verdict")
        if item.is_hard:
            response, sure = self._hard_response(item, rng)
            return _Decision(response, facts.is_right(response, item.key or "", item.distractors), "open", sure=sure)
        if item.is_open:
            response = self._open_response(item, correct, rng)
            return _Decision(response, facts.is_right(response, item.key or "", item.distractors), "open")
        answer = item.answer if correct else self._wrong_answer(item, rng)
        if item.options is not None:
            return _Decision(answer, correct, "choice", option_text(answer, list(item.options)))
        return _Decision(answer, correct, "numeric" if parse_number(item.answer) is not None else "text")

    @staticmethod
    def _not_an_option(decision: _Decision, item: GoldItem | None) -> str:
        if decision.kind == "choice" and item is not None and item.options is not None:
            past = len(item.options)  # the letter after the last option
            return letters(past + 1)[-1] if past < 26 else "?"
        return "Maybe" if decision.kind == "verdict" else "several"

    @staticmethod
    def _text(prompt: str, decision: _Decision, malformed: bool, rng: random.Random) -> str:
        if malformed:
            return rng.choice(_MALFORMED)
        if not _STEP_BY_STEP.search(prompt):
            return f"Answer: {decision.answer}"
        middle = rng.sample(_MIDDLES, 2)
        if decision.option_text is not None:
            ending = f"The option that fits best is \"{decision.option_text}\"."
        elif decision.kind == "verdict":
            ending = "So my verdict on the given answer is settled."
        elif decision.kind == "open":
            ending = "So the response below should say it plainly."
        else:
            ending = f"This gives {decision.answer}."
        return " ".join([rng.choice(_OPENERS), *middle, ending]) + f"\nAnswer: {decision.answer}"

    def _logprobs(self, tokens: list[str], correct: bool, top: int, rng: random.Random) -> list[dict]:
        if rng.random() < self.calibration:
            position = rng.uniform(0.0, 0.5) if correct else rng.uniform(0.5, 1.0)
        else:
            position = rng.random()
        level = 0.02 + 1.5 * position  # the reply's expected mean negative log-probability
        draw = rng.random
        content = []
        for token in tokens:
            logprob = -max(1e-6, level * (draw() + draw()))
            entry = {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8")), "top_logprobs": []}
            if top:
                rest = max(0.0, 1.0 - math.exp(logprob))
                alternatives = [t for t in _FILLER if t != token][:top - 1]
                tops = [(token, logprob)] + [
                    (alt, math.log(max(rest * 0.5 ** (i + 1), 1e-12))) for i, alt in enumerate(alternatives)]
                tops.sort(key=lambda t: -t[1])
                entry["top_logprobs"] = [{"token": t, "logprob": lp, "bytes": list(t.encode("utf-8"))}
                                         for t, lp in tops]
            content.append(entry)
        return content

    # -- endpoints ----------------------------------------------------------------------------

    def complete(self, body: Any) -> Reply:
        """The reply to a chat completions request body (parsed, or raw JSON bytes)."""
        self._count("requests")
        try:
            request = _chat_request(_json_body(body))
        except _BadRequest as exc:
            return Reply(400, _error(str(exc), "invalid_request_error", param=exc.param))
        prompt = request.prompt
        draw = (self.seed, request.seed, self._attempt("chat", request.seed, prompt), prompt)
        if self.error_rate and _uniform("error", *draw) < self.error_rate:
            self._count("errors")
            return Reply(500, _error("simulated server error (error_rate); retry the request", "server_error",
                                     code="simulated_error"))
        item = self.index.find(prompt)
        if item is None:
            self._count("unmatched")
        rng = _rng("answer", self.seed, request.seed, prompt)
        decision = self._decide(prompt, item, rng)
        applicable = set(FAULT_KINDS)
        if not request.logprobs:
            applicable.discard("no_logprobs")
        if decision.kind not in ("choice", "verdict", "numeric"):
            applicable.discard("not_an_option")
        fault = self._fault(draw, applicable)
        refused = self._fault_reply(fault) if fault else None
        if refused is not None:
            return refused
        if fault == "not_an_option":
            decision = _Decision(self._not_an_option(decision, item), False, decision.kind)
        malformed = fault == "no_answer"
        if self.malformed_rate and _uniform("malformed", *draw) < self.malformed_rate:
            self._count("malformed")
            malformed = True
        text = "" if fault == "empty" else self._text(prompt, decision, malformed, rng)
        if text and not malformed and decision.kind != "verdict" and asks_for_bare_answer(request.system):
            # a dataset system prompt "answer with just the name" wins over the prompt's Answer: line
            self._count("bare")
            text = decision.answer
        tokens = _TOKEN.findall(text)
        finish = "stop"
        if request.max_tokens is not None and len(tokens) > request.max_tokens:
            tokens = tokens[:request.max_tokens]
            text, finish = "".join(tokens), "length"
        logprobs = None
        if request.logprobs and fault != "no_logprobs":
            sure = decision.correct if decision.sure is None else decision.sure
            right = sure and not malformed and fault != "empty"
            logprobs = {"content": self._logprobs(tokens, right, request.top_logprobs, rng), "refusal": None}
        prompt_tokens = len(prompt.split()) + 3 * request.n_messages
        reply = Reply(200, {
            "id": f"chatcmpl-sim-{next(self._ids):012d}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.model,
            "system_fingerprint": "fp_robustft_sim",
            "choices": [{"index": 0,
                         "message": {"role": "assistant", "content": text, "refusal": None},
                         "logprobs": logprobs,
                         "finish_reason": finish}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(tokens),
                      "total_tokens": prompt_tokens + len(tokens)},
        })
        return self._finish(reply, fault)

    def _finish(self, reply: Reply, fault: str | None) -> Reply:
        if fault == "broken_json":
            whole = reply.encoded()
            reply.body = whole[:max(1, len(whole) // 2)]
        elif fault == "hang":
            reply.hold_s = self.hang_s
        return reply

    def embed(self, body: Any) -> Reply:
        """The reply to an embeddings request body (OpenAI schema; `encoding_format` float or base64)."""
        try:
            body = _json_body(body)
            model = _model_name(body)
            texts = body.get("input")
            if isinstance(texts, str):
                texts = [texts]
            if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
                raise _BadRequest("'input' must be a string or a non-empty list of strings", "input")
            encoding = body.get("encoding_format") or "float"
            if encoding not in ("float", "base64"):
                raise _BadRequest("'encoding_format' must be 'float' or 'base64'", "encoding_format")
            dimensions = _int(body, "dimensions", 1, MAX_EMBEDDING_DIMENSIONS) or DIMENSIONS
        except _BadRequest as exc:
            return Reply(400, _error(str(exc), "invalid_request_error", param=exc.param))
        joined = "\x1e".join(texts)
        draw = (self.seed, dimensions, self._attempt("embeddings", dimensions, joined), joined)
        if self.error_rate and _uniform("error", *draw) < self.error_rate:
            self._count("errors")
            return Reply(500, _error("simulated server error (error_rate); retry the request", "server_error",
                                     code="simulated_error"))
        fault = self._fault(draw, set(ENDPOINT_FAULTS))
        refused = self._fault_reply(fault) if fault else None
        if refused is not None:
            return refused
        vectors = [embed(text, dimensions) for text in texts]
        data = [{"object": "embedding", "index": i,
                 "embedding": encode_base64(vector) if encoding == "base64" else vector}
                for i, vector in enumerate(vectors)]
        tokens = sum(len(text.split()) for text in texts)
        reply = Reply(200, {"object": "list", "data": data, "model": model,
                            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
        return self._finish(reply, fault)
