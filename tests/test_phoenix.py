"""Arize Phoenix receives a traced run of the demo data and serves its span tree back.

Optional: it needs the `phoenix` command of arize-phoenix, a server with about a hundred
dependencies of its own, so it is not in the dev extra. `make test-phoenix` builds it in its own
environment (`.venv-phoenix`, once) and runs this module; by hand, any `phoenix` on PATH or
`ROBUSTFT_PHOENIX=path/to/phoenix` does. Without one, the test is skipped.

It starts `phoenix serve` on 127.0.0.1 (free ports, its database in the test's folder, no
external resources), runs `robustft denoise` on the demo data against the simulated experts with
the standard OTLP variables pointed at Phoenix, and reads the spans back through Phoenix's REST
API (`GET /v1/projects/NAME/spans`): the run, every sample, every paid model call under its node
and sample with its usage (which Phoenix shows as an LLM span with its token counts), and no key.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from robustft.demo import DEMO_DATA, DEMO_GOLD
from robustft.sim import SimServer
from server_process import free_port, stop_group

ROOT = Path(__file__).resolve().parents[1]
PHOENIX = os.environ.get("ROBUSTFT_PHOENIX") or shutil.which("phoenix")
pytestmark = pytest.mark.skipif(PHOENIX is None, reason="Arize Phoenix is not installed: `make test-phoenix` builds "
                                "it in .venv-phoenix and runs this test (or ROBUSTFT_PHOENIX=path/to/phoenix)")

KEY = "sk-test-phoenix-5b4a39281706"
PROJECT = "robustft-test"
NODES = {"base", "reasoning", "checker", "context", "reviewer"}


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def spans_of(base: str) -> tuple[list[dict], bytes]:
    """Every span of the project, through the REST API's pages; and the raw answers."""
    spans, raw, cursor = [], b"", None
    while True:
        query = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        with urllib.request.urlopen(f"{base}/v1/projects/{PROJECT}/spans?{urllib.parse.urlencode(query)}",
                                    timeout=30) as response:
            body = response.read()
        raw += body
        page = json.loads(body)
        spans += page["data"]
        cursor = page.get("next_cursor")
        if not cursor:
            return spans, raw


def test_phoenix_receives_a_demo_runs_span_tree_and_serves_it_back(tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    plain = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PHOENIX_"))}
    log = (tmp_path / "phoenix.log").open("wb")
    server = subprocess.Popen(
        [PHOENIX, "serve"], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**plain, "PHOENIX_HOST": "127.0.0.1", "PHOENIX_PORT": str(port), "PHOENIX_GRPC_PORT": str(free_port()),
             "PHOENIX_WORKING_DIR": str(tmp_path / "phoenix"), "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",
             "PHOENIX_TELEMETRY_ENABLED": "false", "DO_NOT_TRACK": "1"})
    try:
        # Ready when its health endpoint answers (its start-up, migrations included, takes from a few
        # seconds to two minutes on a loaded machine).
        deadline = time.monotonic() + 300
        while True:
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=2).read()
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"phoenix serve did not start: {(tmp_path / 'phoenix.log').read_text()[-3000:]}")
                time.sleep(0.5)

        out = tmp_path / "run"
        with SimServer(DEMO_GOLD, accuracy=0.8, seed=5) as sim:
            run = subprocess.run(
                [sys.executable, "-m", "robustft", "denoise", "--data", str(DEMO_DATA), "--model", "sim",
                 "--base-url", sim.base_url, "--embedding-base-url", sim.base_url, "--embedding-model", "sim",
                 "--concurrency", "8", "--out", str(out), "--quiet"],
                cwd=ROOT, capture_output=True, text=True, timeout=300,
                env={**plain, "PYTHONPATH": str(ROOT), "OPENAI_API_KEY": KEY, "OTEL_EXPORTER_OTLP_ENDPOINT": base,
                     "OTEL_RESOURCE_ATTRIBUTES": f"openinference.project.name={PROJECT}"})
        assert run.returncode == 0, run.stderr[-3000:]
        summary = json.loads((out / "summary.json").read_text())
        samples = {r["id"]: r for r in map(json.loads, (out / "samples.jsonl").read_text().splitlines())}
        paid = summary["this_run"]["calls_paid"]

        # The run has ended, so every span was accepted; Phoenix writes them to its database in the
        # background: read until the run's root and every paid call are there.
        deadline = time.monotonic() + 120
        while True:
            try:
                spans, raw = spans_of(base)
            except urllib.error.HTTPError as exc:  # 404 until the project exists
                if exc.code != 404:
                    raise
                spans, raw = [], b""
            chats = [s for s in spans if s["attributes"].get("gen_ai.operation.name") == "chat"
                     and not s["attributes"].get("robustft.preflight")]
            if any(s["name"] == "robustft.run" for s in spans) and len(chats) >= paid:
                break
            assert time.monotonic() < deadline, f"Phoenix has {len(spans)} spans, {len(chats)} of {paid} calls"
            time.sleep(1)
    finally:
        stop_group(server, 30)
        log.close()

    by_id = {s["context"]["span_id"]: s for s in spans}
    (root,) = [s for s in spans if s["name"] == "robustft.run"]
    assert root["parent_id"] is None and {s["context"]["trace_id"] for s in spans} == {root["context"]["trace_id"]}
    sample_spans = [s for s in spans if s["name"] == "robustft.sample"]
    assert all(s["parent_id"] == root["context"]["span_id"] for s in sample_spans)
    detect = Counter(s["attributes"]["robustft.sample.id"] for s in sample_spans
                     if s["attributes"]["robustft.phase"] == "detect")
    assert detect == Counter(set(samples))  # every sample, once

    assert len(chats) == paid
    for call in chats:
        node = by_id[call["parent_id"]]
        assert node["name"] in NODES and by_id[node["parent_id"]]["name"] == "robustft.sample"
        a = call["attributes"]
        assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0
        # Phoenix read the GenAI attributes as its own: an LLM span with the model and token counts.
        assert call["span_kind"] == "LLM" and a.get("llm.model_name") == "sim"
        assert a.get("llm.token_count.prompt") == a["gen_ai.usage.input_tokens"]
    assert sum(c["attributes"]["gen_ai.usage.input_tokens"] for c in chats) == \
        sum(n.get("prompt_tokens", 0) for r in samples.values() for n in r["nodes"].values())

    assert KEY.encode() not in raw
    assert not any("gen_ai.input.messages" in s["attributes"] for s in spans)
