"""Batch mode against online: the same run through `/v1/batches`, its cost, its batches, its outputs.

    python -m benchmarks.batch_api [--rows N]

ARC noisy-30 (the first N rows) against `robustft.sim` (seed 7), made-up prices (1 and 4 USD per
million tokens, batch discount 0.5), three runs: online; `--batch-api`; `--batch-api` against a
Batch API that fails 10 % of the requests of a batch and expires every batch after 150 requests.
Each batch is worked 0.2 s after it is created and polled every 0.1 s (a provider takes minutes to
hours: the wall times here say nothing about a real one).
Goal (issue 21): the same samples.jsonl and denoised.jsonl as online, at the batch price.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

from ._runs import DATA, write_results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=400)
    args = parser.parse_args(argv)
    logging.getLogger("robustft").setLevel(logging.WARNING)

    from robustft.cli import main as cli
    from robustft.sim import SimServer

    cases = (("online", [], {}), ("batch", ["--batch-api"], {}),
             ("batch, 10 % failing, expiring after 150", ["--batch-api"],
              {"batch_fail_rate": 0.1, "batch_expire_after": 150}))
    rows = []
    with tempfile.TemporaryDirectory(prefix="robustft-bench-") as tmp:
        work = Path(tmp)
        config = work / "c.yaml"
        config.write_text("model:\n  price_input_per_mtok: 1.0\n  price_output_per_mtok: 4.0\n  max_retries: 6\n"
                          "denoise:\n  batch_poll_s: 0.1\n")
        for name, extra, sim_options in cases:
            out = work / name.split(",")[0].replace(" ", "-") / str(len(rows))
            with SimServer(DATA / "arc" / "labeled.csv", seed=7, **sim_options) as sim:
                started = time.perf_counter()
                code = cli(["denoise", "--config", str(config), "--data", str(DATA / "arc" / "noisy30.csv"),
                            "--limit", str(args.rows), "--model", "sim", "--base-url", sim.base_url,
                            "--embedding-base-url", sim.base_url, "--embedding-model", "sim-embed", "--out", str(out),
                            "--quiet", "--out-of-range-labels", "keep", *extra])
                wall = time.perf_counter() - started
                counts = (sim.batches.created, sim.batches.failed_lines, sim.batches.expired_lines)
            summary = json.loads((out / "summary.json").read_text())
            rows.append({"case": name, "exit": code, "out": out, "batches": counts[0], "failed_lines": counts[1],
                         "expired_lines": counts[2], "paid_usd": summary["cost"]["this_run"]["paid_usd"],
                         "failed_samples": summary["failed"], "wall_s": round(wall, 1)})
        online = rows[0]["out"]
        for r in rows:
            r["identical"] = all((r["out"] / f).read_bytes() == (online / f).read_bytes()
                                 for f in ("samples.jsonl", "denoised.jsonl"))
            r["out"] = str(r["out"].relative_to(work))
    md = ["# Batch mode against online", "",
          f"ARC noisy-30, first {args.rows} rows, `robustft.sim` (seed 7), prices 1 and 4 USD per million tokens (made "
          "up), batch discount 0.5. Batches worked 0.2 s after creation, polled every 0.1 s: the wall times say "
          "nothing about a real provider. Measured on a 2-core machine shared with other work.", "",
          "| run | exit | batches | requests failed / expired in batches | paid | outputs as online | wall |",
          "|---|---|---|---|---|---|---|"]
    md += [f"| {r['case']} | {r['exit']} | {r['batches']} | {r['failed_lines']} / {r['expired_lines']} | "
           f"${r['paid_usd']:.4f} | {'byte for byte' if r['identical'] else 'NO'} | {r['wall_s']} s |" for r in rows]
    md += ["", "Paid includes the one preflight probe, sent online at the full price."]
    write_results("batch_api", {"rows": args.rows, "runs": rows}, "\n".join(md))


if __name__ == "__main__":
    main()
