"""A simulated OpenAI-compatible expert server, fully offline, for the demo, tests and benchmarks.

It knows the gold answers of a dataset and plays a model of chosen quality:

    with SimServer("gold.csv", accuracy=0.8, seed=0) as sim:
        ...  # point any OpenAI client at sim.base_url ("http://127.0.0.1:PORT/v1")

    python -m robustft.sim --gold gold.csv --port 8000 --accuracy 0.8

Endpoints: `POST /v1/chat/completions` (OpenAI schema, `n=1`, no streaming), `GET /v1/models`,
`GET /health`. Errors are JSON `{"error": {"message", "type", "param", "code"}}` with the HTTP status.

How a reply is made:

- **Target question.** All message contents are joined into the prompt. Among the gold questions
  whose text occurs in it (whitespace runs compared as one space), the target is the one whose
  occurrence starts last, since context prompts show example questions first; an occurrence lying
  inside a longer matched question's occurrence does not count. Gold rows sharing one question text
  are told apart by how many of their options the prompt shows after it.
- **Answer.** Correct with probability `accuracy`; otherwise a uniformly random wrong option
  (multiple choice), a perturbed number (numeric answers) or another row's answer (text). No gold
  question in the prompt: a random option letter seen in the prompt (`A.`, `(B)` lines), else
  `unknown`. A prompt that asks for a Y/N verdict on a `Given answer ...: X` line (the judge
  checker) gets `Y` when X is wrong, `N` when right, itself right with probability `accuracy`.
- **Text.** A prompt containing "step by step" (any case) gets a short fake reasoning paragraph
  first. Every reply ends with the line `Answer: X` (the letter for multiple choice, the answer
  text otherwise); the reasoning never contains `Answer:` or a lone capital letter.
- **Determinism.** The answer, its wording and its logprobs are a function of (server `seed`,
  request `seed` when sent, prompt text) only, like a model decoding greedily: an identical prompt
  always gets the same reply, while different prompts for one question (base, reasoning, context)
  draw independently. `temperature` is accepted and ignored.
- **Faults.** With probability `malformed_rate` a reply has no `Answer:` line; with probability
  `error_rate` the request fails with HTTP 500. These two are drawn per attempt: the k-th repeat
  of one prompt draws from (seed, prompt, k), so a retry can succeed and a rerun of the same
  request sequence behaves the same.
- **Logprobs.** One token per whitespace-led word of the content (the tokens join back to the
  content), each with a negative logprob. Each reply draws a confidence level; with probability
  `calibration` the level comes from the half of the range that matches its correctness (right:
  confident, wrong: unsure), otherwise from the whole range. Ranking replies by mean negative
  log-probability then separates right from wrong with an AUC of about 0.5 + calibration / 2.
- **Usage.** Tokens are whitespace-separated words (prompt words plus 3 per message).
  `max_tokens` (or `max_completion_tokens`) cuts the reply, with `finish_reason: "length"`.
- `latency_ms` delays each chat completion in its own thread; requests are served concurrently.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import random
import re
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import urlsplit

from .errors import ConfigError, InputError

__all__ = ["GoldItem", "QuestionIndex", "SimModel", "SimServer", "load_gold", "main", "DEMO_DATA"]

DEMO_DATA = Path(__file__).parent / "demo_data"
"""The bundled demo dataset: `demo.csv` (30 % wrong labels) and `demo_gold.csv`."""

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_WS = re.compile(r"\s+")
_WORD = re.compile(r"\w+")
_TOKEN = re.compile(r"\s*\S+")
_STEP_BY_STEP = re.compile(r"step\s+by\s+step", re.IGNORECASE)
_OPTION_LINE = re.compile(r"^[ \t]*\(?([A-Z])[.)][ \t]", re.MULTILINE)
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")
_JUDGE_GIVEN = re.compile(r"given answer[^:\n]*:[ \t]*([^\n]+)", re.IGNORECASE)
_JUDGE_ASK = re.compile(r"\bY\b[^\n]*\bN\b")
MAX_BODY_BYTES = 16 * 1024 * 1024


def _norm(text: str) -> str:
    return _WS.sub(" ", text).strip()


def _rng(*parts: object) -> random.Random:
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode("utf-8", "surrogatepass"),
                             digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


# --------------------------------------------------------------------------------------- gold data

@dataclass(frozen=True)
class GoldItem:
    """One gold row: `answer` is a letter when `options` is set, else the answer text."""

    id: str
    question: str
    answer: str
    options: tuple[str, ...] | None = None

    @property
    def answer_text(self) -> str:
        if self.options is None:
            return self.answer
        return self.options[LETTERS.index(self.answer)]


def _read_rows(path: Path) -> list[dict[str, Any]]:
    fix_format = "give a CSV file with a header, or JSON Lines with one object per line"
    try:
        if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
            rows = []
            with path.open(encoding="utf-8") as fh:
                for number, line in enumerate(fh):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise InputError(f"not valid JSON ({exc.msg})", path=path, row=len(rows),
                                         fix=fix_format) from None
                    if not isinstance(row, dict):
                        raise InputError("each line must be a JSON object", path=path, row=len(rows),
                                         fix=fix_format)
                    rows.append(row)
            return rows
        csv.field_size_limit(MAX_BODY_BYTES)
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames:
                raise InputError("the file is empty", path=path, fix=fix_format)
            return [dict(row) for row in reader]
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", path=path, fix="save the file as UTF-8") from None
    except csv.Error as exc:
        raise InputError(f"not valid CSV ({exc})", path=path, fix=fix_format) from None


def _parse_options(value: Any, path: Path, row: int) -> tuple[str, ...] | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise InputError("options must be a JSON list of strings, e.g. [\"red\", \"blue\"]",
                             path=path, row=row, field="options",
                             fix="write the options as a JSON list, or leave the cell empty") from None
    if not isinstance(value, list) or not all(isinstance(o, (str, int, float)) for o in value):
        raise InputError("options must be a list of strings", path=path, row=row, field="options",
                         fix="write the options as a JSON list of strings")
    if not value:
        return None
    if len(value) > len(LETTERS):
        raise InputError(f"{len(value)} options; at most {len(LETTERS)} are supported",
                         path=path, row=row, field="options", fix="drop options or the row")
    return tuple(str(o) for o in value)


def _letter_answer(answer: str, options: tuple[str, ...], path: Path, row: int) -> str:
    text = answer.strip()
    bare = text.strip("()[]. ").upper()
    if len(bare) == 1 and bare in LETTERS[:len(options)]:
        return bare
    for index, option in enumerate(options):
        if _norm(option) == _norm(text):
            return LETTERS[index]
    last = LETTERS[len(options) - 1]
    raise InputError(f"answer {answer!r} is neither a letter A-{last} nor one of the options",
                     path=path, row=row, field="answer",
                     fix=f"give the letter of the correct option (A = first, {last} = last)")


def load_gold(path: str | Path) -> list[GoldItem]:
    """Gold rows from a CSV or JSONL file with `question`, `answer` and optional `id`, `options`.

    Raises `InputError` naming the file, row (0-based, header not counted) and field.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("gold file not found" if not path.exists() else "not a file", path=path,
                         fix="pass the path of a CSV or JSONL file with question and answer columns")
    rows = _read_rows(path)
    if not rows:
        raise InputError("no rows", path=path, fix="give a file with at least one question")
    items: list[GoldItem] = []
    for row_number, row in enumerate(rows):
        for column in ("question", "answer"):
            if column not in row:
                raise InputError(f"missing column '{column}' (found: {', '.join(map(str, row))})",
                                 path=path, row=row_number, field=column,
                                 fix="the gold file needs columns question, answer and optionally id, options")
        question = str(row["question"] or "").strip()
        if not question:
            raise InputError("empty question", path=path, row=row_number, field="question",
                             fix="fill in the question or drop the row")
        answer = row["answer"]
        if answer is None or not str(answer).strip():
            raise InputError("empty answer", path=path, row=row_number, field="answer",
                             fix="fill in the gold answer or drop the row")
        answer = str(answer).strip()
        options = _parse_options(row.get("options"), path, row_number)
        if options is not None:
            answer = _letter_answer(answer, options, path, row_number)
        row_id = row.get("id")
        items.append(GoldItem(id=str(row_id) if row_id not in (None, "") else str(row_number),
                              question=question, answer=answer, options=options))
    return items


class QuestionIndex:
    """Finds the target gold question in a prompt: the matched question that starts last.

    Each question is indexed under its rarest interior word (a word that is not its first or last,
    so it is a whole word of any text the question occurs in); a prompt's words pick the candidates
    and a substring search confirms them. About 0.1 ms per prompt for a few thousand questions.
    """

    def __init__(self, items: Iterable[GoldItem]):
        self._groups: dict[str, list[GoldItem]] = {}
        for item in items:
            self._groups.setdefault(_norm(item.question), []).append(item)
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
        text = _norm(prompt)
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
        return max(group, key=lambda item: sum(_norm(o) in after for o in item.options or ()))


# ----------------------------------------------------------------------------------- the "model"

class _BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


_OPENERS = ("Let me think about this step by step.", "Let us work through this step by step.",
            "Thinking it through step by step.", "Taking this step by step.")
_MIDDLES = ("First, recall the facts the question depends on.",
            "Then compare each option with those facts.",
            "Two of the options can be ruled out quickly.",
            "On reflection, each step of this reasoning holds up.",
            "Checking the reasoning once more shows no mistake.",
            "The wording of the question points to one choice.")
_MALFORMED = ("This question is hard to decide without more information.",
              "Several of the options seem plausible here, and more context would help.",
              "Let me think about this step by step. The facts needed here are unclear to me.",
              "Hmm, this one needs more thought before settling on anything.")
_FILLER = (" the", " a", " is", " of", " and", " to", " it", " that", " on", " with")


class SimModel:
    """The server's logic without HTTP: `complete(body)` turns a request body into a response."""

    def __init__(self, items: list[GoldItem], *, accuracy: float = 0.8, seed: int = 0,
                 error_rate: float = 0.0, malformed_rate: float = 0.0, calibration: float = 0.8):
        for name, value in (("accuracy", accuracy), ("error_rate", error_rate),
                            ("malformed_rate", malformed_rate), ("calibration", calibration)):
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be a number from 0 to 1, got {value!r}")
        if not items:
            raise ConfigError("the simulated server needs at least one gold question")
        self.items = items
        self.index = QuestionIndex(items)
        self.accuracy, self.seed = float(accuracy), seed
        self.error_rate, self.malformed_rate = float(error_rate), float(malformed_rate)
        self.calibration = float(calibration)
        self.multiple_choice = all(item.options is not None for item in items)
        self._text_answers = sorted({item.answer for item in items if item.options is None})
        self._lock = threading.Lock()
        self._seen: dict[bytes, int] = {}
        self.requests = 0
        self.errors = 0
        self.malformed = 0
        self.unmatched = 0

    # -- request parsing ------------------------------------------------------------------------

    @staticmethod
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

    @staticmethod
    def _int(body: dict, key: str, low: int, high: int | None = None) -> int | None:
        value = body.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
            bounds = f"from {low} to {high}" if high is not None else f">= {low}"
            raise _BadRequest(f"'{key}' must be an integer {bounds}, got {value!r}", key)
        return value

    def _parse(self, body: Any) -> dict:
        if not isinstance(body, dict):
            raise _BadRequest("the request body must be a JSON object")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _BadRequest("'model' is required (any name; the simulated server serves every name)", "model")
        prompt = self._prompt(body.get("messages"))
        if body.get("stream"):
            raise _BadRequest("streaming is not supported by the simulated server; send stream=false", "stream")
        n = self._int(body, "n", 1)
        if n not in (None, 1):
            raise _BadRequest("only n=1 is supported", "n")
        temperature = body.get("temperature")
        if temperature is not None and (isinstance(temperature, bool) or not isinstance(temperature, (int, float))
                                        or not 0 <= temperature <= 2):
            raise _BadRequest(f"'temperature' must be a number from 0 to 2, got {temperature!r}", "temperature")
        logprobs = body.get("logprobs")
        if logprobs is not None and not isinstance(logprobs, bool):
            raise _BadRequest("'logprobs' must be true or false", "logprobs")
        top = self._int(body, "top_logprobs", 0, 20)
        if top and not logprobs:
            raise _BadRequest("'top_logprobs' needs 'logprobs': true", "top_logprobs")
        max_tokens = self._int(body, "max_tokens", 1)
        max_completion = self._int(body, "max_completion_tokens", 1)
        seed = body.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise _BadRequest(f"'seed' must be an integer, got {seed!r}", "seed")
        return {"model": model, "prompt": prompt, "n_messages": len(body["messages"]),
                "logprobs": bool(logprobs), "top_logprobs": top or 0,
                "max_tokens": max_completion or max_tokens, "seed": seed}

    # -- reply --------------------------------------------------------------------------------

    def _wrong_answer(self, item: GoldItem, rng: random.Random) -> str:
        if item.options is not None:
            others = [LETTERS[i] for i in range(len(item.options)) if LETTERS[i] != item.answer]
            return rng.choice(others) if others else item.answer
        if _NUMBER.fullmatch(item.answer.replace(",", "")):
            text = item.answer.replace(",", "")
            decimals = len(text.split(".")[1]) if "." in text else 0
            value = float(text)
            delta = max(1.0, abs(value) * rng.uniform(0.1, 0.5)) * rng.choice((-1, 1))
            wrong = round(value + delta, decimals)
            return f"{wrong:.{decimals}f}"
        others = [a for a in self._text_answers if a != item.answer]
        return rng.choice(others) if others else f"not {item.answer}"

    def _decide(self, prompt: str, rng: random.Random) -> tuple[str, bool, str | None]:
        """(final answer, whether it is right, option text for the reasoning or None)."""
        item = self.index.find(prompt)
        if item is None:
            with self._lock:
                self.unmatched += 1
            letters = sorted(set(_OPTION_LINE.findall(prompt)))
            if not letters and self.multiple_choice:
                letters = list("ABCD")
            return (rng.choice(letters) if letters else "unknown"), False, None
        correct = rng.random() < self.accuracy
        judged = self._judge_verdict(prompt, item)
        if judged is not None:
            return (judged if correct else ("N" if judged == "Y" else "Y")), correct, None
        answer = item.answer if correct else self._wrong_answer(item, rng)
        if item.options is not None:
            return answer, correct, item.options[LETTERS.index(answer)]
        return answer, correct, None

    @staticmethod
    def _judge_verdict(prompt: str, item: GoldItem) -> str | None:
        """'Y' (the given answer is wrong) or 'N' for a judge prompt, else None."""
        given = _JUDGE_GIVEN.search(prompt)
        if not given or not _JUDGE_ASK.search(prompt[given.end():]):
            return None
        label = given.group(1).strip().strip(".")
        if item.options is not None:
            label = label.strip("()").upper()
            return "N" if label == item.answer else "Y"
        return "N" if _norm(label).lower() == _norm(item.answer).lower() else "Y"

    def _text(self, prompt: str, answer: str, option_text: str | None, malformed: bool,
              rng: random.Random) -> str:
        if malformed:
            return rng.choice(_MALFORMED)
        if not _STEP_BY_STEP.search(prompt):
            return f"Answer: {answer}"
        middle = rng.sample(_MIDDLES, 2)
        if option_text is not None:
            ending = f"The option that fits best is \"{option_text}\"."
        elif answer in ("Y", "N"):
            ending = "So the given label does not hold up." if answer == "Y" else "So the given label holds up."
        else:
            ending = f"This gives {answer}."
        return " ".join([rng.choice(_OPENERS), *middle, ending]) + f"\nAnswer: {answer}"

    def _logprobs(self, tokens: list[str], correct: bool, top: int, rng: random.Random) -> list[dict]:
        if rng.random() < self.calibration:
            position = rng.uniform(0.0, 0.5) if correct else rng.uniform(0.5, 1.0)
        else:
            position = rng.random()
        level = 0.02 + 1.5 * position  # the reply's expected mean negative log-probability
        content = []
        for token in tokens:
            logprob = -max(1e-6, level * rng.gammavariate(4.0, 0.25))
            entry = {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8")),
                     "top_logprobs": []}
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

    def complete(self, body: Any) -> tuple[int, dict]:
        """(HTTP status, JSON payload) for a chat completions request body (parsed, or raw JSON)."""
        with self._lock:
            self.requests += 1
        try:
            if isinstance(body, (bytes, str)):
                try:
                    body = json.loads(body)
                except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                    raise _BadRequest(f"the request body is not valid JSON: {exc}") from None
            request = self._parse(body)
        except _BadRequest as exc:
            return 400, _error(str(exc), "invalid_request_error", param=exc.param)
        prompt = request["prompt"]
        key = hashlib.blake2b(f"{request['seed']}\x1f{prompt}".encode("utf-8", "surrogatepass"),
                              digest_size=16).digest()
        with self._lock:
            attempt = self._seen.get(key, 0)
            self._seen[key] = attempt + 1
        if self.error_rate and _rng("error", self.seed, request["seed"], attempt, prompt).random() < self.error_rate:
            with self._lock:
                self.errors += 1
            return 500, _error("simulated server error (error_rate); retry the request", "server_error",
                               code="simulated_error")
        malformed = bool(self.malformed_rate) and (
            _rng("malformed", self.seed, request["seed"], attempt, prompt).random() < self.malformed_rate)
        if malformed:
            with self._lock:
                self.malformed += 1
        rng = _rng("answer", self.seed, request["seed"], prompt)
        answer, correct, option_text = self._decide(prompt, rng)
        text = self._text(prompt, answer, option_text, malformed, rng)
        tokens = _TOKEN.findall(text)
        finish = "stop"
        if request["max_tokens"] is not None and len(tokens) > request["max_tokens"]:
            tokens = tokens[:request["max_tokens"]]
            text, finish = "".join(tokens), "length"
        logprobs = None
        if request["logprobs"]:
            logprobs = {"content": self._logprobs(tokens, correct and not malformed, request["top_logprobs"], rng),
                        "refusal": None}
        prompt_tokens = len(prompt.split()) + 3 * request["n_messages"]
        return 200, {
            "id": f"chatcmpl-sim-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request["model"],
            "system_fingerprint": "fp_robustft_sim",
            "choices": [{"index": 0,
                         "message": {"role": "assistant", "content": text, "refusal": None},
                         "logprobs": logprobs,
                         "finish_reason": finish}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(tokens),
                      "total_tokens": prompt_tokens + len(tokens)},
        }


def _error(message: str, kind: str, *, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


# -------------------------------------------------------------------------------------- HTTP

class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024

    def __init__(self, address, handler, sim: SimModel, latency_s: float, verbose: bool):
        self.sim, self.latency_s, self.verbose = sim, latency_s, verbose
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address):
        if self.verbose:
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "robustft-sim/1"
    timeout = 120  # idle keep-alive connections close after this long
    disable_nagle_algorithm = True  # else small replies wait ~40 ms for the client's delayed ACK
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _path(self) -> str:
        return urlsplit(self.path).path.rstrip("/") or "/"

    def do_GET(self) -> None:
        path = self._path()
        if path in ("/health", "/v1/health"):
            self._send(200, {"status": "ok", "questions": len(self.server.sim.index)})
        elif path == "/v1/models":
            self._send(200, {"object": "list", "data": [
                {"id": "sim", "object": "model", "created": 0, "owned_by": "robustft"}]})
        elif path == "/v1/chat/completions":
            self._send(405, _error("use POST for /v1/chat/completions", "invalid_request_error"))
        else:
            self._send(404, _error(f"no route {path}", "invalid_request_error", code="not_found"))

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = self.headers.get("Content-Length")
        if length is None:
            return None
        return self.rfile.read(int(length))

    def do_POST(self) -> None:
        path = self._path()
        if path != "/v1/chat/completions":
            if path in ("/health", "/v1/health", "/v1/models"):
                self._send(405, _error(f"use GET for {path}", "invalid_request_error"))
            else:
                self._send(404, _error(f"no route {path}", "invalid_request_error", code="not_found"))
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY_BYTES:
            self.close_connection = True
            self._send(400 if length < 0 else 413, _error("bad or too large Content-Length", "invalid_request_error"))
            return
        raw = self._read_body()
        if raw is None:
            self.close_connection = True
            self._send(411, _error("a Content-Length header is required", "invalid_request_error"))
            return
        if self.server.latency_s:
            time.sleep(self.server.latency_s)
        status, payload = self.server.sim.complete(raw)
        self._send(status, payload)


class SimServer:
    """The simulated expert over HTTP, in a background thread.

    `start()` returns the base URL (`http://HOST:PORT/v1`); `stop()` shuts it down; `with
    SimServer(...) as sim:` does both. `port=0` takes a free port. Counters: `requests` (chat
    completion requests answered, errors included), `errors` (simulated 500s), `malformed`
    (replies without an `Answer:` line), `unmatched` (prompts holding no gold question).
    """

    def __init__(self, gold_path: str | Path, *, accuracy: float = 0.8, seed: int = 0, latency_ms: float = 0,
                 error_rate: float = 0.0, malformed_rate: float = 0.0, calibration: float = 0.8,
                 host: str = "127.0.0.1", port: int = 0, verbose: bool = False):
        if not isinstance(latency_ms, (int, float)) or latency_ms < 0:
            raise ConfigError(f"latency_ms must be a number >= 0, got {latency_ms!r}")
        self.gold_path = Path(gold_path)
        self.model = SimModel(load_gold(self.gold_path), accuracy=accuracy, seed=seed, error_rate=error_rate,
                              malformed_rate=malformed_rate, calibration=calibration)
        self.latency_ms = latency_ms
        self.host, self.port, self.verbose = host, port, verbose
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.base_url: str | None = None

    @property
    def requests(self) -> int:
        return self.model.requests

    @property
    def errors(self) -> int:
        return self.model.errors

    @property
    def malformed(self) -> int:
        return self.model.malformed

    @property
    def unmatched(self) -> int:
        return self.model.unmatched

    def start(self) -> str:
        if self._httpd is not None:
            return self.base_url  # type: ignore[return-value]
        try:
            httpd = _HTTPServer((self.host, self.port), _Handler, self.model, self.latency_ms / 1000.0, self.verbose)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {self.host}:{self.port} ({exc.strerror or exc}); "
                              "pick another --port, or 0 for any free port") from None
        self._httpd = httpd
        self.port = httpd.server_address[1]
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else ("[::1]" if self.host == "::" else self.host)
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        self.base_url = f"http://{host}:{self.port}/v1"
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"robustft-sim:{self.port}", daemon=True)
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "SimServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------------------- CLI

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m robustft.sim",
        description="Serve a simulated OpenAI-compatible expert that knows the gold answers of FILE.")
    parser.add_argument("--gold", required=True, metavar="FILE",
                        help="CSV or JSONL with question, answer and optional id, options columns")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 (default) picks a free port")
    parser.add_argument("--accuracy", type=float, default=0.8, help="chance of a correct answer (0.8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay per request")
    parser.add_argument("--error-rate", type=float, default=0.0, help="chance of an HTTP 500")
    parser.add_argument("--malformed-rate", type=float, default=0.0, help="chance of a reply without 'Answer:'")
    parser.add_argument("--calibration", type=float, default=0.8,
                        help="how far logprobs separate right from wrong answers, 0 to 1 (0.8)")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    try:
        server = SimServer(args.gold, accuracy=args.accuracy, seed=args.seed, latency_ms=args.latency_ms,
                           error_rate=args.error_rate, malformed_rate=args.malformed_rate,
                           calibration=args.calibration, host=args.host, port=args.port, verbose=args.verbose)
        url = server.start()
    except (InputError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(url, flush=True)
    print(f"serving {len(server.model.index)} gold questions from {args.gold}; Ctrl-C stops",
          file=sys.stderr, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
