"""Typos fail fast and say the fix: a --data value that looks like a path never goes to the Hub and
the error suggests close file names; a model name that is neither a local directory nor loadable,
given without --base-url, fails within seconds and names --base-url. This machine has no route to
the Hub, which is the case the bound is about (the libraries retry for half a minute there)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from robustft.cli import main
from robustft.formats import looks_like_hub_name, looks_like_path

FAST_S = 10.0  # the hub check gives up after 3 s; the rest is reading a small file


@pytest.mark.parametrize("text, path", [("data/mc.cvs", True), ("./mc", True), ("/tmp/x", True), ("mc.jsnol", True),
                                        ("org/name", False), ("bigcode/the-stack-v1.1", False), ("gsm8k", False)])
def test_what_looks_like_a_path(text, path):
    assert looks_like_path(text) is path and looks_like_hub_name(text) is (not path)


def test_a_mistyped_data_file_fails_at_once_suggesting_the_file_meant(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mc.csv").write_text("question,answer\nQ?,A\n")
    started = time.monotonic()
    code = main(["denoise", "--data", "data/mc.cvs", "--out", "run", "--model", "m", "--base-url",
                 "http://127.0.0.1:9/v1"])
    assert code == 2 and time.monotonic() - started < FAST_S
    err = capsys.readouterr().err
    assert "file not found; did you mean data/mc.csv?" in err and "unreachable" not in err


def test_a_model_name_without_base_url_fails_fast_and_names_base_url(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("question,answer\nHow many legs has a cat?,4\n")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env["HF_ENDPOINT"] = "http://127.0.0.1:9"  # a hub that does not answer, whatever this machine's network
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "robustft", "denoise", "--data", str(data), "--out",
                           str(tmp_path / "run"), "--model", "gpt-4o-mini", "--quiet"],
                          capture_output=True, text=True, timeout=120, env=env)
    took = time.monotonic() - started
    assert proc.returncode == 2, proc.stderr
    assert "model.base_url (--base-url)" in proc.stderr and "gpt-4o-mini" in proc.stderr
    # the fast path, not transformers' half minute of retries: one connect attempt, then the message
    assert "the hub is unreachable (no connection within 3 s)" in proc.stderr
    assert took < 60, took  # the interpreter and torch's import alone take seconds on a busy machine
