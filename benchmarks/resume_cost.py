"""What a kill costs: the calls sent again after `kill -9` mid-detection and Ctrl-C mid-relabeling,
as a fraction of an uninterrupted run, and whether the resumed outputs equal the uninterrupted ones.

    python -m benchmarks.resume_cost [--latency-ms 50] [--limit N]

ARC noisy-30 against `robustft.sim` in its own process (deterministic replies, 50 ms each),
`--concurrency 64`. Each kill waits on the run directory (the journal's records), not a timer.
Goal (issue 7): at most 5 % more calls than the uninterrupted run.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ._runs import DATA, SimProcess, run_measured, write_results


def records(out: Path, status: str | None = None) -> int:
    path = out / "samples.jsonl"
    if not path.exists():
        return 0
    data = path.read_bytes()
    return data.count(b"\n") if status is None else data.count(f'"status":"{status}"'.encode())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="robustft-bench-"))
    arc = DATA / "arc"
    n_rows = args.limit or sum(1 for _ in open(arc / "noisy30.csv")) - 1

    with SimProcess(arc / "labeled.csv", latency_ms=args.latency_ms, seed=1) as sim:
        def argv_for(out: Path) -> list[str]:
            return ["--data", str(arc / "noisy30.csv"), *(["--limit", str(args.limit)] if args.limit else []),
                    "--model", "sim", "--base-url", sim.base_url, "--embedding-base-url", sim.base_url,
                    "--embedding-model", "sim-embed", "--concurrency", "64", "--out", str(out), "--quiet",
                    "--out-of-range-labels", "keep"]

        before = sim.requests()
        whole = run_measured(argv_for(work / "whole"))
        assert whole.returncode in (0, 3), whole.stderr[-2000:]
        whole_calls = sim.requests() - before

        def interrupted(name: str, sig: int, ready) -> dict:
            out = work / name
            before = sim.requests()
            proc = subprocess.Popen([sys.executable, "-m", "robustft", "denoise", *argv_for(out)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            while not ready(out):
                if proc.poll() is not None:
                    raise RuntimeError(f"{name}: the run ended before the kill point")
                time.sleep(0.01)
            proc.send_signal(sig)
            proc.wait()
            resumed = run_measured(argv_for(out))
            assert resumed.returncode in (0, 3), resumed.stderr[-2000:]
            calls = sim.requests() - before
            same = all((out / f).read_bytes() == (work / "whole" / f).read_bytes()
                       for f in ("samples.jsonl", "denoised.jsonl"))
            return {"case": name, "calls": calls, "extra_calls": calls - whole_calls,
                    "extra_fraction": round((calls - whole_calls) / whole_calls, 4), "outputs_identical": same}

        rows = [interrupted("kill -9 mid-detection", signal.SIGKILL, lambda out: records(out) >= n_rows // 3),
                interrupted("Ctrl-C mid-relabeling", signal.SIGINT, lambda out: records(out, "candidate") >= 50)]
    payload = {"rows_in_data": n_rows, "uninterrupted_calls": whole_calls, "cases": rows, "goal_extra_fraction": 0.05}
    md = ["# Resume: what a kill costs", "",
          f"ARC noisy-30 ({n_rows} rows) against `robustft.sim` (deterministic, {args.latency_ms:g} ms per call), "
          f"`--concurrency 64`. The uninterrupted run made {whole_calls} chat calls. Each interrupted run is "
          "stopped at the point named, then the same command is run again; its calls are counted at the server, "
          "both parts together (each start also makes one connection check).", "",
          "| case | calls | extra | extra / uninterrupted | outputs identical to the uninterrupted run |",
          "|---|---|---|---|---|"]
    md += [f"| {r['case']} | {r['calls']} | {r['extra_calls']} | {r['extra_fraction']:.1%} | {r['outputs_identical']} |"
           for r in rows]
    md += ["", "Goal: at most 5 % more calls."]
    write_results("resume_cost", payload, "\n".join(md))


if __name__ == "__main__":
    main()
