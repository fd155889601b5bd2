"""Keeping a slow server busy: the full ARC noisy-30 set against a server answering in 50 ms,
`--concurrency 64` beside the same calls made one at a time (`--concurrency 1`), end to end,
start-up included.

    python -m benchmarks.saturation [--latency-ms 50] [--limit N] [--server-embeddings-only]

Both runs take the question embeddings from the same server (`/v1/embeddings`); a third run at
`--concurrency 64` uses the local MiniLM model instead, embedding in the background while the
calls go out. The server's own count of calls in flight shows that the limit holds.
Goal (issue 7): at least 15x faster than one call at a time.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from ._runs import DATA, SimProcess, run_measured, write_results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--server-embeddings-only", action="store_true",
                        help="leave out the local MiniLM case (the two runs the goal is about)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="robustft-bench-"))
    arc = DATA / "arc"
    limit = ["--limit", str(args.limit)] if args.limit else []
    cases = [("concurrency 64, server embeddings", 64, True), ("concurrency 1, server embeddings", 1, True),
             ("concurrency 64, local MiniLM embeddings", 64, False)][:2 if args.server_embeddings_only else 3]
    rows = []
    for name, concurrency, server_embeddings in cases:
        # A server of its own per case: its count of calls in flight is then this run's alone.
        with SimProcess(arc / "labeled.csv", latency_ms=args.latency_ms, seed=1) as sim:
            run = ["--data", str(arc / "noisy30.csv"), *limit, "--model", "sim", "--base-url", sim.base_url,
                   "--concurrency", str(concurrency), "--out", str(work / f"c{concurrency}-{int(server_embeddings)}"),
                   "--quiet", "--out-of-range-labels", "keep"]
            if server_embeddings:
                run += ["--embedding-base-url", sim.base_url, "--embedding-model", "sim-embed"]
            m = run_measured(run)
            if m.returncode not in (0, 3):
                raise RuntimeError(m.stderr[-3000:])
            after = sim.stats()
        calls = after["paths"].get("/v1/chat/completions", 0)
        rows.append({"case": name, "concurrency": concurrency, "wall_s": round(m.wall_s, 1),
                     "cpu_s": round(m.cpu_s, 1), "calls": calls,
                     "max_in_flight": after.get("max_in_flight", {}).get("/v1/chat/completions"),
                     "calls_per_s": round(calls / m.wall_s, 1)})
    fast, slow, *local = rows
    speedup = slow["wall_s"] / fast["wall_s"]
    speedup_local = slow["wall_s"] / local[0]["wall_s"] if local else None
    payload = {"latency_ms": args.latency_ms, "rows": rows, "speedup": round(speedup, 1),
               "speedup_local_embeddings": round(speedup_local, 1) if local else None, "goal": 15}
    md = ["# Saturation: a server answering in 50 ms, 64 calls in flight against one", "",
          f"ARC noisy-30 ({'all rows' if not args.limit else f'first {args.limit} rows'}), `robustft.sim` in its own "
          f"process answering each call after {args.latency_ms:g} ms. Whole process, start-up included.", "",
          "| case | wall | CPU | chat calls | calls/s | most calls in flight at the server |", "|---|---|---|---|---|---|"]
    md += [f"| {r['case']} | {r['wall_s']} s | {r['cpu_s']} s | {r['calls']} | {r['calls_per_s']} | "
           f"{r['max_in_flight']} |" for r in rows]
    md += ["", f"**{speedup:.1f}x faster** at concurrency 64 than one call at a time (goal: at least 15x)"
               + (f"; {speedup_local:.1f}x with the local MiniLM embeddings in the fast run." if local else
                  ". The local MiniLM case was not run this time (`--server-embeddings-only`).")]
    write_results("saturation", payload, "\n".join(md))


if __name__ == "__main__":
    main()
