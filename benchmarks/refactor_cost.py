"""A refactor costs nothing: this tree against an earlier commit, interleaved, in one run.

Two measurements of `benchmarks.framework_cost` and `benchmarks.saturation`, each made for
**now** (this tree) and **before** (`git archive REV robustft`, run from a temporary folder with
the same Python and packages), alternating so that load from other work hits both alike:

- CPU per sample: synthetic multiple-choice rows against `robustft.sim` answering at once, with its
  embeddings, `--concurrency 64`; the slope of the robustft process's CPU between `--small` and
  `--large` rows (start-up cancels);
- saturation: ARC noisy-30 against `robustft.sim` answering each call after 50 ms,
  `--concurrency 64`, server embeddings, whole process wall time.

    python -m benchmarks.refactor_cost --before REV [--small 500] [--large 3000] [--repeats 3] [--limit N]
                                       [--results NAME]

`--before` may also name a folder holding a `robustft/` package (a tree with the refactor undone by
hand, when other work has landed on top of it), described by `--before-label`.

Results: benchmarks/results/refactor_cost.{md,json} (or NAME.{md,json}: `records_cost` is the typed
sample records of issue 19, against the commit before them; `registries_cost` issue 19's task types,
layouts and scores behind registries).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import tarfile
import tempfile
from pathlib import Path

from ._runs import DATA, ROOT, SimProcess, run_measured, synthetic, write_results


def unpack(rev: str, work: Path) -> tuple[Path, str]:
    """robustft as of `rev`, unpacked into `work`, and the short hash."""
    short = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.strip()
    tar = subprocess.run(["git", "archive", short, "robustft"], cwd=ROOT, capture_output=True, check=True).stdout
    folder = work / "before"
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        archive.extractall(folder, filter="data")
    return folder, short


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="the commit to compare with, or a folder holding robustft/")
    parser.add_argument("--before-label", default=None, help="what a --before folder is (for the results)")
    parser.add_argument("--small", type=int, default=500)
    parser.add_argument("--large", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--limit", type=int, default=None, help="saturation: first N ARC rows (default all)")
    parser.add_argument("--results", default="refactor_cost",
                        help="the results' name in benchmarks/results/ (one per refactor measured)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="robustft-bench-"))
    if (Path(args.before) / "robustft").is_dir():
        before, rev = Path(args.before).resolve(), args.before_label or args.before
    else:
        before, rev = unpack(args.before, work)
    variants = {"now": None, "before": before}
    gold, noisy = synthetic(work, args.large)
    slopes: dict[str, list[float]] = {v: [] for v in variants}
    walls: dict[str, list[float]] = {v: [] for v in variants}
    rows = []
    load = [os.getloadavg()[0]]
    arc = DATA / "arc"
    limit = ["--limit", str(args.limit)] if args.limit else []
    for repeat in range(args.repeats):
        order = list(variants) if repeat % 2 == 0 else list(reversed(variants))
        for variant in order:
            cwd = variants[variant]
            with SimProcess(gold) as sim:
                def run(n: int, out: Path):
                    m = run_measured(["--data", str(noisy), "--limit", str(n), "--model", "sim", "--base-url",
                                      sim.base_url, "--embedding-base-url", sim.base_url, "--embedding-model",
                                      "sim-embed", "--concurrency", "64", "--out", str(out), "--quiet"], cwd=cwd)
                    if m.returncode not in (0, 3):
                        raise RuntimeError(m.stderr[-3000:])
                    return m

                small = run(args.small, work / f"{variant}-small-{repeat}")
                large = run(args.large, work / f"{variant}-large-{repeat}")
            slope = (large.cpu_s - small.cpu_s) / (args.large - args.small)
            slopes[variant].append(slope)
            with SimProcess(arc / "labeled.csv", latency_ms=50, seed=1) as sim:
                m = run_measured(["--data", str(arc / "noisy30.csv"), *limit, "--model", "sim", "--base-url",
                                  sim.base_url, "--concurrency", "64", "--out", str(work / f"{variant}-sat-{repeat}"),
                                  "--quiet", "--out-of-range-labels", "keep", "--embedding-base-url", sim.base_url,
                                  "--embedding-model", "sim-embed"], cwd=cwd)
                if m.returncode not in (0, 3):
                    raise RuntimeError(m.stderr[-3000:])
            walls[variant].append(m.wall_s)
            rows.append({"repeat": repeat, "variant": variant, "cpu_ms_per_sample": round(slope * 1000, 3),
                         "saturation_wall_s": round(m.wall_s, 2), "saturation_cpu_s": round(m.cpu_s, 2)})
    load.append(os.getloadavg()[0])
    cpu = {v: statistics.median(s) * 1000 for v, s in slopes.items()}
    wall = {v: statistics.median(w) for v, w in walls.items()}
    diffs = [(a - b) * 1000 for a, b in zip(slopes["now"], slopes["before"])]
    payload = {"before_rev": rev, "small": args.small, "large": args.large, "repeats": args.repeats,
               "saturation_rows": args.limit or "all", "runs": rows,
               "cpu_ms_per_sample_median": {v: round(x, 3) for v, x in cpu.items()},
               "now_minus_before_cpu_ms": [round(d, 3) for d in diffs],
               "saturation_wall_s_median": {v: round(x, 2) for v, x in wall.items()},
               "load_average_start_end": [round(x, 2) for x in load]}
    md = ["# Refactor cost: this tree against an earlier commit", "",
          f"`python -m benchmarks.refactor_cost --before {rev}`: **now** (this tree) and **before** ({rev}), "
          "interleaved, the order turning each repeat. CPU per sample: synthetic rows against `robustft.sim` "
          f"answering at once, slope between {args.small} and {args.large} rows, `--concurrency 64`. Saturation: "
          f"ARC noisy-30 ({args.limit or 'all'} rows), the server answering after 50 ms, `--concurrency 64`, server "
          f"embeddings, whole process. 2 cores; load average {load[0]:.1f} at the start and {load[1]:.1f} at the "
          "end (other work on the machine moves single figures by tens of percent).", "",
          "| repeat | variant | CPU per sample | saturation wall | saturation CPU |", "|---|---|---|---|---|"]
    md += [f"| {r['repeat']} | {r['variant']} | {r['cpu_ms_per_sample']} ms | {r['saturation_wall_s']} s | "
           f"{r['saturation_cpu_s']} s |" for r in rows]
    md += ["", f"Median CPU per sample: now {cpu['now']:.2f} ms, before {cpu['before']:.2f} ms (per-repeat "
               f"differences {', '.join(f'{d:+.2f}' for d in diffs)} ms).",
           "", f"Median saturation wall: now {wall['now']:.1f} s, before {wall['before']:.1f} s."]
    write_results(args.results, payload, "\n".join(md))


if __name__ == "__main__":
    main()
