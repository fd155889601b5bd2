"""A whole denoise run over three replicas given as repeated --base-url, one killed mid-run."""

from __future__ import annotations

import json
import threading

from robustft.cli import main
from robustft.demo import DEMO_DATA, DEMO_GOLD
from robustft.sim import SimServer


def test_three_replicas_share_a_run_and_one_dying_loses_no_sample(tmp_path, capsys):
    sims = [SimServer(DEMO_GOLD, accuracy=0.8, seed=5) for _ in range(3)]
    for sim in sims:
        sim.start()
    killed = threading.Event()
    stop_watching = threading.Event()

    def kill_when_busy() -> None:
        # The second replica dies once it has answered 30 calls, in the middle of detection.
        while not stop_watching.wait(0.01):
            if sims[1].requests >= 30:
                sims[1].stop()
                killed.set()
                return

    watcher = threading.Thread(target=kill_when_busy, daemon=True)
    watcher.start()
    try:
        # Embeddings from the first replica's server (a local model would take longer to load than the run).
        args = ["denoise", "--data", str(DEMO_DATA), "--model", "sim", "--out", str(tmp_path / "run"),
                "--quiet", "--concurrency", "16", "--embedding-base-url", sims[0].base_url, "--embedding-model", "e"]
        for sim in sims:
            args += ["--base-url", sim.base_url]
        code = main(args)
    finally:
        stop_watching.set()
        watcher.join(5)
        for sim in sims:
            sim.stop()
    err = capsys.readouterr().err
    assert code == 0, err
    assert killed.is_set()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["total"] == 80 and summary["failed"] == 0
    assert summary["config"]["model"]["base_url"] == [sim.base_url for sim in sims]
    served = [sim.requests for sim in sims]
    assert served[1] >= 30 and served[0] > 40 and served[2] > 40, served
    assert sum(served) >= summary["model_calls"]["total"]
    dead, *alive = [r for r in summary["replicas"] if r["url"] == sims[1].base_url] + [
        r for r in summary["replicas"] if r["url"] in (sims[0].base_url, sims[2].base_url) and r["serves"] == "model 'sim'"]
    assert dead["failed"] >= 1 and all(r["rested"] == 0 for r in alive), summary["replicas"]
