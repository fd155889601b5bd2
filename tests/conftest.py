"""Fixtures shared by the test suite."""

from __future__ import annotations

import os

import pytest

# Tests never reach the Hugging Face hub: fail fast instead of waiting on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random Llama chat model (robustft.testing.build_tiny_model), built once per session."""
    from robustft.testing import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-llama")
