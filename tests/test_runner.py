"""The runner against a real server: the concurrency limit, a dead server, failed samples, progress."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiohttp import web

from robustft.cli import main
from robustft.demo import DEMO_DATA, DEMO_GOLD
from robustft.sim import SimServer

from httpstub import StubServer


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_the_concurrency_limit_holds_at_the_server_and_is_reached(tmp_path):
    with SimServer(DEMO_GOLD, accuracy=0.8, seed=0, latency_ms=60) as sim:
        code = main(["denoise", "--data", str(DEMO_DATA), "--limit", "40", "--model", "sim", "--base-url", sim.base_url,
                     "--embedding-base-url", sim.base_url, "--embedding-model", "e", "--concurrency", "6",
                     "--out", str(tmp_path / "run"), "--quiet"])
        assert code == 0
        assert sim.max_in_flight == 6  # never more, and the samples in flight keep every slot busy


def test_a_server_that_dies_mid_run_stops_it_without_failing_samples(tmp_path):
    config = tmp_path / "patient.yaml"
    config.write_text("model:\n  give_up_after_s: 1\n  max_retries: 10\n  retry_backoff_max_s: 0.2\n")
    out = tmp_path / "run"

    def command(url: str) -> list[str]:
        return [sys.executable, "-m", "robustft", "denoise", "--config", str(config), "--data", str(DEMO_DATA),
                "--model", "sim", "--base-url", url, "--embedding-base-url", url, "--embedding-model", "e",
                "--concurrency", "4", "--out", str(out), "--quiet"]

    sim = SimServer(DEMO_GOLD, accuracy=0.8, seed=0, latency_ms=50)
    sim.start()
    proc = subprocess.Popen(command(sim.base_url), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while sim.requests < 20:  # the run is well under way
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else "timeout"
        time.sleep(0.01)
    sim.stop()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert "has failed for" in err and "give_up_after_s" in err and "run the same command again" in err
    assert all(r["status"] != "failed" for r in read_jsonl(out / "samples.jsonl"))
    with SimServer(DEMO_GOLD, accuracy=0.8, seed=0) as revived:  # the server is back, at another address
        resumed = subprocess.run(command(revived.base_url), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["total"] == 80 and summary["failed"] == 0


class Refusing(StubServer):
    """The simulated experts over HTTP, refusing (HTTP 400, which no retry can fix) every request
    that mentions `trigger` while `refuse` is set."""

    def __init__(self, trigger: str):
        self.trigger, self.refuse = trigger, True
        self.sim = SimServer(DEMO_GOLD, accuracy=0.8, seed=0)
        super().__init__(self._reply)
        self.start()

    async def _reply(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.path.endswith("/embeddings"):
            reply = self.sim.model.embed(body)
        elif self.refuse and self.trigger.encode() in body:
            return web.json_response({"error": {"message": "prompt rejected by policy"}}, status=400)
        else:
            reply = self.sim.model.complete(body)
        return web.Response(status=reply.status, body=reply.encoded(), content_type="application/json")

    def close(self) -> None:
        self.stop()


def test_failed_samples_exit_3_and_a_rerun_retries_them(tmp_path, capsys):
    import csv

    with open(DEMO_DATA, newline="", encoding="utf-8") as f:
        second = list(csv.DictReader(f))[1]["question"]
    server = Refusing(trigger=second[:40])
    try:
        args = ["denoise", "--data", str(DEMO_DATA), "--limit", "12", "--model", "sim", "--base-url", server.base_url,
                "--embedding-base-url", server.base_url, "--embedding-model", "e", "--out", str(tmp_path / "run"),
                "--quiet"]
        assert main(args) == 3
        err = capsys.readouterr().err
        assert "1 of 12 samples failed" in err and "run the same command again to retry them" in err
        failed = [r for r in read_jsonl(tmp_path / "run" / "samples.jsonl") if r["status"] == "failed"]
        assert len(failed) == 1 and "HTTP 400" in failed[0]["error"] and "policy" in failed[0]["error"]
        server.refuse = False
        assert main(args) == 0
        assert all(r["status"] != "failed" for r in read_jsonl(tmp_path / "run" / "samples.jsonl"))
    finally:
        server.close()


def test_quiet_mode_logs_progress_lines(tmp_path, caplog):
    import asyncio

    from robustft.config import load_config
    from robustft.run.runner import DenoiseRun

    with SimServer(DEMO_GOLD, accuracy=0.8, seed=0, latency_ms=20) as sim:
        config = load_config(None, {"data": {"path": str(DEMO_DATA), "limit": 24},
                                    "model": {"name": "sim", "base_url": sim.base_url},
                                    "denoise": {"embedding_base_url": sim.base_url, "embedding_model": "e",
                                                "concurrency": 2}, "out": str(tmp_path / "run")})
        with caplog.at_level(logging.INFO, logger="robustft"):
            asyncio.run(DenoiseRun(config, progress=False, quiet_log_every_s=0.05).run())
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("detect: ")]
    assert lines, caplog.text
    assert "samples (" in lines[-1] and "calls/s" in lines[-1] and "tok" in lines[-1]


@pytest.mark.parametrize("case", ["file", "under a file", "damaged store", "damaged journal"])
def test_an_unusable_run_directory_is_a_clear_error_and_costs_no_call(tmp_path, capsys, case):
    with SimServer(DEMO_GOLD, accuracy=0.8, seed=0) as sim:
        out = tmp_path / "run"
        if case == "file":
            out.write_text("not a folder")
        elif case == "under a file":
            (tmp_path / "plain").write_text("x")
            out = tmp_path / "plain" / "run"
        else:
            out.mkdir()
            if case == "damaged store":
                (out / "responses.sqlite").write_bytes(b"this is not a database" * 100)
            else:
                (out / "samples.jsonl").write_text('{"id": "a", "status": "clean"}\nnot json at all\n{"id": "b"}\n')
        code = main(["denoise", "--data", str(DEMO_DATA), "--limit", "4", "--model", "sim", "--base-url", sim.base_url,
                     "--out", str(out), "--quiet"])
        err = capsys.readouterr().err
        assert code == 2, err
        assert sim.requests == 0 and "Traceback" not in err
    expected = {"file": "a file is in the way", "under a file": "cannot write there",
                "damaged store": "--repair` to rebuild it", "damaged journal": "line 2"}[case]
    assert expected in err and str(out.name) in err
