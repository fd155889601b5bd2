"""A simulated OpenAI-compatible expert server, fully offline, for the demo, tests and benchmarks.

It knows the gold answers of a dataset and plays a model of chosen quality:

    with SimServer("gold.csv", accuracy=0.8, seed=0) as sim:
        ...  # point any OpenAI client at sim.base_url ("http://127.0.0.1:PORT/v1")

    python -m robustft.sim --gold gold.csv --port 8000 --accuracy 0.8 [--fault-rate 0.2 --faults 500,429,hang]
    python -m robustft.sim make-open-data --source arc/labeled.csv --out open30 --noise 0.3

Endpoints: `POST /v1/chat/completions` (OpenAI schema, `n=1`, no streaming), `POST /v1/embeddings`,
`GET /v1/models`, `GET /health`. Errors are JSON `{"error": {"message", "type", "param", "code"}}`
with the HTTP status.

Modules: `gold` (the gold file, read with `robustft.data`), `index` (finding the question in a
prompt), `facts` (key facts of open-ended responses), `model` (a request body in, a reply out),
`embeddings`, `faults`, `ratelimit` (requests and tokens per minute), `server` (HTTP, `SimServer`), `open_data` (open-ended benchmark files),
`cli`.

How a chat reply is made:

- **Target question.** All message contents are joined into the prompt. Among the gold questions
  whose text occurs in it (whitespace runs compared as one space), the target is the one whose
  occurrence starts last, since context prompts show example questions first; an occurrence lying
  inside a longer matched question's occurrence does not count. Gold rows sharing one question text
  are told apart by how many of their options the prompt shows after it. A prompt can be worded in
  any way as long as it contains the question's text.
- **Answer request.** Any prompt with a target question that is not a judge request. The answer is
  right with probability `accuracy`; otherwise a uniformly random wrong option (multiple choice), a
  perturbed number (numeric answers), another row's answer (short text) or a plausible wrong
  response (open-ended, below). A server told a task type (`task=`, `--task`) asks it for the wrong
  short answers instead (`Task.sim_wrong_answer`: a package's task type plays its own mistakes). No gold question in the prompt: a random option letter seen in the
  prompt (`A.`, `(B)` lines), else `unknown`.
- **Judge request.** A prompt with a *verdict request*: a line, outside the target question's text
  and not an option line, holding a standalone capital `Y` and after it a standalone capital `N`
  ("... Y if the given answer is wrong, or N if it is right", "(Y/N)"). The reply is `Y` or `N`,
  itself right with probability `accuracy`. What Y means is read from that line: words between
  `Y` and `N` (else the rest of the line, else the line before it) saying wrong (wrong, incorrect,
  false, noisy, mislabeled, not correct, ...) or right (right, correct, true, agrees, consistent,
  ...); with neither, Y means "the given answer is wrong" (robustft's judge convention). The answer
  judged is the text after a label holding the word "given" (`Given answer (may be wrong): B`,
  `The given response:`; the first such label after the question, else the last one before it),
  up to the next line that starts with a label (`Word words:`), the verdict request, or the end; it
  may span lines. Without a "given" label it is all the text after the question up to the verdict
  request, option lines and bare label lines left out; so a prompt that also shows other answers
  (the experts') must label the judged one "given". Multiple choice: the judged text (after any
  last colon on its first line) is an option's exact text or a letter (`B`, `(B)`, `B.`); numbers
  compare as numbers; short text ignoring case and a final period; open-ended: right or not as
  defined below.
- **Text.** A prompt containing "step by step" (any case) gets a short fake reasoning paragraph
  first. Every reply ends with a line `Answer: X` (the letter for multiple choice, the answer text,
  or the whole response for open-ended rows); the reasoning never contains `Answer:` or a lone
  capital letter.
- **Determinism.** The answer, its wording and its logprobs are a function of (server `seed`,
  request `seed` when sent, prompt text) only, like a model decoding greedily: an identical prompt
  always gets the same reply, while different prompts for one question (base, reasoning, context)
  draw independently. `temperature` is accepted and ignored.
- **Logprobs.** One token per whitespace-led word of the content (the tokens join back to the
  content), each with a negative logprob. Each reply draws a confidence level; with probability
  `calibration` the level comes from the half of the range that matches its correctness (right:
  confident, wrong: unsure), otherwise from the whole range. Ranking replies by mean negative
  log-probability then separates right from wrong with an AUC of about 0.5 + calibration / 2.
- **Usage.** Tokens are whitespace-separated words (prompt words plus 3 per message).
  `max_tokens` (or `max_completion_tokens`) cuts the reply, with `finish_reason: "length"`.

Open-ended mode: a gold file with a `key` column (and optionally `distractors`, a JSON list) holds
free-text responses as answers; `make-open-data` writes such files. A response is *right* when it
states the row's key fact and none of its distractors (`robustft.sim.facts`: the fact's words in
order, case and punctuation aside, not inside a longer stated fact). A right expert reply is the
gold response paraphrased word by word (synonyms, never touching the key fact); a wrong one is the
gold response with its key fact replaced by a distractor (or by another row's key fact) or another
question's response, reworded the same way, and is checked to be wrong.

Hard open-ended questions (gold columns `mistake` and `confabulates`, written by `make-open-data
--kinds`): on a question with a `mistake`, every reply states that wrong fact with probability
`accuracy` (else the key), sure of it either way: a consistent error. On a question that
`confabulates`, every reply states a fact drawn uniformly from the key and the distractors, unsure
(logprobs from the unsure half): a confabulation, varying between samples. On both, a verdict is
right with probability (0.5 + accuracy) / 2 instead of `accuracy`: a model reflecting on a given
response catches some of its own mistakes, not all. These are the simulator's assumptions, not
measurements of a real model.

A judge request whose "given" label also holds the word "claim" (`The given claim:`) asks about one
claim of a response: for an open-ended row the claim is right when it states no distractor (a
claim need not state the key fact).

Embeddings (`POST /v1/embeddings`, `{"model", "input": str | [str, ...], "encoding_format":
"float" | "base64", "dimensions": 256}`): feature hashing of lowercased words and word bigrams,
unit length (`robustft.sim.embeddings`); a paraphrase lies far closer than an unrelated text.

Failures, all drawn per attempt: the k-th repeat of one request draws from (seed, request, k), so
a retry can succeed and a rerun of the same request sequence behaves the same.

- `error_rate`: the call fails with HTTP 500 (counter `errors`).
- `malformed_rate`: the reply has no `Answer:` line (counter `malformed`).
- `fault_rate` with `faults` (a list or comma-separated kinds, default all): the call fails in one
  of the chosen ways, picked uniformly among those that apply to it (`robustft.sim.faults`):
  `500`, `429` (with `Retry-After: retry_after_s`, default 1), `broken_json` (HTTP 200, body cut
  off), `empty` (content ""), `no_logprobs` (null although asked; only requests asking for
  logprobs), `no_answer` (no `Answer:` line), `not_an_option` (a letter past the last option, a
  verdict neither Y nor N, a word for a number; only those requests), `hang` (held `hang_s`,
  default 150 s, longer than robustft's 120 s timeout, then answered). Embedding requests get
  `500`, `429`, `broken_json` and `hang`. Counter `faults` by kind.

Rate limits (`rpm`, `tpm`, per `rate_window_s`, default 60; `--rpm`/`--tpm`/`--rate-window-s`):
OpenAI-style token buckets over chat requests (a request's tokens: its prompt plus `max_tokens`),
`x-ratelimit-limit/remaining/reset-requests|tokens` headers on every chat reply, and HTTP 429 with
`Retry-After` (and `retry-after-ms`) for a request over the limit (`robustft.sim.ratelimit`).

The Batch API (`/v1/files`, `/v1/batches`; `robustft.sim.batches`): uploaded JSONL files, batches
worked `batch_delay_s` after creation by the same model as the online endpoint, output and error
files, `batch_fail_rate` of requests failing, `batch_expire_after` requests before a batch expires.

`latency_ms` delays every chat completion and embedding request without blocking others; the
server counts requests by path and the calls in flight (`SimServer`).
"""

from __future__ import annotations

from pathlib import Path

from .cli import main
from .gold import GoldItem, load_gold
from .index import QuestionIndex
from .model import Reply, SimModel
from .server import SimServer

__all__ = ["DEMO_DATA", "GoldItem", "QuestionIndex", "Reply", "SimModel", "SimServer", "load_gold", "main"]

DEMO_DATA = Path(__file__).resolve().parent.parent / "demo_data"
"""The bundled demo dataset: `demo.csv` (30 % wrong labels) and `demo_gold.csv`."""
