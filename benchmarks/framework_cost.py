"""robustft's own CPU per sample, around a server that answers at once; and its start-up.

Synthetic multiple-choice rows (30 % wrong labels) go through `robustft denoise` against
`robustft.sim` in a separate process, answering instantly, with its `/v1/embeddings` for the
questions (`--embedding-base-url`), at `--concurrency 64`. CPU per sample is the slope between a
small and a large run (user + system time of the robustft process), so start-up cancels out.
Start-up is the time from launching the process to the first request reaching the server.

    python -m benchmarks.framework_cost [--small 500] [--large 5000] [--repeats 2]

Goal (issue 7): at most 4 ms of CPU per sample; the first model call within 3 s of start.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ._runs import SimProcess, run_measured, synthetic, write_results


def first_call_after(sim: SimProcess, args: list[str]) -> float:
    """Seconds from launching `robustft denoise` until the server sees its first chat request."""
    before = sim.requests()
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "robustft", "denoise", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        while sim.requests() == before:
            if proc.poll() is not None:
                raise RuntimeError("the run ended before its first call")
            time.sleep(0.01)
        return time.perf_counter() - started
    finally:
        proc.kill()
        proc.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=500)
    parser.add_argument("--large", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="robustft-bench-"))
    gold, noisy = synthetic(work, args.large)
    rows, slopes = [], []
    with SimProcess(gold) as sim:
        def run(n: int, out: Path):
            before = sim.requests()
            m = run_measured(["--data", str(noisy), "--limit", str(n), "--model", "sim", "--base-url", sim.base_url,
                              "--embedding-base-url", sim.base_url, "--embedding-model", "sim-embed",
                              "--concurrency", "64", "--out", str(out), "--quiet"])
            if m.returncode not in (0, 3):
                raise RuntimeError(m.stderr[-3000:])
            return m, sim.requests() - before

        for repeat in range(args.repeats):
            small, _ = run(args.small, work / f"small-{repeat}")
            large, calls_large = run(args.large, work / f"large-{repeat}")
            slope = (large.cpu_s - small.cpu_s) / (args.large - args.small)
            slopes.append(slope)
            rows.append({"repeat": repeat, "small_cpu_s": round(small.cpu_s, 2), "large_cpu_s": round(large.cpu_s, 2),
                         "small_wall_s": round(small.wall_s, 2), "large_wall_s": round(large.wall_s, 2),
                         "calls_per_sample": round(calls_large / args.large, 2),
                         "cpu_ms_per_sample": round(slope * 1000, 3)})
        startup = [first_call_after(sim, ["--data", str(noisy), "--limit", "50", "--model", "sim", "--base-url",
                                          sim.base_url, "--embedding-base-url", sim.base_url, "--embedding-model",
                                          "sim-embed", "--out", str(work / f"startup-{i}"), "--quiet"])
                   for i in range(3)]
    best = min(slopes) * 1000
    payload = {"small": args.small, "large": args.large, "runs": rows, "cpu_ms_per_sample_best": round(best, 3),
               "cpu_ms_per_sample_median": round(statistics.median(slopes) * 1000, 3),
               "first_call_s": [round(s, 2) for s in startup], "goal_cpu_ms": 4.0, "goal_first_call_s": 3.0}
    md = ["# Framework cost: robustft's own CPU per sample", "",
          f"Synthetic rows (4 options, 30 % wrong labels) against `robustft.sim` in its own process, answering "
          f"at once, with its embeddings; `--concurrency 64`. CPU (user + system) of the robustft process; per "
          f"sample = slope between {args.small} and {args.large} rows, so start-up cancels. 2 shared cores: the "
          "server uses the other one.", "",
          "| repeat | CPU small | CPU large | wall small | wall large | calls / sample | CPU per sample |",
          "|---|---|---|---|---|---|---|"]
    md += [f"| {r['repeat']} | {r['small_cpu_s']} s | {r['large_cpu_s']} s | {r['small_wall_s']} s | "
           f"{r['large_wall_s']} s | {r['calls_per_sample']} | {r['cpu_ms_per_sample']} ms |" for r in rows]
    md += ["", f"**CPU per sample: {best:.2f} ms** (best of {len(slopes)}; median "
               f"{payload['cpu_ms_per_sample_median']:.2f} ms). Goal: at most 4 ms.", "",
           f"**First model call after launch:** {', '.join(f'{s:.2f} s' for s in startup)} (goal: within 3 s)."]
    write_results("framework_cost", payload, "\n".join(md))


if __name__ == "__main__":
    main()
