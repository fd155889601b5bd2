"""Keeping a slow server busy: the full ARC noisy-30 set against a server answering in 50 ms,
end to end, start-up included, beside the same calls made one at a time (`--concurrency 1`).

    python -m benchmarks.saturation [--latency-ms 50] [--limit N] [--before DIR]

Cases: `--concurrency 64` with the question embeddings from the same server (`/v1/embeddings`);
the same with the local MiniLM model instead, embedding in the background while the calls go out;
and **default settings, no embedding server** (what most users run: concurrency 32, the local
model through ONNX Runtime), with the export already cached, on a machine's first run (the export
made in the run), and with 1 embedding thread instead of the default (the cores, at most 4).
`--before DIR` adds the default case run from another checkout of robustft (DIR, e.g. an export
of an older commit), measured in the same session, so the ratio holds on a shared, busy machine.
The server's own count of calls in flight shows that the limit holds, and its first request's
time gives the time to the first model call. Goals: issue 7 (at least 15x faster than one call at a time at concurrency 64); issue 20
(the same with default settings, no embedding server).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from ._runs import DATA, SimProcess, run_measured, write_results

CHAT = "/v1/chat/completions"
DEFAULT = "default settings, no embedding server"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--before", type=Path, default=None,
                        help="a checkout of robustft to run the default case from as well (the baseline)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="robustft-bench-"))
    arc = DATA / "arc"
    limit = ["--limit", str(args.limit)] if args.limit else []
    one_thread = work / "one-thread.yaml"
    one_thread.write_text("denoise:\n  embedding_threads: 1\n", encoding="utf-8")
    warm_the_export_cache()
    # (name, --concurrency or None for the default, server embeddings, extra flags, environment);
    # the baseline runs in its checkout's folder, so that `python -m robustft` imports that one.
    cases = [("concurrency 64, server embeddings", 64, True, [], {}),
             (DEFAULT, None, False, [], {}),
             *([(f"{DEFAULT}, before ({args.before.name})", None, False, [],
                 {"PYTHONPATH": str(args.before.resolve())})] if args.before else []),
             (f"{DEFAULT}, 1 embedding thread", None, False, ["--config", str(one_thread)], {}),
             (f"{DEFAULT}, first run on the machine (ONNX export in the run)", None, False, [],
              {"ROBUSTFT_CACHE_DIR": str(work / "empty-cache")}),
             ("concurrency 64, local MiniLM embeddings", 64, False, [], {}),
             ("concurrency 1, server embeddings", 1, True, [], {})]
    rows = []
    for i, (name, concurrency, server_embeddings, extra, env) in enumerate(cases):
        # A server of its own per case: its count of calls in flight is then this run's alone.
        with SimProcess(arc / "labeled.csv", latency_ms=args.latency_ms, seed=1) as sim:
            run = ["--data", str(arc / "noisy30.csv"), *limit, "--model", "sim", "--base-url", sim.base_url,
                   "--out", str(work / f"case{i}"), "--quiet", "--out-of-range-labels", "keep", *extra]
            if concurrency is not None:
                run += ["--concurrency", str(concurrency)]
            if server_embeddings:
                run += ["--embedding-base-url", sim.base_url, "--embedding-model", "sim-embed"]
            m = run_measured(run, env={**os.environ, **env} if env else None,
                             cwd=Path(env["PYTHONPATH"]) if "PYTHONPATH" in env else None)
            if m.returncode not in (0, 3):
                raise RuntimeError(f"{name}: {m.stderr[-3000:]}")
            after = sim.stats()
        calls = after["paths"].get(CHAT, 0)
        first = after.get("first_request_at", {}).get(CHAT)
        rows.append({"case": name, "concurrency": concurrency or 32, "wall_s": round(m.wall_s, 1),
                     "cpu_s": round(m.cpu_s, 1), "calls": calls,
                     "first_call_s": round(first - m.started_at, 2) if first else None,
                     "max_in_flight": after.get("max_in_flight", {}).get(CHAT),
                     "calls_per_s": round(calls / m.wall_s, 1)})
        print(rows[-1], flush=True)
    by_name = {r["case"]: r for r in rows}
    one_at_a_time = by_name["concurrency 1, server embeddings"]["wall_s"]
    speedups = {r["case"]: round(one_at_a_time / r["wall_s"], 1) for r in rows}
    payload = {"latency_ms": args.latency_ms, "rows": rows, "speedup_over_one_at_a_time": speedups,
               "speedup": speedups["concurrency 64, server embeddings"],
               "speedup_local_embeddings": speedups["concurrency 64, local MiniLM embeddings"],
               "speedup_default": speedups[DEFAULT], "goal": 15}
    md = ["# Saturation: a server answering in 50 ms, many calls in flight against one", "",
          f"ARC noisy-30 ({'all rows' if not args.limit else f'first {args.limit} rows'}), `robustft.sim` in its own "
          f"process answering each call after {args.latency_ms:g} ms. Whole process, start-up included; first call: "
          "from the process start to the server's first chat request. All cases in one session of a 2-core "
          "machine shared with other work: compare the ratios, not the seconds with another session's.", "",
          "| case | concurrency | wall | CPU | first call | chat calls | calls/s | most in flight | vs one at a time |",
          "|---|---|---|---|---|---|---|---|---|"]
    md += [f"| {r['case']} | {r['concurrency']} | {r['wall_s']} s | {r['cpu_s']} s | {r['first_call_s']} s | "
           f"{r['calls']} | {r['calls_per_s']} | {r['max_in_flight']} | {speedups[r['case']]}x |" for r in rows]
    md += ["", f"Default settings, no embedding server: **{speedups[DEFAULT]}x** faster than one call at a time "
               f"(goal: at least 15x); concurrency 64 with server embeddings: {payload['speedup']}x."]
    if args.before:
        before = by_name[f"{DEFAULT}, before ({args.before.name})"]
        md += [f"Against the checkout `{args.before.name}` in the same session: {before['wall_s']} s before, "
               f"{by_name[DEFAULT]['wall_s']} s now ({before['wall_s'] / by_name[DEFAULT]['wall_s']:.1f}x), "
               f"CPU {before['cpu_s']} s before, {by_name[DEFAULT]['cpu_s']} s now."]
    write_results("saturation", payload, "\n".join(md))


def warm_the_export_cache() -> None:
    """The local model's ONNX export made (once per machine) before the timed runs that assume it."""
    from robustft.retrieval import LocalEmbedder

    embedder = LocalEmbedder()
    print(f"local embedder: {embedder.engine}", flush=True)
    embedder.close()


if __name__ == "__main__":
    main()
