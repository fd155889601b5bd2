"""`langgraph dev` serves robustft's per-sample graph (langgraph.json -> robustft.graph.studio).

Needs langgraph-cli with the in-memory runtime (`pip install "langgraph-cli[inmem]"`), which is
not in the dev extra: langgraph-api pins protobuf below 7 and grpcio below 1.82, older than the
project's environment has. `make test` builds it once in its own environment (`.venv-langgraph`,
`make langgraph-env`) and points ROBUSTFT_LANGGRAPH at its `langgraph`; run by hand, the test
uses ROBUSTFT_LANGGRAPH or a `langgraph` on PATH, and is skipped without one. It starts the server on loopback against the simulated experts, sends one sample
through its HTTP API (`POST /runs/wait`), and compares the detection record with the local
runner's for the same row.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from robustft.config import load_config
from robustft.demo import DEMO_DATA, DEMO_GOLD
from robustft.graph.studio import sample_state
from robustft.run.records import sample_record
from robustft.sim import SimServer
from server_process import free_port, stop_group

ROOT = Path(__file__).resolve().parents[1]
LANGGRAPH = os.environ.get("ROBUSTFT_LANGGRAPH") or shutil.which("langgraph")
pytestmark = pytest.mark.skipif(LANGGRAPH is None, reason="langgraph-cli is not installed: `make test` builds it "
                                "in .venv-langgraph (`make langgraph-env`; then ROBUSTFT_LANGGRAPH="
                                ".venv-langgraph/bin/langgraph)")


def call(url: str, payload: dict | None = None, timeout: float = 120) -> dict:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"},
                                     method="GET" if data is None else "POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def test_langgraph_dev_runs_a_sample_as_the_local_runner_does(tmp_path):
    rows = list(csv.DictReader(DEMO_DATA.open(encoding="utf-8")))[:1]
    data = tmp_path / "one.csv"
    with data.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with SimServer(DEMO_GOLD, accuracy=0.8, seed=5) as sim:
        settings = {"model.name": "sim", "model.base_url": sim.base_url, "denoise.embedding_base_url": sim.base_url,
                    "denoise.embedding_model": "sim", "data.task": "multiple_choice"}
        config_file = tmp_path / "config.yaml"
        config_file.write_text(f"model:\n  name: sim\n  base_url: {sim.base_url}\ndata:\n  task: multiple_choice\n")
        # The local runner's record of the row.
        from robustft.run.runner import denoise

        denoise(load_config(None, {**settings, "data.path": str(data), "out": str(tmp_path / "run")}), progress=False)
        local = json.loads((tmp_path / "run" / "samples.jsonl").read_text().splitlines()[0])

        port = free_port()
        env = {**os.environ, "ROBUSTFT_CONFIG": str(config_file), "PYTHONPATH": str(ROOT),
               "LANGSMITH_TRACING": "false", "LANGGRAPH_CLI_NO_ANALYTICS": "1"}
        server = subprocess.Popen([LANGGRAPH, "dev", "--host", "127.0.0.1", "--port", str(port), "--no-browser",
                                   "--no-reload", "--allow-blocking", "--config", str(ROOT / "langgraph.json")],
                                  cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:  # ready when its health endpoint answers
                try:
                    call(f"{base}/ok", timeout=2)
                    break
                except (urllib.error.URLError, ConnectionError, OSError):
                    if server.poll() is not None or time.monotonic() > deadline:
                        pytest.fail(f"langgraph dev did not start: {server.stdout.read().decode()[-3000:]}")
                    time.sleep(0.2)
            state = sample_state(rows[0], load_config(None, settings))
            out = call(f"{base}/runs/wait", {"assistant_id": "robustft", "input": {"samples": [state]}})
        finally:
            stop_group(server, 20)
    (final,) = out["finished"]
    served = sample_record(final, "multiple_choice", None)
    for key in ("id", "original_label", "decision", "decision_reason"):
        assert served[key] == local[key], key
    for node in ("base", "reasoning"):
        for key in ("prompt", "response", "answer", "attempts", "prompt_tokens", "completion_tokens"):
            assert served["nodes"][node][key] == local["nodes"][node][key], (node, key)
        # The local run scores the stored form of the reply (log-probabilities kept as float32).
        assert served["nodes"][node]["score"] == pytest.approx(local["nodes"][node]["score"], rel=1e-6)
