"""Whether the Hugging Face Hub can be asked at all, decided in a few seconds.

`datasets` and `transformers` retry an unreachable hub for half a minute before they say so; a
mistyped file name or a model meant for `model.base_url` should fail at once instead. One TCP connect
to the hub's endpoint (``HF_ENDPOINT``, default huggingface.co) with a short timeout answers it;
the answer is kept for the process. ``HF_HUB_OFFLINE=1`` means: never ask.
"""

from __future__ import annotations

import functools
import os
import socket
from urllib.parse import urlsplit

__all__ = ["CONNECT_TIMEOUT_S", "hub_offline", "hub_reachable", "model_in_cache"]

CONNECT_TIMEOUT_S = 3.0


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


@functools.lru_cache(maxsize=4)
def _reachable(endpoint: str, timeout: float) -> bool:
    parts = urlsplit(endpoint)
    host = parts.hostname
    if not host:
        return False
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def hub_reachable(timeout: float = CONNECT_TIMEOUT_S) -> bool:
    """False when offline is asked for, or no connection to the hub opens within `timeout` seconds."""
    if hub_offline():
        return False
    return _reachable(os.environ.get("HF_ENDPOINT") or "https://huggingface.co", timeout)


def model_in_cache(name: str) -> bool:
    """Whether a hub model's config is in the local Hugging Face cache (loadable without the hub)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except Exception:  # noqa: BLE001 - a malformed name, an unreadable cache: not cached
        return False
