"""Stopping a run at any moment costs nothing: the real CLI, killed (SIGINT or SIGKILL) at several
points, against the simulated experts over HTTP, resumes to exactly the outputs of a run that was
never stopped, re-sending at most the calls that were in flight.

Each kill waits on what the run directory shows (the journal's lines, the response store's rows),
not on a timer.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from aiohttp import web

from robustft.sim import SimServer
from robustft.sim.embeddings import embed

from httpstub import StubServer
from shared_data import ARC

ROWS, CONCURRENCY = 40, 8
OUTPUTS = ("samples.jsonl", "denoised.jsonl")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def journal_lines(out: Path, status: str | None = None) -> int:
    path = out / "samples.jsonl"
    if not path.exists():
        return 0
    lines = [json.loads(x) for x in path.read_bytes().splitlines() if x.endswith(b"}")]
    return sum(1 for r in lines if status is None or r.get("status") == status)


def stored_responses(out: Path) -> int:
    path = out / "responses.sqlite"
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
            return db.execute("select count(*) from responses").fetchone()[0]
    except sqlite3.Error:
        return 0


def wait_for(condition, what: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (exit {proc.returncode}) before {what}: {proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class GatedEmbeddings(StubServer):
    """A /v1/embeddings server (the simulator's deterministic embeddings) that answers only while its
    gate is open: with the gate shut, a run that reaches the barrier waits there for its vectors."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        super().__init__(self._embed)
        self.start()

    async def _embed(self, request: web.Request) -> web.Response:
        body = await request.json()
        while not self.gate.is_set():
            await asyncio.sleep(0.02)
        data = [{"object": "embedding", "index": i, "embedding": embed(t)} for i, t in enumerate(body["input"])]
        return web.json_response({"object": "list", "data": data, "model": body["model"]})

    def close(self) -> None:
        self.gate.set()
        self.stop()


@pytest.fixture(scope="module")
def sim():
    # Slow enough replies that a kill lands while calls are in flight; deterministic per prompt.
    with SimServer(ARC / "labeled.csv", accuracy=0.8, seed=4, latency_ms=250) as server:
        yield server


@pytest.fixture(scope="module")
def embeddings():
    server = GatedEmbeddings()
    yield server
    server.close()


def command(sim, out: Path, embeddings=None) -> list[str]:
    cmd = [sys.executable, "-m", "robustft", "denoise", "--data", str(ARC / "noisy30.csv"), "--limit", str(ROWS),
           "--model", "sim", "--base-url", sim.base_url, "--out", str(out), "--quiet", "--concurrency", str(CONCURRENCY)]
    if embeddings is not None:
        cmd += ["--embedding-base-url", embeddings.base_url, "--embedding-model", "gated"]
    return cmd


@pytest.fixture(scope="module")
def whole(sim, tmp_path_factory):
    """The run that was never stopped, and the calls it made."""
    out = tmp_path_factory.mktemp("whole") / "run"
    before = sim.requests
    done = subprocess.run(command(sim, out), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return out, sim.requests - before


KILL_POINTS = {
    # Responses are stored, but no sample has finished detection.
    "before any sample finishes": lambda out: stored_responses(out) >= 1 and journal_lines(out) == 0,
    "mid-detection": lambda out: journal_lines(out) >= ROWS // 3,
    "mid-relabeling": lambda out: journal_lines(out, "candidate") >= 2,
}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_a_run_killed_at_any_point_resumes_to_the_uninterrupted_result(sim, whole, tmp_path, point, sig):
    whole_out, whole_calls = whole
    out = tmp_path / "run"
    before = sim.requests
    proc = subprocess.Popen(command(sim, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_for(lambda: KILL_POINTS[point](out), point, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "run the same command again" in err, err
    else:
        assert proc.returncode == -signal.SIGKILL
    with sqlite3.connect(out / "responses.sqlite") as db:  # the store survives any kill intact
        assert db.execute("pragma integrity_check").fetchone()[0] == "ok"
    resumed = subprocess.run(command(sim, out), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    for name in OUTPUTS:
        assert (out / name).read_text() == (whole_out / name).read_text(), name
    summary, reference = (json.loads((d / "summary.json").read_text()) for d in (out, whole_out))
    for key in ("total", "clean", "noisy", "relabeled", "dropped", "failed", "model_calls", "tokens"):
        assert summary[key] == reference[key], key
    # Only the calls in flight at the kill are sent again (plus each start's connection check).
    assert sim.requests - before <= whole_calls + CONCURRENCY + 1
    assert not list(out.glob(".*.tmp"))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_a_run_killed_at_the_barrier_resumes_to_the_uninterrupted_result(sim, embeddings, tmp_path, sig):
    """Detection done, the run waiting for its question vectors: killed there, it loses nothing."""
    reference = tmp_path / "whole"
    done = subprocess.run(command(sim, reference, embeddings), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "run"
    embeddings.gate.clear()
    try:
        proc = subprocess.Popen(command(sim, out, embeddings), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        log = out / "run.log"
        wait_for(lambda: log.exists() and "waiting for the question embeddings" in log.read_text(), "the barrier", proc)
        proc.send_signal(sig)
        proc.communicate(timeout=60)
    finally:
        embeddings.gate.set()
    assert journal_lines(out) == ROWS  # every sample had finished detection
    before = sim.requests
    resumed = subprocess.run(command(sim, out, embeddings), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    for name in OUTPUTS:
        assert (out / name).read_text() == (reference / name).read_text(), name
    detect_calls = sum(n.get("attempts", 0) for r in read_jsonl(reference / "samples.jsonl")
                       for role, n in r["nodes"].items() if role in ("base", "reasoning"))
    relabel_calls = json.loads((reference / "summary.json").read_text())["model_calls"]["total"] - detect_calls
    assert sim.requests - before == relabel_calls + 1  # no detection call is made again


def test_a_run_killed_while_writing_its_outputs_is_never_read_half_written(sim, whole, tmp_path):
    """The outputs are replaced one file after another; a kill between two of them leaves a marker,
    so inspection refuses the directory until a re-run has rewritten all of them."""
    from robustft.cli import main
    from robustft.run.rundir import WRITING

    whole_out, _ = whole
    out = tmp_path / "run"
    subprocess.run(["cp", "-r", str(whole_out), str(out)], check=True)
    # The state a kill leaves after samples.jsonl was replaced but before denoised.jsonl was: the
    # marker, a new samples.jsonl, the old denoised.jsonl, and the staged file left behind.
    (out / WRITING).write_text("outputs are being written\n")
    (out / ".denoised.jsonl.next.tmp").write_text('{"id": "stale"}\n')
    (out / "denoised.jsonl").write_text('{"id": "from an older selection"}\n')
    assert main(["report", str(out)]) == 2
    assert main(["trace", str(out), read_jsonl(whole_out / "samples.jsonl")[0]["id"]]) == 2
    before = sim.requests
    resumed = subprocess.run(command(sim, out), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert sim.requests == before  # every sample had finished: nothing to ask
    for name in OUTPUTS:
        assert (out / name).read_text() == (whole_out / name).read_text(), name
    assert not (out / WRITING).exists() and not list(out.glob(".*.tmp"))
    assert main(["report", str(out)]) == 0


def test_a_torn_last_line_in_the_journal_is_cut_off_and_its_sample_run_again(sim, whole, tmp_path):
    """A power cut can leave the last record half written; the next run drops it and goes on."""
    whole_out, _ = whole
    out = tmp_path / "run"
    subprocess.run(["cp", "-r", str(whole_out), str(out)], check=True)
    (out / "run.json").write_text(json.dumps({**json.loads((out / "run.json").read_text()), "state": "running"}))
    with open(out / "samples.jsonl", "ab") as f:
        f.write(b'{"id": "Mercury_7220990", "status": "cle')
    resumed = subprocess.run(command(sim, out), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "cut off" in resumed.stderr
    for name in OUTPUTS:
        assert (out / name).read_text() == (whole_out / name).read_text(), name


def test_a_full_disk_stops_the_run_and_a_rerun_with_space_loses_nothing(sim, whole, tmp_path):
    """Writes refused mid-run (a file-size limit stands in for a full disk): the run stops with one
    message naming the file, marks no sample failed, and the same command later finishes it."""
    import resource

    whole_out, _ = whole
    out = tmp_path / "run"

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a refused write raises instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (48_000, 48_000))

    full = subprocess.run(command(sim, out), capture_output=True, text=True, timeout=300, preexec_fn=small_disk)
    assert full.returncode == 1, full.stderr
    assert "Traceback" not in full.stderr and "nothing is lost" in full.stderr and str(out) in full.stderr
    assert "run the same command again" in full.stderr
    assert '"status":"failed"' not in (out / "samples.jsonl").read_text()
    resumed = subprocess.run(command(sim, out), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    for name in OUTPUTS:
        assert (out / name).read_text() == (whole_out / name).read_text(), name


def test_two_runs_on_one_directory_cannot_mix(sim, tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen(command(sim, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: stored_responses(out) >= 1, "the first run to start", first)
    second = subprocess.run(command(sim, out), capture_output=True, text=True, timeout=120)
    first.kill()
    first.communicate()
    assert second.returncode == 2
    assert "in use by another robustft run" in second.stderr and f"pid {first.pid}" in second.stderr


def test_a_larger_limit_asks_only_the_new_rows(sim, whole, tmp_path):
    whole_out, _ = whole
    out = tmp_path / "run"
    pilot = command(sim, out)
    pilot[pilot.index("--limit") + 1] = str(ROWS // 2)
    assert subprocess.run(pilot, capture_output=True, text=True, timeout=300).returncode == 0
    pilot_prompts = {n["prompt"] for r in read_jsonl(out / "samples.jsonl") for n in r["nodes"].values()
                     if n.get("prompt")}
    before = sim.requests
    grown = subprocess.run(command(sim, out), capture_output=True, text=True, timeout=300)
    assert grown.returncode == 0, grown.stderr
    records = read_jsonl(out / "samples.jsonl")
    assert len(records) == ROWS
    new_calls = sum(n.get("attempts", 0) for r in records[ROWS // 2:] for n in r["nodes"].values())
    # The first half is not asked again: the only calls are the new rows' and one connection check.
    assert sim.requests - before == new_calls + 1
    assert all(n["prompt"] in pilot_prompts for r in records[:ROWS // 2] for n in r["nodes"].values()
               if n.get("prompt"))
