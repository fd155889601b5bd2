"""API keys never reach what robustft prints or stores, even from a server that echoes them."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from robustft import secrets
from robustft.cli import main
from robustft.config import load_config
from robustft.secrets import redact, register_api_keys, register_secret
from robustft.sim import SimModel, load_gold

KEY = "k3y-Very-Secret-Value-0042"  # matches none of the token patterns: only its registration hides it


@pytest.fixture(autouse=True)
def clean_registry(monkeypatch):
    monkeypatch.setattr(secrets, "_key_envs", {"OPENAI_API_KEY"})
    monkeypatch.setattr(secrets, "_values", set())


def test_the_values_of_the_key_variables_in_use_are_replaced(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("JUDGE_KEY", "another-long-secret-77")
    assert redact(f"401: key {KEY} rejected") == "401: key *** rejected"
    assert "another-long-secret-77" in redact("x another-long-secret-77")  # not registered yet
    register_api_keys(load_config(None, {"roles": {"judge": {"api_key_env": "JUDGE_KEY"}}}))
    assert redact("x another-long-secret-77 y") == "x *** y"


def test_credential_shaped_tokens_are_replaced_without_registration():
    text = ('upstream said: {"headers": {"Authorization": "Bearer abcdefghij0123456789"}, '
            '"api_key": "zz9zzzzzzzzz", "hint": "sk-proj-AbCdEfGh123456"} x-api-key: qqqqqq7qqqqqq')
    out = redact(text)
    for secret in ("abcdefghij0123456789", "zz9zzzzzzzzz", "sk-proj-AbCdEfGh123456", "qqqqqq7qqqqqq"):
        assert secret not in out
    assert '"Authorization": "Bearer ***"' in out and '"api_key": "***"' in out


def test_placeholders_and_ordinary_text_are_left_alone(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "EMPTY")  # what local servers get: not a secret
    register_secret("x")
    text = ("EMPTY answer: x. The bearer of bad news; Bearer securities-and-bonds; a sketch of the API; "
            "api_key: see-the-docs. risk-free")
    assert redact(text) == text
    assert redact(None) is None and redact("") == ""


class EchoServer:
    """An OpenAI-compatible server that answers like robustft.sim, except that it rejects every prompt
    containing `trigger` with an error quoting the request's Authorization header (what some proxies do)."""

    def __init__(self, gold, trigger: str | None, status: int = 400):
        sim = SimModel(load_gold(gold), accuracy=1.0, seed=0)

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if trigger is None or trigger in raw.decode("utf-8", "replace"):
                    code, payload = status, {"error": {"message": f"rejected request with headers "
                                                                  f"Authorization: {self.headers.get('Authorization')}",
                                                       "type": "invalid_request_error"}}
                else:
                    reply = sim.complete(raw)
                    code, payload = reply.status, reply.payload
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_a_server_echoing_the_key_at_preflight_does_not_get_it_printed(tmp_path, toy_mc_csv, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with EchoServer(toy_mc_csv, trigger=None, status=401) as server:
        code = main(["denoise", "--data", str(toy_mc_csv), "--model", "m", "--base-url", server.base_url,
                     "--out", str(tmp_path / "out"), "--quiet"])
    cap = capsys.readouterr()
    assert code == 2
    assert "rejected request with headers Authorization: Bearer ***" in cap.err
    assert KEY not in cap.err + cap.out


def test_a_server_echoing_the_key_mid_run_does_not_get_it_stored(tmp_path, toy_mc_csv, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    out = tmp_path / "out"
    with EchoServer(toy_mc_csv, trigger="company 5 went") as server:
        main(["denoise", "--data", str(toy_mc_csv), "--model", "m", "--base-url", server.base_url,
              "--out", str(out), "--quiet"])
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    failed = [s for s in samples if s["status"] == "failed"]
    assert [s["id"] for s in failed] == ["t5"] and "Authorization" in failed[0]["error"]
    for path in out.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
