"""The runner on a Ray cluster (`run.executor: ray`), on a local Ray instance started by the tests.

Against the simulated experts (deterministic per prompt), a Ray run writes the local runner's
samples.jsonl and denoised.jsonl byte for byte: when it runs undisturbed, when one of its worker
processes is killed with batches in flight, and when its driver is killed and the run resumed.
In-process models run in a model actor that the workers call.

Every kill waits on a condition (requests held by the server, lines in the journal), not a timer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from robustft.agents.calls import CallCounts, CallStats
from robustft.config import load_config
from robustft.run.executors import RunContext
from robustft.run.runner import DenoiseRun
from robustft.sim import SimServer
from robustft.sim.server import CHAT_PATH
from shared_data import ARC

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]' in the robustft clone)")

ROWS, CONCURRENCY = 40, 8
OUTPUTS = ("samples.jsonl", "denoised.jsonl")
SIM = {"accuracy": 0.7, "seed": 5}


@pytest.fixture(scope="module")
def cluster():
    """One local Ray instance for the module (starting one takes seconds); its address for other drivers."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def sim():
    # Replies slow enough that a driver killed mid-detection is killed while calls are in flight.
    with SimServer(ARC / "labeled.csv", latency_ms=40, **SIM) as server:
        yield server


def settings(base_url: str, out: Path, executor: str) -> dict:
    return {"data.path": str(ARC / "noisy30.csv"), "data.limit": ROWS, "model.name": "sim",
            "model.base_url": base_url, "denoise.embedding_base_url": base_url, "denoise.embedding_model": "sim",
            "denoise.concurrency": CONCURRENCY, "out": str(out), "run.executor": executor}


def command(base_url: str, out: Path, address: str) -> list[str]:
    return [sys.executable, "-m", "robustft", "denoise", "--data", str(ARC / "noisy30.csv"), "--limit", str(ROWS),
            "--model", "sim", "--base-url", base_url, "--embedding-base-url", base_url, "--embedding-model", "sim",
            "--concurrency", str(CONCURRENCY), "--out", str(out), "--quiet", "--executor", "ray",
            "--ray-address", address]


@pytest.fixture(scope="module")
def local_run(sim, tmp_path_factory):
    """The local runner's outputs, and the chat requests it made."""
    out = tmp_path_factory.mktemp("local") / "run"
    before = sim.requests
    asyncio.run(DenoiseRun(load_config(None, settings(sim.base_url, out, "local")), progress=False).run())
    return out, sim.requests - before


def assert_same_outputs(out: Path, reference: Path) -> None:
    for name in OUTPUTS:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    ids = [json.loads(line)["id"] for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(ids) == len(set(ids)) == ROWS


def test_a_ray_run_writes_the_local_runners_outputs_byte_for_byte(cluster, sim, local_run, tmp_path):
    reference, local_calls = local_run
    out = tmp_path / "run"
    before = sim.requests
    result = asyncio.run(DenoiseRun(load_config(None, settings(sim.base_url, out, "ray")), progress=False).run())
    assert_same_outputs(out, reference)
    assert sim.requests - before == local_calls  # no call made twice, none skipped
    local = json.loads((reference / "summary.json").read_text())
    for key in ("total", "clean", "noisy", "relabeled", "dropped", "failed", "model_calls", "tokens", "selection"):
        assert result.summary[key] == local[key], key
    # The workers' call counts reach the driver's summary.
    assert result.summary["this_run"]["calls_paid"] == local["this_run"]["calls_paid"] > 0
    assert result.summary["config"]["run"]["executor"] == "ray"
    assert "Ray: 2 workers (4+4 calls in flight)" in (out / "run.log").read_text()

    # Both executors read the same run directory: a local run over the Ray run's directory finds
    # every sample finished and asks nothing.
    before = sim.requests
    asyncio.run(DenoiseRun(load_config(None, settings(sim.base_url, out, "local")), progress=False).run())
    assert sim.requests == before
    assert_same_outputs(out, reference)


class GatedSim(SimServer):
    """The simulated experts, holding every chat request after the first `open_for` until `release()`."""

    def __init__(self, *args, open_for: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.open_for = open_for
        self.chats = self.held = 0
        self.opened = False
        self._gate: asyncio.Event | None = None

    async def _serve(self, path: str, body: bytes):
        if path == CHAT_PATH:
            self.chats += 1
            if self.chats > self.open_for and not self.opened:
                self._gate = self._gate or asyncio.Event()
                self.held += 1
                await self._gate.wait()
        return await super()._serve(path, body)

    def release(self) -> None:
        def open_gate() -> None:
            self.opened = True
            if self._gate is not None:
                self._gate.set()

        self._loop.call_soon_threadsafe(open_gate)


async def until(condition, what: str, task: asyncio.Task, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if task.done():
            task.result()
            raise AssertionError(f"the run ended before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def test_a_worker_killed_with_batches_in_flight_loses_and_duplicates_no_sample(cluster, local_run, tmp_path):
    reference, local_calls = local_run
    out = tmp_path / "run"
    # The first 30 chat requests are answered (a dozen samples finish); then every request waits,
    # so when all CONCURRENCY calls are held, each of the two workers has batches in flight.
    with GatedSim(ARC / "labeled.csv", open_for=30, **SIM) as gated:
        run = DenoiseRun(load_config(None, settings(gated.base_url, out, "ray")), progress=False)

        async def main():
            task = asyncio.ensure_future(run.run())
            await until(lambda: gated.held >= CONCURRENCY, "every call slot to hold a request", task)
            journaled = len((out / "samples.jsonl").read_text().splitlines())
            victim = run.executor.workers[0].handle
            pid = await victim.ready.remote()
            os.kill(pid, signal.SIGKILL)
            gated.release()
            return journaled, await task

        journaled, result = asyncio.run(main())
        calls = gated.requests
    assert 0 < journaled < ROWS  # the kill came mid-run
    assert run.executor.lost_batches >= 1
    assert "a Ray worker died with" in (out / "run.log").read_text()
    assert result.summary["failed"] == 0
    assert_same_outputs(out, reference)
    # Only the calls held by the killed worker were made twice (its finished calls came from the store).
    assert local_calls < calls <= local_calls + CONCURRENCY // 2


def journal_lines(out: Path) -> int:
    path = out / "samples.jsonl"
    return len([x for x in path.read_bytes().splitlines() if x.endswith(b"}")]) if path.exists() else 0


def test_a_ray_run_whose_driver_is_killed_resumes_to_the_local_result(cluster, sim, local_run, tmp_path):
    reference, local_calls = local_run
    out = tmp_path / "run"
    before = sim.requests
    # A driver of its own (the CLI) on the tests' Ray instance, so that killing it kills only it.
    driver = subprocess.Popen(command(sim.base_url, out, cluster), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    deadline = time.monotonic() + 180
    while journal_lines(out) < ROWS // 3:
        if driver.poll() is not None:
            raise AssertionError(f"the run ended (exit {driver.returncode}) before the kill: {driver.stderr.read()}")
        assert time.monotonic() < deadline, "timed out waiting for the journal"
        time.sleep(0.01)
    driver.kill()
    driver.communicate(timeout=60)
    assert driver.returncode == -signal.SIGKILL
    assert not (out / "summary.json").exists()
    journaled = [json.loads(line) for line in (out / "samples.jsonl").read_bytes().splitlines() if line.endswith(b"}")]
    said: list[str] = []
    resumed = DenoiseRun(load_config(None, settings(sim.base_url, out, "ray")), progress=False, log=said.append)
    result = asyncio.run(resumed.run())
    assert any(line.startswith(f"resuming {out}") for line in said), said
    assert_same_outputs(out, reference)
    # What the journal holds is not asked again: the resumed run pays at most the calls the local
    # run made for what was still to do (calls the killed run finished come from the store).
    def calls(records):
        return sum(node.get("attempts") or 0 for record in records for node in record["nodes"].values())

    reference_records = [json.loads(line) for line in (reference / "samples.jsonl").read_text().splitlines()]
    assert result.summary["this_run"]["calls_paid"] <= calls(reference_records) - calls(journaled)
    # All told, the kill cost the calls in flight, plus those the killed driver's workers started
    # before Ray stopped them (each had its sample's store claim already): at most one per sample
    # in flight (twice the concurrency), and each start's connection check.
    assert sim.requests - before <= local_calls + 2 * CONCURRENCY + 2


def test_the_workers_call_counts_come_back_as_values_the_runner_adds(tmp_path):
    """The executor changes nothing of the runner's: each report gives what a worker's calls cost
    since its last one, counted per life of the worker (a restarted worker counts from zero)."""
    from robustft.run.cluster import RayExecutor

    context = RunContext(config=load_config(None, {}), task="multiple_choice", roles=[], role_models={},
                         store_path=tmp_path / "responses.sqlite", say=print)
    executor = RayExecutor(context)
    reports = [("a", CallCounts(paid=3, reused=1, prompt_tokens=30, completion_tokens=6)),
               ("a", CallCounts(paid=2, prompt_tokens=20)),  # overtaken by the report before it: adds nothing
               ("a", CallCounts(paid=5, reused=1, failed_attempts=1, prompt_tokens=50, completion_tokens=10)),
               ("b", CallCounts(paid=1, prompt_tokens=10, completion_tokens=2))]  # the worker's next life
    deltas = [executor._count(life, counts) for life, counts in reports]
    assert deltas[1] == CallCounts() and deltas[2] == CallCounts(paid=2, failed_attempts=1, prompt_tokens=20,
                                                                  completion_tokens=4)
    stats = CallStats()
    for delta in deltas:
        stats.add(delta)
    assert stats.counts() == CallCounts(paid=6, reused=1, failed_attempts=1, prompt_tokens=60, completion_tokens=12)


def test_without_ray_installed_the_ray_executor_is_a_clear_config_error(monkeypatch, tmp_path, capsys):
    from robustft.cli import main
    from robustft.demo import DEMO_DATA

    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where it is not installed
    code = main(["denoise", "--data", str(DEMO_DATA), "--model", "sim", "--base-url", "http://127.0.0.1:9/v1",
                 "--out", str(tmp_path / "run"), "--executor", "ray", "--quiet"])
    assert code == 2
    assert "pip install -e '.[ray]' in the robustft clone" in capsys.readouterr().err


def test_an_in_process_model_runs_in_a_model_actor_that_batches_the_workers_requests(cluster, tiny_model_dir,
                                                                                     tmp_path):
    from robustft.demo import DEMO_DATA

    records = {}
    for executor in ("local", "ray"):
        config = load_config(None, {
            "data": {"path": str(DEMO_DATA), "limit": 6},
            "model": {"provider": "transformers", "name": str(tiny_model_dir), "max_tokens": 8, "batch_size": 4,
                      "temperature": 0.0, "device": "cpu"},
            "denoise": {"concurrency": 4, "parse_retries": 0, "ablate": ["context"]},
            "out": str(tmp_path / executor), "run": {"executor": executor}})
        result = asyncio.run(DenoiseRun(config, progress=False).run())
        lines = (tmp_path / executor / "samples.jsonl").read_text().splitlines()
        records[executor] = [json.loads(line) for line in lines]
    log = (tmp_path / "ray" / "run.log").read_text()
    assert "1 model actor (0 GPUs each)" in log
    served = re.search(r"Ray model actors: (\d+) requests generated in (\d+) batches", log)
    requests, batches = int(served[1]), int(served[2])
    assert requests == result.summary["this_run"]["calls_paid"] + 1  # the driver's pre-run check went there too
    assert batches < requests  # the workers' concurrent requests were generated together
    # Greedy decoding: the same replies as the local model. Scores agree to float32 rounding (the
    # batches are made up differently, so the arithmetic is not bit for bit the same).
    for local, distributed in zip(records["local"], records["ray"]):
        assert local["status"] == distributed["status"]
        for node, rec in local["nodes"].items():
            other = distributed["nodes"][node]
            assert rec["response"] == other["response"]
            assert rec["score"] == pytest.approx(other["score"], rel=1e-5)
