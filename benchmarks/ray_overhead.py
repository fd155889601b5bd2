"""What running on Ray costs: the same ARC run on the local runner and on a local Ray instance.

    python -m benchmarks.ray_overhead [--sizes 100 500] [--concurrency 32] [--repeat 2]

Each run is `robustft denoise` as a child process against `robustft.sim` in a process of its own
(instant replies, its embeddings), the local runner with `--executor local`, the Ray one with
`--executor ray` starting a Ray instance on this machine (all its cores) as a user's first run
does. Figures, per executor:

- wall time and CPU per sample: the slope between the small and the large run (what each further
  sample costs), and the intercept (the fixed cost: start-up, Ray's instance and actors);
- CPU is that of the whole process tree: the driver and every process it started (Ray's GCS,
  raylet, workers, store actor), read from /proc every 50 ms (rusage of reaped children misses
  Ray's workers, which their raylet does not wait for);
- each run is made `--repeat` times, the executors taking turns, and the lowest wall time and the
  lowest CPU time are kept (the machine is shared: the lowest is the least disturbed);
- whether samples.jsonl and denoised.jsonl are byte for byte the local runner's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ._runs import DATA, SimProcess, write_results

ARC = DATA / "arc"


_TICK = os.sysconf("SC_CLK_TCK")


def _processes() -> dict[tuple[int, int], tuple[int, float]]:
    """(pid, start time) -> (parent pid, CPU seconds so far) of every process on the machine."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        found[(int(entry), int(fields[19]))] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK)
    return found


def run_tree(args: list[str], poll_s: float = 0.05, linger_s: float = 60.0) -> dict:
    """`robustft denoise ARGS`: wall time, and the CPU time of its whole process tree.

    Every process descended from the driver (Ray's GCS and raylet, the workers the raylet starts)
    is followed from the moment it is seen, whoever its parent becomes, until it exits; its CPU is
    its last reading, so each process's last `poll_s` of CPU may be missed. Processes that outlive
    the driver are followed for up to `linger_s`, then killed (they are the run's own)."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "robustft", "denoise", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    stderr: list[str] = []
    reader = threading.Thread(target=lambda: stderr.extend(proc.stderr), daemon=True)
    reader.start()
    tree: set[int] = {proc.pid}
    cpu: dict[tuple[int, int], float] = {}
    wall = None
    deadline = None
    killed = 0
    while True:
        alive = set()
        for key, (parent, seconds) in _processes().items():
            if key[0] in tree or parent in tree:
                tree.add(key[0])
                cpu[key] = seconds
                alive.add(key[0])
        if wall is None and proc.poll() is not None:
            wall = time.perf_counter() - started
            deadline = time.monotonic() + linger_s
        if wall is not None and not alive - {proc.pid}:
            break
        if deadline is not None and time.monotonic() > deadline:
            for pid in alive - {proc.pid}:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
                except ProcessLookupError:
                    pass
            break
        time.sleep(poll_s)
    reader.join()
    if proc.returncode not in (0, 3):
        raise RuntimeError(f"robustft denoise {' '.join(args)} failed ({proc.returncode}):\n{''.join(stderr)[-3000:]}")
    return {"wall_s": round(wall, 2), "cpu_s": round(sum(cpu.values()), 2), "processes": len(cpu),
            "killed_stragglers": killed}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[100, 500], metavar=("SMALL", "LARGE"))
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)
    if not (ARC / "noisy30.csv").exists():
        raise SystemExit(f"benchmark data not found at {ARC}")
    work = Path(tempfile.mkdtemp(prefix="robustft-bench-ray-"))
    small, large = sorted(args.sizes)
    runs: dict[str, dict[int, dict]] = {"local": {}, "ray": {}}
    identical = {}
    with SimProcess(ARC / "labeled.csv", accuracy=0.7, seed=0) as sim:
        for n in (small, large):
            for attempt in range(args.repeat):
                for executor in ("local", "ray"):
                    out = work / f"{executor}-{n}"
                    shutil.rmtree(out, ignore_errors=True)
                    m = run_tree(["--data", str(ARC / "noisy30.csv"), "--limit", str(n), "--model", "sim",
                                  "--base-url", sim.base_url, "--embedding-base-url", sim.base_url,
                                  "--embedding-model", "sim-embed", "--concurrency", str(args.concurrency),
                                  "--out", str(out), "--quiet", "--executor", executor])
                    print(f"{executor:5} {n:5} rows: {m}", flush=True)
                    best = runs[executor].setdefault(n, {**m, "attempts": []})
                    best["attempts"].append(m)
                    best["wall_s"], best["cpu_s"] = min(best["wall_s"], m["wall_s"]), min(best["cpu_s"], m["cpu_s"])
            identical[n] = all((work / f"local-{n}" / name).read_bytes() == (work / f"ray-{n}" / name).read_bytes()
                               for name in ("samples.jsonl", "denoised.jsonl"))

    def per_sample(executor: str, key: str) -> tuple[float, float]:
        a, b = runs[executor][small][key], runs[executor][large][key]
        slope = (b - a) / (large - small)
        return slope, a - slope * small

    rows = {}
    for executor in ("local", "ray"):
        wall_slope, wall_fixed = per_sample(executor, "wall_s")
        cpu_slope, cpu_fixed = per_sample(executor, "cpu_s")
        rows[executor] = {"wall_ms_per_sample": round(wall_slope * 1000, 2), "wall_fixed_s": round(wall_fixed, 1),
                          "cpu_ms_per_sample": round(cpu_slope * 1000, 2), "cpu_fixed_s": round(cpu_fixed, 1)}
    ratio = {k: round(rows["ray"][k] / rows["local"][k], 2) if rows["local"][k] else None
             for k in ("wall_ms_per_sample", "cpu_ms_per_sample")}
    payload = {"sizes": [small, large], "concurrency": args.concurrency, "cpus": os.cpu_count(), "runs": runs,
               "per_sample": rows, "ray_over_local": ratio, "identical_outputs": identical}
    md = ["# Ray's overhead: the same ARC run on the local runner and on a local Ray instance", "",
          f"ARC noisy30, the first {small} and {large} rows; `robustft.sim` in its own process (instant replies, "
          f"its embeddings); `--concurrency {args.concurrency}`; the lowest of {args.repeat} runs each; "
          f"this machine's {os.cpu_count()} cores, shared. "
          "The Ray run starts its own Ray instance (all cores), as a first run does. CPU is the whole process "
          "tree's (driver, Ray's GCS and raylet, workers, store actor). Per sample: the slope between the two "
          "runs; fixed: the intercept (start-up).", "",
          "| executor | rows | wall | CPU |", "|---|---|---|---|"]
    for executor in ("local", "ray"):
        for n in (small, large):
            r = runs[executor][n]
            md.append(f"| {executor} | {n} | {r['wall_s']} s | {r['cpu_s']} s |")
    md += ["", "| executor | wall per sample | CPU per sample | fixed wall | fixed CPU |", "|---|---|---|---|---|"]
    for executor in ("local", "ray"):
        r = rows[executor]
        md.append(f"| {executor} | {r['wall_ms_per_sample']} ms | {r['cpu_ms_per_sample']} ms | {r['wall_fixed_s']} s "
                  f"| {r['cpu_fixed_s']} s |")
    md += ["", f"Ray / local per sample: wall {ratio['wall_ms_per_sample']}x, CPU {ratio['cpu_ms_per_sample']}x.",
           "Outputs (samples.jsonl, denoised.jsonl) identical to the local runner's: "
           + ", ".join(f"{n} rows: {'yes' if same else 'NO'}" for n, same in identical.items()) + "."]
    write_results("ray_overhead", payload, "\n".join(md))


if __name__ == "__main__":
    main()
