"""Keep API keys out of everything robustft stores or prints.

A server may echo the request's Authorization header, or the key, in its error text; that text
ends up in samples.jsonl, the checkpoints and the terminal. `redact(text)` replaces with `***`:

- the values of the API keys in use: the environment variables named by every model config's
  `api_key_env` (registered with `register_api_keys(config)` when a run starts, and each backend's
  when it is built; OPENAI_API_KEY
  always), read when `redact` is called, so a key set later is covered too;
- any value registered with `register_secret`;
- anything that looks like a credential: `Bearer <token>`, `sk-...` keys, and the values of
  `api_key=`, `"x-api-key": ...`, `Authorization: ...` pairs (a token here has 12 or more
  characters, a digit among them, so ordinary words after "bearer" stay);
- the password of a URL (`http://user:PASSWORD@host` -> `http://user:***@host`), wherever a URL is
  shown or stored (summary.json's config, report, run.log, errors).

Model replies are stored with `redact_known`: only the key values in use are replaced (a server
that echoes the key in an answer leaves none in responses.sqlite or samples.jsonl), never
credential-shaped text, which could be the answer itself.

Values shorter than 8 characters are not treated as keys: local servers accept any key, and a
placeholder such as `EMPTY` or `x` is no secret, while replacing every `x` would ruin the text.
"""

from __future__ import annotations

import os
import re
from typing import Any

MASK = "***"
MIN_SECRET_LENGTH = 8

_key_envs: set[str] = {"OPENAI_API_KEY"}
_values: set[str] = set()

# A credential has a digit and some length: "Bearer securities" in a finance question is no token.
_TOKEN = r"(?=[A-Za-z0-9._~+/=\-]*\d)[A-Za-z0-9._~+/=\-]{12,}"
_PATTERNS = [
    re.compile(r"(?i)\b(bearer|basic)(\s+)" + _TOKEN),
    re.compile(r"(?i)((?:api[_-]?key|x-api-key|authorization|access[_-]?token|secret)[\"']?\s*[:=]\s*[\"']?)" + _TOKEN),
    re.compile(r"\bsk-[A-Za-z0-9_\-]{12,}"),
]
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^/\s:@]*:)([^/\s@]+)(@)")


def register_key_env(name: str | None) -> None:
    """Redact the value of environment variable `name` from now on."""
    if name:
        _key_envs.add(name)


def register_secret(value: str | None) -> None:
    """Redact `value` itself from now on."""
    if value and len(value) >= MIN_SECRET_LENGTH:
        _values.add(value)


def register_api_keys(config: Any) -> None:
    """Register the key variable of every role's model and of the embedding server (`config` is a
    RobustFTConfig). A run does it when it starts (`run.runner.DenoiseRun`), a backend when it is
    built (`backends.registry.build_chat_model`)."""
    for name in config.api_key_envs():
        register_key_env(name)


def _secrets() -> list[str]:
    found = set(_values)
    for name in _key_envs:
        value = os.environ.get(name)
        if value and len(value) >= MIN_SECRET_LENGTH:
            found.add(value)
    return sorted(found, key=len, reverse=True)  # a key that contains another goes first


def redact(text: Any) -> Any:
    """`text` with every API key and credential-looking token replaced by ***; non-strings pass through."""
    if not isinstance(text, str) or not text:
        return text
    for secret in _secrets():
        if secret in text:
            text = text.replace(secret, MASK)
    text = _URL_PASSWORD.sub(lambda m: f"{m.group(1)}{MASK}{m.group(3)}", text)
    text = _PATTERNS[0].sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    text = _PATTERNS[1].sub(lambda m: f"{m.group(1)}{MASK}", text)
    return _PATTERNS[2].sub(MASK, text)


def redact_known(text: str) -> str:
    """`text` with the values of the API keys in use replaced by ***, and nothing else changed."""
    for secret in _secrets():
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def redact_tree(obj: Any) -> Any:
    """`obj` (JSON-like data) with `redact` applied to every string in it, keys included."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {redact_tree(k): redact_tree(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_tree(v) for v in obj]
    return obj


def describe(exc: BaseException) -> str:
    """The error's first line, for records and messages; API keys a server echoed are redacted
    before the text is shortened, so no part of a key survives."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return redact(f"{type(exc).__name__}: {text}")[:500] if text else type(exc).__name__
