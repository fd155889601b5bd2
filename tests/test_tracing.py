"""OpenTelemetry traces of a denoise run, as a real OTLP/HTTP collector receives them.

Each test starts `OtlpReceiver` (tests/otlp_receiver.py: http.server on 127.0.0.1 decoding the
protobuf requests with opentelemetry-proto) and the simulated experts, runs `robustft denoise`
with the standard OTEL_EXPORTER_OTLP_* variables, and checks the span tree against the run's own
records: every sample appears, every paid model call is a span with its usage under its node and
sample, and neither the API key nor (by default) any message content is sent.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("opentelemetry.sdk.trace", reason="the otel extra is not installed (pip install -e '.[otel]' in the robustft clone)")
pytest.importorskip("opentelemetry.exporter.otlp.proto.http.trace_exporter",
                    reason="the otel extra is not installed (pip install -e '.[otel]' in the robustft clone)")

from otlp_receiver import OtlpReceiver  # noqa: E402
from robustft.cli import main  # noqa: E402
from robustft.demo import DEMO_DATA, DEMO_GOLD  # noqa: E402
from robustft.sim import SimServer  # noqa: E402

KEY = "sk-test-9f8e7d6c5b4a39281706"
NODES = {"base", "reasoning", "checker", "context", "reviewer"}


@pytest.fixture
def sim():
    with SimServer(DEMO_GOLD, accuracy=0.8, seed=5) as server:
        yield server


@pytest.fixture
def receiver(monkeypatch):
    with OtlpReceiver() as r:
        for name in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_SDK_DISABLED",
                     "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", r.endpoint)
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        yield r


def denoise(sim, out: Path, *extra: str, data: Path = DEMO_DATA) -> int:
    return main(["denoise", "--data", str(data), "--model", "sim", "--base-url", sim.base_url,
                 "--embedding-base-url", sim.base_url, "--embedding-model", "sim", "--concurrency", "8",
                 "--out", str(out), "--quiet", *extra])


def records(out: Path) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, (out / "samples.jsonl").read_text().splitlines())}


def test_a_traced_run_exports_a_complete_span_tree_without_key_or_content(sim, receiver, tmp_path):
    out = tmp_path / "run"
    assert denoise(sim, out) == 0
    spans = receiver.spans
    by_id = {s.span_id: s for s in spans}
    summary = json.loads((out / "summary.json").read_text())
    samples = records(out)

    # One trace, one root: the run, with the run's counts.
    (run,) = [s for s in spans if s.name == "robustft.run"]
    assert run.parent_id == "" and {s.trace_id for s in spans} == {run.trace_id}
    assert run.attributes["robustft.samples"] == 80 and run.attributes["robustft.total"] == summary["total"]
    assert run.resource["service.name"] == "robustft"

    # Every sample appears under the run: once for detection, once more for relabeling if noisy.
    sample_spans = [s for s in spans if s.name == "robustft.sample"]
    assert all(s.parent_id == run.span_id for s in sample_spans)
    detect = Counter(s.attributes["robustft.sample.id"] for s in sample_spans
                     if s.attributes["robustft.phase"] == "detect")
    relabel = Counter(s.attributes["robustft.sample.id"] for s in sample_spans
                      if s.attributes["robustft.phase"] == "relabel")
    assert detect == Counter(set(samples))  # each id once
    noisy = {sid for sid, r in samples.items() if r["decision"] == "noisy"}
    assert set(relabel) == noisy and set(relabel.values()) <= {1} and noisy

    # Nodes hang under their sample; each sample's nodes are the ones its record holds (the checker
    # calls no model, so its record is the decision).
    node_spans = [s for s in spans if s.attributes.get("robustft.node")]
    assert {s.name for s in node_spans} <= NODES
    nodes_of: dict[str, set[str]] = {}
    for node in node_spans:
        parent = by_id[node.parent_id]
        assert parent.name == "robustft.sample"
        nodes_of.setdefault(parent.attributes["robustft.sample.id"], set()).add(node.name)
    for sid, record in samples.items():
        assert nodes_of[sid] == set(record["nodes"]) | {"checker"}, sid

    # Every paid model call is a span with its usage, under its node, under its sample.
    chats = [s for s in spans if s.attributes.get("gen_ai.operation.name") == "chat"]
    preflight = [s for s in chats if s.attributes.get("robustft.preflight")]
    in_graph = [s for s in chats if not s.attributes.get("robustft.preflight")]
    assert len(preflight) == summary["this_run"]["preflight_calls"] == 1
    assert preflight[0].parent_id == run.span_id
    assert len(in_graph) == summary["this_run"]["calls_paid"]
    assert not any(s.attributes.get("robustft.store.hit") for s in chats)
    for call in in_graph:
        node = by_id[call.parent_id]
        assert node.attributes["robustft.node"] in NODES and by_id[node.parent_id].name == "robustft.sample"
        a = call.attributes
        assert call.name == "chat sim" and call.kind == 3  # SPAN_KIND_CLIENT
        assert a["gen_ai.request.model"] == "sim" and a["gen_ai.provider.name"] == "openai"
        assert a["server.address"] == "127.0.0.1" and a["server.port"] == sim.port
        assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0
        assert a["gen_ai.response.finish_reasons"] == ["stop"]
    usage_in = sum(s.attributes["gen_ai.usage.input_tokens"] for s in in_graph)
    usage_out = sum(s.attributes["gen_ai.usage.output_tokens"] for s in in_graph)
    per_sample = sum(n.get("prompt_tokens", 0) for r in samples.values() for n in r["nodes"].values())
    assert usage_in == per_sample and usage_out > 0

    # Embedding batches are spans under the run.
    embeddings = [s for s in spans if s.attributes.get("gen_ai.operation.name") == "embeddings"]
    assert embeddings and sum(s.attributes["robustft.embedding.texts"] for s in embeddings) >= 80
    assert all(by_id[s.parent_id].name == "robustft.run" for s in embeddings)

    # No key anywhere in what was sent; no message content by default.
    raw = b"".join(receiver.bodies)
    assert KEY.encode() not in raw
    questions = [row["question"] for row in csv.DictReader(DEMO_DATA.open(encoding="utf-8"))]
    assert not [q for q in questions if q.encode() in raw]
    reply = next(iter(samples.values()))["nodes"]["base"]["response"]
    assert reply.encode() not in raw
    assert not any("gen_ai.input.messages" in s.attributes or "gen_ai.output.messages" in s.attributes
                   for s in spans)


def test_content_is_sent_only_when_asked_with_keys_redacted(sim, receiver, tmp_path):
    # A row whose question holds the API key: the key must not leave even when content is traced.
    rows = list(csv.DictReader(DEMO_DATA.open(encoding="utf-8")))[:6]
    rows[0]["question"] = f"{rows[0]['question']} (my key is {KEY})"
    data = tmp_path / "data.csv"
    with data.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert denoise(sim, tmp_path / "run", "--otel-content", data=data) in (0, 3)
    raw = b"".join(receiver.bodies)
    assert KEY.encode() not in raw
    chats = [s for s in receiver.spans if s.attributes.get("gen_ai.operation.name") == "chat"
             and not s.attributes.get("robustft.preflight")]
    assert chats
    for call in chats:
        sent = json.loads(call.attributes["gen_ai.input.messages"])
        assert sent[-1]["role"] == "user" and sent[-1]["parts"][0]["type"] == "text"
        got = json.loads(call.attributes["gen_ai.output.messages"])
        assert "Answer:" in got[0]["parts"][0]["content"]
    first = [c for c in chats if rows[0]["question"].split(" (my key")[0] in c.attributes["gen_ai.input.messages"]]
    assert first and all("(my key is ***)" in c.attributes["gen_ai.input.messages"] for c in first)


def test_store_hits_retries_and_failovers_are_marked(receiver, tmp_path):
    # A run, then the same rows again with its samples.jsonl gone but its response store kept: every
    # call of the first rows is answered from the store. The second run has a second replica that
    # nothing listens on (every call sent there fails over), and the server fails a fifth of its calls
    # (retried).
    out = tmp_path / "run"
    dead = "http://127.0.0.1:9"
    with SimServer(DEMO_GOLD, accuracy=0.8, seed=5) as sim:
        assert denoise(sim, out, "--limit", "4") == 0
    (out / "samples.jsonl").unlink()
    receiver.spans.clear()
    with SimServer(DEMO_GOLD, accuracy=0.8, seed=5, error_rate=0.2) as sim:
        assert main(["denoise", "--data", str(DEMO_DATA), "--model", "sim", "--base-url", sim.base_url,
                     "--base-url", dead, "--embedding-base-url", sim.base_url, "--embedding-model", "sim",
                     "--concurrency", "4", "--limit", "12", "--out", str(out), "--quiet"]) in (0, 3)
    chats = [s for s in receiver.spans if s.attributes.get("gen_ai.operation.name") == "chat"
             and not s.attributes.get("robustft.preflight")]
    hits = [s for s in chats if s.attributes.get("robustft.store.hit")]
    paid = [s for s in chats if "gen_ai.usage.input_tokens" in s.attributes]
    summary = json.loads((out / "summary.json").read_text())
    failed = [s for s in chats if s.status_code == 2]  # calls that kept failing (their sample failed)
    assert len(paid) == summary["this_run"]["calls_paid"] and len(paid) + len(hits) + len(failed) == len(chats)
    assert all(s.attributes["error.type"] == "ModelCallError" for s in failed)
    assert len(hits) == summary["this_run"]["calls_from_store"] > 0
    assert not any("gen_ai.usage.input_tokens" in s.attributes for s in hits)
    events = Counter(e[0] for s in receiver.spans for e in s.events)
    assert events["robustft.retry"] + events["robustft.call_failed"] == summary["this_run"]["failed_attempts"]
    assert events["robustft.retry"] > 0
    failovers = [e[1] for s in receiver.spans for e in s.events if e[0] == "robustft.replica_failed"]
    assert failovers and all(e["server.address"] == "127.0.0.1" for e in failovers)
    assert {e["server.port"] for e in failovers} == {9, sim.port}  # the dead replica, and the sim's 5xx


def test_tracing_off_loads_nothing_of_it(sim, tmp_path):
    # A run without the variables (in a fresh process, as a user runs it) never imports the tracing code.
    code = (
        "import sys, os\n"
        "for k in [k for k in os.environ if k.startswith('OTEL_')]: del os.environ[k]\n"
        "from robustft.cli import main\n"
        f"code = main(['denoise', '--data', {str(DEMO_DATA)!r}, '--limit', '5', '--model', 'sim', '--base-url', "
        f"{sim.base_url!r}, '--embedding-base-url', {sim.base_url!r}, '--embedding-model', 'sim', '--out', "
        f"{str(tmp_path / 'run')!r}, '--quiet'])\n"
        "print(code, 'robustft.tracing.otel' in sys.modules, "
        "'opentelemetry.exporter.otlp.proto.http.trace_exporter' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.stdout.split()[-3:] == ["0", "False", "False"], result.stderr[-2000:]


def test_an_unsupported_protocol_is_a_clear_error(sim, receiver, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    assert denoise(sim, tmp_path / "run", "--limit", "2") == 2
    err = capsys.readouterr().err
    assert "OTEL_EXPORTER_OTLP_PROTOCOL='http/json' is not supported" in err and "Traceback" not in err


def test_ray_workers_export_their_samples_under_the_drivers_run(sim, receiver, tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]' in the robustft clone)")
    import logging

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING)
    try:
        out = tmp_path / "run"
        assert denoise(sim, out, "--limit", "16", "--executor", "ray") == 0
    finally:
        ray.shutdown()
    spans = receiver.spans
    by_id = {s.span_id: s for s in spans}
    (run,) = [s for s in spans if s.name == "robustft.run"]
    assert {s.trace_id for s in spans} == {run.trace_id}
    samples = [s for s in spans if s.name == "robustft.sample"]
    assert {s.attributes["robustft.sample.id"] for s in samples} == set(records(out))
    assert all(s.parent_id == run.span_id for s in samples)
    chats = [s for s in spans if s.attributes.get("gen_ai.operation.name") == "chat"
             and not s.attributes.get("robustft.preflight")]
    summary = json.loads((out / "summary.json").read_text())
    assert len(chats) == summary["this_run"]["calls_paid"] > 0
    assert all(by_id[by_id[c.parent_id].parent_id].name == "robustft.sample" for c in chats)
    assert KEY.encode() not in b"".join(receiver.bodies)


@pytest.fixture
def langsmith(monkeypatch):
    """A LangSmith stub the langsmith client of this process sends to, and nothing of it left after."""
    from langsmith_stub import LangSmithStub
    import langsmith.run_trees
    import langsmith.utils

    def forget() -> None:  # the langsmith client caches what it read from the environment
        langsmith.utils.get_env_var.cache_clear()
        langsmith.utils.get_tracer_project.cache_clear()

    for name in [n for n in os.environ if n.startswith(("OTEL_", "LANGCHAIN_", "LANGSMITH_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with LangSmithStub() as stub:
        monkeypatch.setenv("LANGSMITH_ENDPOINT", stub.endpoint)
        monkeypatch.setenv("LANGSMITH_TRACING", "true")
        monkeypatch.setenv("LANGSMITH_API_KEY", "lsv2-test-key")
        monkeypatch.setenv("LANGSMITH_DISABLE_RUN_COMPRESSION", "true")
        monkeypatch.setattr(langsmith.run_trees, "_CLIENT", None)  # a client for this endpoint
        forget()
        try:
            yield stub
        finally:
            if langsmith.run_trees._CLIENT is not None:  # its threads stop: nothing of it outlives the test
                langsmith.run_trees._CLIENT.close(timeout=0)
            monkeypatch.undo()
            forget()


def test_langsmith_shows_nodes_and_model_calls_as_llm_runs_with_usage(sim, langsmith, tmp_path):
    out = tmp_path / "run"
    assert denoise(sim, out, "--limit", "6") == 0
    stub = langsmith
    runs = stub.runs
    samples = records(out)
    summary = json.loads((out / "summary.json").read_text())
    llm = [r for r in runs.values() if r["run_type"] == "llm"]
    in_graph = [r for r in llm if not r["extra"]["metadata"].get("robustft_preflight")]
    assert len(in_graph) == summary["this_run"]["calls_paid"] > 0
    for run in in_graph:
        parent = runs[str(run["parent_run_id"])]
        assert parent["run_type"] == "chain" and parent["name"] in NODES, parent["name"]
        assert run["name"] == "chat sim" and run["extra"]["metadata"]["ls_model_name"] == "sim"
        usage = run["outputs"]["usage_metadata"]
        assert usage["input_tokens"] > 0 and usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
        assert run["end_time"] and not run.get("error")
    assert sum(r["outputs"]["usage_metadata"]["input_tokens"] for r in in_graph) == sum(
        n.get("prompt_tokens", 0) for r in samples.values() for n in r["nodes"].values())
    # Every node of every sample is a run (LangGraph's own), and the key never leaves.
    node_runs = Counter(r["name"] for r in runs.values() if r["run_type"] == "chain" and r["name"] in NODES)
    assert node_runs["base"] == len(samples) and node_runs["checker"] == len(samples)
    assert KEY.encode() not in b"".join(stub.bodies)


def test_opentelemetry_and_langsmith_at_once_both_get_every_call(sim, langsmith, tmp_path, monkeypatch):
    with OtlpReceiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        out = tmp_path / "run"
        assert denoise(sim, out, "--limit", "3") == 0
    paid = json.loads((out / "summary.json").read_text())["this_run"]["calls_paid"]
    spans = [s for s in receiver.spans if "gen_ai.usage.input_tokens" in s.attributes
             and not s.attributes.get("robustft.preflight")]
    llm = [r for r in langsmith.runs.values() if r["run_type"] == "llm"
           and not r["extra"]["metadata"].get("robustft_preflight")]
    assert len(spans) == len(llm) == paid > 0
    assert sorted(s.attributes["gen_ai.usage.input_tokens"] for s in spans) == sorted(
        r["outputs"]["usage_metadata"]["input_tokens"] for r in llm)


def test_a_collector_that_is_down_costs_the_run_nothing(sim, tmp_path, monkeypatch):
    # Nothing listens on the discard port: every export fails, and the run's outputs are as without tracing.
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    assert denoise(sim, tmp_path / "traced", "--limit", "8") == 0
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert denoise(sim, tmp_path / "plain", "--limit", "8") == 0
    for name in ("samples.jsonl", "denoised.jsonl"):
        assert (tmp_path / "traced" / name).read_bytes() == (tmp_path / "plain" / name).read_bytes()


def test_a_fraction_of_the_samples_is_traced_the_same_ones_every_time(sim, receiver, tmp_path):
    import zlib

    config = tmp_path / "config.yaml"
    config.write_text("run:\n  otel_sample: 0.25\n")
    traced_ids = []
    for attempt in range(2):
        receiver.spans.clear()
        out = tmp_path / f"run{attempt}"
        assert denoise(sim, out, "--config", str(config)) == 0
        spans = receiver.spans
        by_id = {s.span_id: s for s in spans}
        ids = {s.attributes["robustft.sample.id"] for s in spans if s.name == "robustft.sample"}
        expected = {sid for sid in records(out) if zlib.crc32(sid.encode()) < 0.25 * 2**32}
        assert ids == expected and 5 < len(ids) < 40
        traced_ids.append(ids)
        # Only the traced samples' nodes and calls, each under its own sample; nothing stray under the run.
        calls = [s for s in spans if s.attributes.get("gen_ai.operation.name") == "chat"
                 and not s.attributes.get("robustft.preflight")]
        for call in calls:
            sample = by_id[by_id[call.parent_id].parent_id]
            assert sample.attributes["robustft.sample.id"] in expected
        traced_calls = sum(n.get("attempts") or 0 for sid, r in records(out).items() if sid in expected
                           for n in r["nodes"].values())
        assert len(calls) == traced_calls
        assert all(by_id[s.parent_id].name != "robustft.run" for s in spans if s.attributes.get("robustft.node"))
    assert traced_ids[0] == traced_ids[1]


def test_a_program_that_set_up_the_sdk_gets_the_spans_through_its_own_provider(sim, tmp_path):
    # In a fresh process (a global tracer provider can be set once per process): no OTEL_ variable,
    # the program's own provider and exporter, as Phoenix's `register()` sets them up.
    code = (
        "import os, sys\n"
        "for k in [k for k in os.environ if k.startswith('OTEL_')]: del os.environ[k]\n"
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from opentelemetry.sdk.trace.export import SimpleSpanProcessor\n"
        "from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter\n"
        "exporter = InMemorySpanExporter()\n"
        "provider = TracerProvider()\n"
        "provider.add_span_processor(SimpleSpanProcessor(exporter))\n"
        "trace.set_tracer_provider(provider)\n"
        "import robustft\n"
        f"result = robustft.denoise({str(DEMO_DATA)!r}, model='sim', base_url={sim.base_url!r}, "
        f"embedding_base_url={sim.base_url!r}, embedding_model='sim', limit=5, out={str(tmp_path / 'run')!r}, "
        "progress=False)\n"
        "names = [s.name for s in exporter.get_finished_spans()]\n"
        "print(names.count('robustft.run'), names.count('robustft.sample'), sum(n == 'chat sim' for n in names), "
        "result.summary['this_run']['calls_paid'] + result.summary['this_run']['preflight_calls'])\n"
        "trace.get_tracer('x').start_span('after').end()\n"  # the program's provider still works: not shut down
        "print(len(exporter.get_finished_spans()) - len(names))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[1])
    lines = result.stdout.split("\n")
    runs, samples, calls, paid = map(int, lines[-3].split())
    assert runs == 1 and samples >= 5 and calls == paid > 0, result.stderr[-2000:]
    assert lines[-2] == "1"


def test_an_unreachable_langsmith_costs_the_run_nothing(sim, tmp_path, monkeypatch):
    import langsmith.run_trees
    import langsmith.utils

    import robustft.tracing.langsmith as smith

    for name in [n for n in os.environ if n.startswith(("OTEL_", "LANGCHAIN_", "LANGSMITH_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setattr(smith, "FLUSH_S", 0.5)  # how long the end of the run waits for it
    assert denoise(sim, tmp_path / "plain", "--limit", "6") == 0
    monkeypatch.setenv("LANGSMITH_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("LANGSMITH_TRACING", "true")
    monkeypatch.setenv("LANGSMITH_API_KEY", "lsv2-test-key")
    monkeypatch.setattr(langsmith.run_trees, "_CLIENT", None)
    langsmith.utils.get_env_var.cache_clear()
    try:
        assert denoise(sim, tmp_path / "traced", "--limit", "6") == 0
    finally:
        if langsmith.run_trees._CLIENT is not None:
            langsmith.run_trees._CLIENT.close(timeout=0)
        monkeypatch.undo()
        langsmith.utils.get_env_var.cache_clear()
    for name in ("samples.jsonl", "denoised.jsonl"):
        assert (tmp_path / "traced" / name).read_bytes() == (tmp_path / "plain" / name).read_bytes()


def test_robustfts_encoder_writes_the_request_the_sdks_encoder_builds():
    # The exporter sends `robustft.tracing.encode`'s bytes instead of the SDK's message objects: for
    # spans of every shape (each attribute type, events, links, statuses, a remote parent, a trace
    # state, two resources and scopes, text beyond ASCII, int64's ends), the request decoded by
    # opentelemetry-proto must equal the one the SDK's `encode_spans` builds.
    import random

    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode_spans
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags
    from opentelemetry.trace.span import TraceState

    from robustft.tracing.encode import encode_spans

    rng = random.Random(7)
    values = ["", "x", "é ü 漢字 🙂", "a" * 5000, True, False, 0, 1, -1, 127, 128, 2**63 - 1, -(2**63), 300000,
              0.0, -2.5, 1e300, float("inf"), ["stop"], ["a", "é"], [1, 2, 3], [True, False], [0.5], []]
    finished = []
    for resource in (Resource({"service.name": "robustft", "n": 1}), Resource({"service.name": "other"})):
        memory = InMemorySpanExporter()
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(SimpleSpanProcessor(memory))
        for scope in (provider.get_tracer("robustft", "1.0"), provider.get_tracer("other", None, "https://s")):
            remote = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, is_remote=True,
                                 trace_flags=TraceFlags(1), trace_state=TraceState([("k", "v"), ("a", "b")]))
            root = scope.start_span("robustft.run", context=trace.set_span_in_context(NonRecordingSpan(remote)))
            for i in range(60):
                attributes = {f"key.{j}": rng.choice(values) for j in range(rng.randrange(0, 6))}
                span = scope.start_span(rng.choice(["chat sim", "base", "robustft.sample", "ü"]),
                                        context=trace.set_span_in_context(root), attributes=attributes,
                                        kind=rng.choice(list(SpanKind)),
                                        links=[Link(remote, {"l": i})] if i % 7 == 0 else None)
                if i % 5 == 0:
                    span.add_event("robustft.retry", {"error.type": "X", "n": i})
                    span.add_event("empty")
                if i % 3 == 0:
                    span.set_status(Status(StatusCode.ERROR, "bad é") if i % 2 else Status(StatusCode.OK))
                span.end()
            root.end()
            scope.start_span("alone").end()  # no parent
        finished += memory.get_finished_spans()
    ours = ExportTraceServiceRequest.FromString(encode_spans(finished))
    assert ours == sdk_encode_spans(finished)
    assert sum(len(s.spans) for r in ours.resource_spans for s in r.scope_spans) == len(finished) == 248
    # Again: what is cached (attributes, resources, scopes) gives the same bytes.
    assert ExportTraceServiceRequest.FromString(encode_spans(finished[::-1])) == sdk_encode_spans(finished[::-1])
