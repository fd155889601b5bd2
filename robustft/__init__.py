"""robustft: clean noisy supervised fine-tuning data with LLM agents, then fine-tune on it."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# Public names, imported on first use so that `import robustft` stays light.
_LAZY = {
    "Generation": "robustft.backends.base",
    "ChatBackend": "robustft.backends.base",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'robustft' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
