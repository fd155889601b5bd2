"""Fixtures shared by the test suite."""

from __future__ import annotations

import os
import tempfile

import pytest

# Tests never reach the Hugging Face hub: fail fast instead of waiting on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The local embedder's ONNX export (robustft/retrieval/onnx_export.py) is cached here, not in the
# user's cache: made once per machine by whichever test process needs it first.
os.environ.setdefault("ROBUSTFT_CACHE_DIR", os.path.join(tempfile.gettempdir(), "robustft-test-cache"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random Llama chat model (tests/tiny_model.py), built once per session."""
    from tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-llama")


def write_toy_mc_csv(path, n: int = 24, *, flip: set[int] | None = None):
    """A learnable two-option task: "went up" -> A (rise), "went down" -> B (fall). Rows in `flip`
    get the wrong label. Returns the path."""
    import csv
    import json

    flip = flip or set()
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["id", "question", "options", "answer"])
        writer.writeheader()
        for i in range(n):
            up = i % 2 == 0
            answer = "A" if up else "B"
            if i in flip:
                answer = "B" if up else "A"
            writer.writerow({"id": f"t{i}", "question": f"Shares of company {i} went {'up' if up else 'down'} today. "
                                                         "Did the price rise or fall?",
                             "options": json.dumps(["rise", "fall"]), "answer": answer})
    return path


@pytest.fixture
def toy_mc_csv(tmp_path):
    """A 24-row toy multiple-choice CSV with correct labels (see `write_toy_mc_csv`)."""
    return write_toy_mc_csv(tmp_path / "toy.csv")


@pytest.fixture
def make_toy_mc_csv(tmp_path):
    """Factory: make_toy_mc_csv(name, n=24, flip=set()) -> path of a toy CSV in tmp_path."""
    return lambda name="toy.csv", n=24, flip=None: write_toy_mc_csv(tmp_path / name, n, flip=flip)
