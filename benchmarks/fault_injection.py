"""A server that fails a fifth of its calls, in every way a server fails: does every sample come
through, and are the labels as good as with a server that never fails?

    python -m benchmarks.fault_injection [--rate 0.2] [--limit N]

ARC noisy-30 against `robustft.sim` in its own process, twice with the same seed: once clean, once
with `--fault-rate 0.2 --faults all` (HTTP 500, 429 with Retry-After, broken JSON, empty answer, no
logprobs, no answer line, an answer that is not an option, a hang past the client's timeout). An
API key is set for the run; afterwards the run directory is searched for it.
Goal (issue 9): every sample accounted for, at most 2 % failed, label accuracy as without faults,
the key nowhere in the run directory.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from ._runs import DATA, SimProcess, run_measured, write_results

KEY = "sk-benchmark-0123456789abcdefSECRET"


def gold_labels() -> dict[str, str]:
    import csv

    with open(DATA / "arc" / "labeled.csv", newline="", encoding="utf-8") as f:
        return {row["id"]: row["answer"] for row in csv.DictReader(f)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=0.2)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="robustft-bench-"))
    # Short timeouts so that a hang costs seconds, not the default two minutes.
    config = work / "config.yaml"
    config.write_text("model:\n  timeout_s: 4\n  retry_backoff_max_s: 2\n", encoding="utf-8")
    gold = gold_labels()
    os.environ["OPENAI_API_KEY"] = KEY
    rows = []
    for name, extra in (("no faults", []), (f"{args.rate:.0%} of calls fail", [
            "--fault-rate", str(args.rate), "--faults", "all", "--hang-s", "6", "--retry-after-s", "1"])):
        with SimProcess(DATA / "arc" / "labeled.csv", seed=7, extra=extra) as sim:
            out = work / name.replace(" ", "-").replace("%", "pct")
            m = run_measured(["--config", str(config), "--data", str(DATA / "arc" / "noisy30.csv"),
                              *(["--limit", str(args.limit)] if args.limit else []), "--model", "sim",
                              "--base-url", sim.base_url, "--embedding-base-url", sim.base_url,
                              "--embedding-model", "sim-embed", "--concurrency", "64", "--out", str(out), "--quiet",
                              "--out-of-range-labels", "keep"])
            stats = sim.stats()
        summary = json.loads((out / "summary.json").read_text())
        denoised = [json.loads(x) for x in (out / "denoised.jsonl").read_text().splitlines()]
        leaked = [str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()]
        accounted = (summary["clean"] + summary["relabeled"] + summary.get("confirmed", 0) + summary["dropped"]
                     + summary["failed"])
        rows.append({"case": name, "exit": m.returncode, "samples": summary["total"], "accounted": accounted,
                     "failed": summary["failed"], "failed_share": round(summary["failed"] / summary["total"], 4),
                     "ft_size": len(denoised),
                     "ft_accuracy": round(sum(d["label"] == gold[d["id"]] for d in denoised) / len(denoised), 4),
                     "wall_s": round(m.wall_s, 1), "chat_calls": stats["paths"].get("/v1/chat/completions", 0),
                     "faults": stats.get("faults", {}), "key_found_in": leaked})
    clean, faulty = rows
    md = ["# Fault injection: a server failing a fifth of its calls", "",
          "ARC noisy-30 against `robustft.sim` (seed 7) without faults and with faults of every kind the simulator "
          "has (its counters below), client timeout 4 s, a hang holding 6 s. An API key was set for both runs.", "",
          "| case | exit | samples accounted for | failed | fine-tuning set | its label accuracy | chat calls | wall |",
          "|---|---|---|---|---|---|---|---|"]
    md += [f"| {r['case']} | {r['exit']} | {r['accounted']} / {r['samples']} | {r['failed']} ({r['failed_share']:.1%}) | "
           f"{r['ft_size']} | {r['ft_accuracy']:.1%} | {r['chat_calls']} | {r['wall_s']} s |" for r in rows]
    md += ["", "Faults served: " + ", ".join(f"{k} {v}" for k, v in sorted(faulty["faults"].items())) + ".",
           "", f"API key found in the run directory: {faulty['key_found_in'] or clean['key_found_in'] or 'nowhere'}.",
           "", "Goal: every sample accounted for, at most 2 % failed, label accuracy as without faults."]
    write_results("fault_injection", {"rows": rows}, "\n".join(md))


if __name__ == "__main__":
    main()
