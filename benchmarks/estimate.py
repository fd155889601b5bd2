"""The dry run's estimate against the real run: calls, prompt and completion tokens, and cost.

    python -m benchmarks.estimate [--rows N] [--pilot N]

ARC noisy-30 (the first N rows) against `robustft.sim` (seed 7), with made-up prices (1 and 4 USD
per million tokens). Three estimates of the same run, then the run itself (continuing from the
pilot's run directory, so the pilot's rows are not paid twice):

- **no pilot, noise range**: the rendered prompts at the configured noise-rate range (10-40 %),
  every reply max_tokens long (an upper bound), the reviewer asked for every noisy sample;
- **no pilot, at the real flag rate**: the same, at the share of samples the run really flagged,
  to show what is left when the flag rate is known: the prompt tokens as `count_tokens` counts them
  (tiktoken) against the server's own count;
- **pilot**: `--pilot N`, the first N rows run for real, its flag rate (with two standard errors),
  reviewer rate, re-asks, reply lengths and prompt-token calibration.

Goal (issue 21): prompt tokens within 15 % of the real run's on the simulator.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

from ._runs import DATA, write_results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--pilot", type=int, default=40)
    args = parser.parse_args(argv)
    logging.getLogger("robustft").setLevel(logging.WARNING)

    from robustft.agents.cost import Prices
    from robustft.cli import main as cli
    from robustft.config import load_config
    from robustft.method import PROMPT_ROLES as ROLE_OF
    from robustft.run.dryrun import dry_run, measure_pilot
    from robustft.sim import SimServer

    with tempfile.TemporaryDirectory(prefix="robustft-bench-") as tmp:
        work = Path(tmp)
        config_file = work / "prices.yaml"
        config_file.write_text("model:\n  price_input_per_mtok: 1.0\n  price_output_per_mtok: 4.0\n")
        out = work / "run"
        with SimServer(DATA / "arc" / "labeled.csv", seed=7) as sim:
            flags = ["denoise", "--config", str(config_file), "--data", str(DATA / "arc" / "noisy30.csv"), "--limit",
                     str(args.rows), "--model", "sim", "--base-url", sim.base_url, "--embedding-base-url",
                     sim.base_url, "--embedding-model", "sim-embed", "--out", str(out), "--quiet",
                     "--out-of-range-labels", "keep"]
            assert cli([*flags, "--dry-run", "--pilot", str(args.pilot)]) == 0
            pilot = measure_pilot(out, args.pilot)
            assert cli(flags) in (0, 3)
        summary = json.loads((out / "summary.json").read_text())
        config = load_config(config_file, {"data.path": str(DATA / "arc" / "noisy30.csv"), "data.limit": args.rows,
                                           "data.out_of_range_labels": "keep", "model.name": "sim",
                                           "model.base_url": "http://127.0.0.1:9/v1"})
        est = dry_run(config).estimate
    prices = {ROLE_OF[n]: Prices.of(config.model_for(ROLE_OF[n])) for n in est.calls_per_sample}
    flagged = summary["noisy"] / summary["total"]
    low, high = config.denoise.estimate_noise_rate
    spread = 2 * (pilot.flag_rate * (1 - pilot.flag_rate) / max(1, pilot.decided)) ** 0.5
    cases = {
        f"no pilot, {low:.0%} flagged": est.expected(low, None, prices),
        f"no pilot, {high:.0%} flagged": est.expected(high, None, prices),
        f"no pilot, at the real {flagged:.0%}": est.expected(flagged, None, prices),
        f"pilot of {args.pilot}, low end": est.expected(max(0.0, pilot.flag_rate - spread), pilot, prices),
        f"pilot of {args.pilot}: {pilot.flag_rate:.0%} flagged": est.expected(pilot.flag_rate, pilot, prices),
        f"pilot of {args.pilot}, high end": est.expected(min(1.0, pilot.flag_rate + spread), pilot, prices),
    }
    actual = {"calls": summary["model_calls"]["total"], "prompt_tokens": summary["tokens"]["prompt"],
              "completion_tokens": summary["tokens"]["completion"], "cost_usd": summary["cost_usd"]}
    rows = [{"case": name, **{k: v for k, v in fig.items()},
             **{f"{k}_ratio": round(fig[k] / actual[k], 3) for k in actual}} for name, fig in cases.items()]
    md = ["# The dry run's estimate against the real run", "",
          f"ARC noisy-30, first {args.rows} rows, against `robustft.sim` (seed 7), prices 1 and 4 USD per million "
          f"tokens (made up). The real run flagged {flagged:.1%} of the samples; the pilot (first {args.pilot} rows) "
          f"{pilot.flag_rate:.1%}, the reviewer asked for "
          f"{pilot.review_rate:.0%} of its noisy samples; the server counted "
          f"{pilot.prompt_ratio_all:.2f} prompt tokens per token of `count_tokens` (it counts words).", "",
          "| estimate | calls | prompt tokens | completion tokens | cost | prompt tokens / real |",
          "|---|---|---|---|---|---|"]
    md += [f"| {r['case']} | {r['calls']:,} | {r['prompt_tokens']:,} | {r['completion_tokens']:,} | "
           f"${r['cost_usd']:.4f} | {r['prompt_tokens_ratio']:.2f} |" for r in rows]
    md += [f"| **the real run** | {actual['calls']:,} | {actual['prompt_tokens']:,} | "
           f"{actual['completion_tokens']:,} | ${actual['cost_usd']:.4f} | 1.00 |", "",
           "Without a pilot the completion tokens are an upper bound (every reply max_tokens = 512 long), so the cost "
           "is one too. Goal: prompt tokens within 15 % of the real run's."]
    write_results("estimate", {"rows": args.rows, "pilot_rows": args.pilot, "actual": actual, "estimates": rows,
                               "pilot": {"flag_rate": pilot.flag_rate, "review_rate": pilot.review_rate,
                                         "prompt_ratio": pilot.prompt_ratio_all}}, "\n".join(md))


if __name__ == "__main__":
    main()
