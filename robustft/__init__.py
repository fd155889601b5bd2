"""robustft: clean noisy supervised fine-tuning data with LLM agents, then fine-tune on it.

    import robustft
    result = robustft.denoise("noisy.csv", model="my-model", base_url="http://127.0.0.1:8000/v1", out="runs/x")

`denoise` / `adenoise` (see `robustft.api`), `Result`, `RobustFTConfig` and `load_config`, and the
backend interface (`Generation`, `ChatBackend`, `BackendOptions`, `options_of`) for writing a model
plugin.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# Public names, imported on first use so that `import robustft` stays light.
_LAZY = {
    "denoise": "robustft.api",
    "adenoise": "robustft.api",
    "Result": "robustft.api",
    "RobustFTConfig": "robustft.config",
    "load_config": "robustft.config",
    "Generation": "robustft.backends.base",
    "ChatBackend": "robustft.backends.base",
    "BackendOptions": "robustft.backends.base",  # the base of a backend's own `Options`
    "options_of": "robustft.backends.base",
    "BudgetReached": "robustft.agents.cost",  # raised when denoise.max_cost_usd is reached (exit 4)
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
