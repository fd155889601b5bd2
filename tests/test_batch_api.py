"""Batch mode (`--batch-api`): the simulator's `/v1/files` and `/v1/batches` as the OpenAI reference
describes them, and a run through them that gives byte for byte the online run's outputs, at the
batch price, through partial failures and expiry, and after a kill (its batches collected, not sent
again)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from robustft.cli import main
from robustft.demo import DEMO_DATA, DEMO_GOLD
from robustft.sim import SimServer

ROWS = 40
OUTPUTS = ("samples.jsonl", "denoised.jsonl")


def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  price_input_per_mtok: 100\n  price_output_per_mtok: 400\n  max_retries: 6\n"
                    "denoise:\n  batch_poll_s: 0.05\n")
    return path


def args(sim: SimServer, config: Path, out: Path, *extra: str) -> list[str]:
    return ["denoise", "--config", str(config), "--data", str(DEMO_DATA), "--limit", str(ROWS), "--model", "sim",
            "--base-url", sim.base_url, "--embedding-base-url", sim.base_url, "--embedding-model", "e",
            "--out", str(out), "--quiet", *extra]


@pytest.fixture(scope="module")
def online(tmp_path_factory):
    """The online run every batch run must match."""
    tmp = tmp_path_factory.mktemp("online")
    with SimServer(DEMO_GOLD, accuracy=0.8, seed=0) as sim:
        assert main(args(sim, config_file(tmp), tmp / "run")) == 0
    return tmp / "run"


def summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def test_the_sim_serves_files_and_batches_as_the_reference_describes(tmp_path):
    import urllib.request

    import aiohttp  # noqa: F401 - the client side is robustft's; here plain HTTP shows the protocol

    with SimServer(DEMO_GOLD, batch_delay_s=0.0) as sim:
        body = {"model": "sim", "messages": [{"role": "user", "content": "Answer: A or B?"}], "max_tokens": 5}
        line = json.dumps({"custom_id": "r1", "method": "POST", "url": "/v1/chat/completions", "body": body})
        boundary = "XyZ"
        form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n"
                f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\n"
                f"Content-Type: application/jsonl\r\n\r\n{line}\n\r\n--{boundary}--\r\n").encode()

        def call(method: str, path: str, data: bytes | None = None, ctype: str = "application/json"):
            req = urllib.request.Request(sim.base_url + path, data=data, method=method,
                                         headers={"Content-Type": ctype} if data else {})
            with urllib.request.urlopen(req, timeout=10) as r:
                raw = r.read()
            return raw if path.endswith("/content") else json.loads(raw)

        uploaded = call("POST", "/files", form, f"multipart/form-data; boundary={boundary}")
        assert uploaded["object"] == "file" and uploaded["purpose"] == "batch"
        batch = call("POST", "/batches", json.dumps({"input_file_id": uploaded["id"], "endpoint":
                                                     "/v1/chat/completions", "completion_window": "24h"}).encode())
        assert batch["object"] == "batch" and batch["status"] in ("validating", "in_progress")
        deadline = time.monotonic() + 10
        while batch["status"] != "completed" and time.monotonic() < deadline:
            time.sleep(0.02)
            batch = call("GET", f"/batches/{batch['id']}")
        assert batch["request_counts"] == {"total": 1, "completed": 1, "failed": 0} and batch["error_file_id"] is None
        out = json.loads(call("GET", f"/files/{batch['output_file_id']}/content"))
        assert out["custom_id"] == "r1" and out["response"]["status_code"] == 200 and out["error"] is None
        assert out["response"]["body"]["choices"][0]["message"]["content"]


def test_a_batch_run_gives_the_online_outputs_at_the_batch_price(tmp_path, online):
    out = tmp_path / "run"
    with SimServer(DEMO_GOLD, accuracy=0.8, seed=0, batch_delay_s=0.05) as sim:
        assert main(args(sim, config_file(tmp_path), out, "--batch-api")) == 0
        batches = sim.batches.created
    for name in OUTPUTS:
        assert (out / name).read_bytes() == (online / name).read_bytes()
    assert 3 <= batches <= 6  # one per step of the graph: base, reasoning, context, reviewer (and re-asks)
    paid, online_paid = summary(out)["cost"]["this_run"], summary(online)["cost"]["this_run"]
    probe = online_paid["by_role"]["base"]["paid_usd"] - summary(online)["cost"]["by_role"]["base"]
    # Half price for every batched call; the preflight probe goes online at the full price.
    assert paid["paid_usd"] == pytest.approx((online_paid["paid_usd"] - probe) / 2 + probe, rel=1e-6)
    recorded = [json.loads(x) for x in (out / "batches.jsonl").read_text().splitlines()]
    assert len([r for r in recorded if "custom_ids" in r]) == len([r for r in recorded if "collected" in r]) == batches


def test_failed_and_expired_requests_are_sent_again_and_only_they(tmp_path, online):
    out = tmp_path / "run"
    with SimServer(DEMO_GOLD, accuracy=0.8, seed=0, batch_delay_s=0.02, batch_fail_rate=0.15,
                   batch_expire_after=25) as sim:
        assert main(args(sim, config_file(tmp_path), out, "--batch-api")) == 0
        worked, failed, expired = sim.batches.lines, sim.batches.failed_lines, sim.batches.expired_lines
        chat = sim.requests
    assert failed > 0 and expired > 0
    paid = summary(online)["this_run"]
    assert chat == paid["calls_paid"] + paid["preflight_calls"]  # each request answered once: none paid twice
    assert worked == paid["calls_paid"] + failed  # the batches worked each request once, plus the failed lines
    for name in OUTPUTS:
        assert (out / name).read_bytes() == (online / name).read_bytes()


def test_a_killed_batch_run_collects_its_batches_instead_of_sending_them_again(tmp_path, online):
    out = tmp_path / "run"
    config = config_file(tmp_path)
    with SimServer(DEMO_GOLD, accuracy=0.8, seed=0, batch_delay_s=60.0) as slow:
        proc = subprocess.Popen([sys.executable, "-m", "robustft", *args(slow, config, out, "--batch-api")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        record = out / "batches.jsonl"
        deadline = time.monotonic() + 120
        while not (record.exists() and b"custom_ids" in record.read_bytes()):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else "timeout"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        first = json.loads(record.read_text().splitlines()[0])
        # The server works the batch while nobody waits; the next run finds it and collects it.
        slow.batches.delay_s = 0.02
        slow.batches.ready_at[first["batch"]] = 0.0
        submitted_before = slow.batches.created
        code = main(args(slow, config, out, "--batch-api"))
        assert code == 0
        new_batches = [json.loads(x) for x in record.read_text().splitlines() if "custom_ids" in x][1:]
    resent = {cid for b in new_batches for cid in b["custom_ids"]} & set(first["custom_ids"])
    assert not resent and slow.batches.created - submitted_before == len(new_batches)
    for name in OUTPUTS:
        assert (out / name).read_bytes() == (online / name).read_bytes()


def test_batch_mode_needs_one_openai_server(tmp_path, capsys):
    with SimServer(DEMO_GOLD) as sim:
        code = main([*args(sim, config_file(tmp_path), tmp_path / "run", "--batch-api"), "--base-url", sim.base_url])
    assert code == 2 and "needs every role on one OpenAI-compatible server" in capsys.readouterr().err
