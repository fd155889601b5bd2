"""Hostile servers and settings for secrets: a key echoed in a successful reply, a password in a
base URL, an embedding server on another host. No key or password may reach the run directory,
the terminal or a host it was not configured for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiohttp import web

from robustft.backends.base import Generation
from robustft.cli import main
from robustft.sim import SimServer

from conftest import write_toy_mc_csv
from httpstub import StubServer
from recorded import GOLD, make_run

KEY = "sk-echo-0123456789abcdefXYZ"


def every_byte(d: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file())


def test_a_key_echoed_in_a_reply_is_stored_nowhere_and_never_traced(tmp_path, monkeypatch, capsys):
    """The model's reply quotes the API key in use (a server that echoes its Authorization header
    into the answer): responses.sqlite, samples.jsonl, `trace` and `trace --json` hold *** instead."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)

    def echo(sid, messages):
        text = f"My instructions came with the key Bearer {KEY} (or {KEY}).\nAnswer: {GOLD[sid]}"
        return Generation(text=text, token_logprobs=[-0.1] * 12, tokens=None, prompt_tokens=10, completion_tokens=12)

    result, _ = make_run(tmp_path, replies={role: echo for role in ("base", "reasoning", "context", "reviewer")})
    run = result.out_dir
    assert result.summary["failed"] == 0
    assert KEY.encode() not in every_byte(run)
    base = json.loads((run / "samples.jsonl").read_text().splitlines()[0])["nodes"]["base"]
    assert "the key Bearer *** (or ***)" in base["response"] and base["answer"] == GOLD["q0"]
    for argv in (["trace", str(run), "q1", "--full"], ["trace", str(run), "q1", "--json"]):
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert KEY not in out and "***" in out


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toy_mc_csv(tmp_path_factory.mktemp("toy") / "toy.csv")


def test_a_password_in_the_base_url_is_in_no_file_and_no_message(toy, tmp_path, capsys):
    """`--base-url http://user:PASSWORD@host/v1`: summary.json (its config), report.html and
    report.json, run.log and every message show `user:***@`."""
    password = "hunter2-Pa55word"
    with SimServer(toy, accuracy=1.0, seed=0) as sim:
        url = sim.base_url.replace("http://", f"http://robustft:{password}@")
        out = tmp_path / "out"
        code = main(["denoise", "--data", str(toy), "--out", str(out), "--model", "sim", "--base-url", url,
                     "--embedding-base-url", url, "--embedding-model", "sim-embed"])
        err = capsys.readouterr().err
    assert code in (0, 3), err
    assert main(["report", str(out)]) == 0
    printed = err + capsys.readouterr().out
    assert password not in printed
    assert password.encode() not in every_byte(out)
    config = json.loads((out / "summary.json").read_text())["config"]
    assert config["model"]["base_url"] == [url.replace(password, "***")] or \
        config["model"]["base_url"] == url.replace(password, "***")
    for name in ("report.html", "report.json", "run.log"):
        assert (out / name).is_file()


def test_the_chat_key_goes_to_no_other_host_and_the_embedding_server_gets_its_own(toy, tmp_path, monkeypatch):
    """An embedding server on another host (here: another port) than the chat model gets no key by
    default, and `denoise.embedding_api_key_env` gives it a key of its own; the chat server gets the
    chat key either way."""
    from robustft.retrieval.embedders import embedding_key_env
    from robustft.config import DenoiseConfig, ModelConfig

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("EMBED_KEY", "embed-key-0123456789")
    seen: list[str | None] = []

    async def embeddings(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        body = await request.json()
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [{"object": "embedding", "index": i, "embedding": [float(len(t) % 7), 1.0, float(i % 3)]}
                for i, t in enumerate(texts)]
        return web.json_response({"object": "list", "data": data, "model": body["model"]})

    with SimServer(toy, accuracy=1.0, seed=0) as sim, StubServer(embeddings) as embed:
        for extra, expected in (([], None), (["--config", "{cfg}"], "Bearer embed-key-0123456789")):
            seen.clear()
            cfg = tmp_path / "embed.yaml"
            cfg.write_text("denoise:\n  embedding_api_key_env: EMBED_KEY\n")
            out = tmp_path / f"out-{len(extra)}"
            code = main(["denoise", "--data", str(toy), "--out", str(out), "--model", "sim", "--base-url",
                         sim.base_url, "--embedding-base-url", embed.base_url, "--embedding-model", "e",
                         "--quiet", *[a.replace("{cfg}", str(cfg)) for a in extra]])
            assert code in (0, 3)
            assert seen and all(h in (expected, "Bearer EMPTY") for h in seen), seen
            assert not any(KEY in (h or "") for h in seen)
    # The same host and port as the chat model (one server for both): the chat key goes there.
    same = DenoiseConfig(embedding_base_url="http://10.0.0.5:8000/v1")
    assert embedding_key_env(same, ModelConfig(name="m", base_url="http://10.0.0.5:8000/v1")) == "OPENAI_API_KEY"
    assert embedding_key_env(same, ModelConfig(name="m", base_url="http://10.0.0.5:8001/v1")) is None
    assert embedding_key_env(same, ModelConfig(name="m", base_url="https://api.example.com/v1")) is None
