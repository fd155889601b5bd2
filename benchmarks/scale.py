"""A run of 20,000 and one of 100,000 synthetic rows against a server answering at once: wall time,
peak memory, disk per sample, and whether the time per sample grows with the size of the run.

    python -m benchmarks.scale [--sizes 20000 100000]

Goals (issue 7): peak memory under 1.5 GB at 20,000 rows and under 2 GB at 100,000; the run
directory's auxiliary storage (response store, run files) within 1.5x the size of samples.jsonl;
time per sample that does not grow with the run.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from ._runs import SimProcess, disk_usage, run_measured, synthetic, write_results

OUTPUTS = {"samples.jsonl", "denoised.jsonl", "summary.json"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20000, 100000])
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="robustft-bench-"))
    gold, noisy = synthetic(work, max(args.sizes))
    rows = []
    with SimProcess(gold) as sim:
        for n in sorted(args.sizes):
            out = work / f"run-{n}"
            m = run_measured(["--data", str(noisy), "--limit", str(n), "--model", "sim", "--base-url", sim.base_url,
                              "--embedding-base-url", sim.base_url, "--embedding-model", "sim-embed",
                              "--concurrency", "64", "--out", str(out), "--quiet"])
            if m.returncode not in (0, 3):
                raise RuntimeError(m.stderr[-3000:])
            sizes = disk_usage(out)
            samples = sizes.get("samples.jsonl", 0)
            auxiliary = sum(v for k, v in sizes.items() if k not in OUTPUTS)
            rows.append({"rows": n, "wall_s": round(m.wall_s, 1), "ms_per_sample": round(m.wall_s / n * 1000, 2),
                         "cpu_s": round(m.cpu_s, 1), "peak_rss_mb": round(m.max_rss_mb),
                         "samples_jsonl_mb": round(samples / 2**20, 1), "auxiliary_mb": round(auxiliary / 2**20, 1),
                         "auxiliary_ratio": round(auxiliary / samples, 2) if samples else None,
                         "bytes_per_sample": round(sum(sizes.values()) / n), "files": sizes})
    goals = {20000: 1536, 100000: 2048}
    md = ["# Scale: 20,000 and 100,000 rows", "",
          "Synthetic rows against `robustft.sim` in its own process (instant replies, its embeddings), "
          "`--concurrency 64`. Peak memory is the robustft process's maximum resident set. Auxiliary storage is "
          "everything in the run directory but samples.jsonl, denoised.jsonl and summary.json (the response "
          "store with every reply and embedding, run.json, run.log).", "",
          "| rows | wall | per sample | CPU | peak memory | samples.jsonl | auxiliary | auxiliary / samples.jsonl | "
          "disk per sample |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        goal = goals.get(r["rows"])
        mark = f" (goal < {goal} MB)" if goal else ""
        md.append(f"| {r['rows']:,} | {r['wall_s']} s | {r['ms_per_sample']} ms | {r['cpu_s']} s | "
                  f"{r['peak_rss_mb']} MB{mark} | {r['samples_jsonl_mb']} MB | {r['auxiliary_mb']} MB | "
                  f"{r['auxiliary_ratio']} (goal <= 1.5) | {r['bytes_per_sample']} B |")
    if len(rows) > 1:
        growth = rows[-1]["ms_per_sample"] / rows[0]["ms_per_sample"]
        md += ["", f"Time per sample at {rows[-1]['rows']:,} rows is {growth:.2f}x that at {rows[0]['rows']:,}."]
    write_results("scale", {"rows": rows}, "\n".join(md))


if __name__ == "__main__":
    main()
