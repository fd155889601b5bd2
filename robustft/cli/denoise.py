"""`robustft denoise` and `robustft demo`: the method itself, on your data or on bundled data."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .common import (DATA_HELP, add_data_flags, add_embedding_flags, add_model_flags, data_overrides,
                     embedding_overrides, failed_exit, model_overrides, print_to_pager)


def add_denoise(sub) -> None:
    p = sub.add_parser("denoise", help="clean a noisy SFT dataset with the RobustFT agents",
                       description="Run base expert, reasoning expert, checker, context relabeler, reviewer "
                                   "and entropy selection over a dataset. Writes denoised.jsonl, samples.jsonl "
                                   "and summary.json to --out; re-running with the same --out resumes.")
    p.add_argument("--config", metavar="FILE", help="YAML config (see examples/); flags override it")
    p.add_argument("--data", metavar="SOURCE", help=DATA_HELP)
    p.add_argument("--out", metavar="DIR", help="run directory: the outputs, every model response (to resume), "
                                                "the run's log")
    add_model_flags(p)
    add_embedding_flags(p)
    p.add_argument("--concurrency", type=int, metavar="N", help="model calls in flight at once (default 32)")
    p.add_argument("--limit", type=int, metavar="N", help="take only the first N rows")
    p.add_argument("--batch-api", action="store_true", default=None,
                   help="send the model calls through the OpenAI Batch API (/v1/files, /v1/batches) at its batch "
                        "price: slower, cheaper, the same outputs; a stopped run collects its batches")
    p.add_argument("--max-cost", type=float, metavar="USD",
                   help="stop before the model calls cost more than USD in total (needs model.price_* in the "
                        "config); exit 4 with progress kept, and a higher cap continues paying nothing twice")
    p.add_argument("--max-tokens", type=int, metavar="N", help="max tokens per response (default 512)")
    p.add_argument("--beta", type=float, help="fraction of relabeled samples kept (default 0.5)")
    p.add_argument("--k", type=int, help="clean examples shown to the context relabeler (default 3)")
    p.add_argument("--checker", choices=["paper", "majority", "judge"], help="noise detection rule (default paper)")
    p.add_argument("--reflection-rounds", type=int, metavar="N", help="extra self-reflection calls (default 0)")
    p.add_argument("--review", choices=["on_disagreement", "always"],
                   help="when the reviewer is asked: only when reasoning and context answers differ (default), "
                        "or always (the paper's code)")
    p.add_argument("--task", metavar="TASK",
                   help="answer type: auto (default: inferred), multiple_choice, text, numeric, open (long free-text "
                        "responses), or a task type a package registers")
    p.add_argument("--prompts-dir", metavar="DIR", help="folder of .jinja templates overriding the built-ins")
    p.add_argument("--out-of-range-labels", choices=["error", "keep"],
                   help="a label letter past the last option: stop with an error (default) or keep it to be relabeled")
    p.add_argument("--dry-run", action="store_true",
                   help="check and print every prompt for the first sample and estimate the calls and tokens of "
                        "the whole run (and with prices, its cost); calls no model and writes nothing")
    p.add_argument("--pilot", type=int, metavar="N",
                   help="with --dry-run: first run the first N rows for real (paid, into --out, reused by the full "
                        "run), and calibrate the estimate with what they measured")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--executor", choices=["local", "ray"],
                   help="where the samples run: this process (default) or a Ray cluster (pip install -e '.[ray]' in the robustft clone; "
                        "docs/ray.md)")
    p.add_argument("--ray-address", metavar="ADDR",
                   help="with --executor ray: the cluster to join ('auto', HOST:6379 or ray://HOST:10001); default: "
                        "start Ray on this machine")
    p.add_argument("--otel", action="store_true", default=None,
                   help="OpenTelemetry traces (pip install -e '.[otel]' in the robustft clone): spans per run, sample, node and model "
                        "call, exported over OTLP as the OTEL_EXPORTER_OTLP_* variables say (default: on when "
                        "OTEL_EXPORTER_OTLP_ENDPOINT is set)")
    p.add_argument("--otel-content", action="store_true", default=None,
                   help="with tracing: put the messages and replies (keys redacted) in the spans (default: none)")
    add_data_flags(p)
    p.set_defaults(handler=_denoise)


def _denoise(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..run.runner import denoise

    overrides = model_overrides(args)
    overrides.update({"data.path": args.data, "out": args.out, "data.limit": args.limit, "data.task": args.task,
                      "data.out_of_range_labels": args.out_of_range_labels,
                      "denoise.concurrency": args.concurrency, "denoise.beta": args.beta, "denoise.k": args.k,
                      "denoise.checker": args.checker, "denoise.reflection_rounds": args.reflection_rounds,
                      "denoise.review": args.review, "denoise.max_cost_usd": args.max_cost,
                      "denoise.batch_api": args.batch_api,
                      "denoise.prompts_dir": args.prompts_dir, "run.executor": args.executor,
                      "run.ray_address": args.ray_address, "run.otel": args.otel, "run.otel_content": args.otel_content,
                      **embedding_overrides(args), **data_overrides(args)})
    config = load_config(args.config, overrides)
    if args.pilot is not None and not args.dry_run:
        raise ConfigError("--pilot N goes with --dry-run (a pilot calibrates the dry run's estimate); drop it, "
                          "or add --dry-run")
    if args.dry_run:
        from ..run.dryrun import describe_dry_run, dry_run

        pilot = _pilot(config, args.pilot, progress=not args.quiet) if args.pilot is not None else None
        print_to_pager(describe_dry_run(dry_run(config, pilot=pilot), config))
        return 0
    result = denoise(config, progress=not args.quiet)
    print(describe_run(result.summary, result.out_dir))
    return failed_exit(result.summary)


def _pilot(config, rows: int, *, progress: bool):
    """The real run on the first `rows` rows (into --out, where the full run reuses it), measured."""
    from ..run.dryrun import measure_pilot
    from ..run.runner import denoise

    if rows < 1:
        raise ConfigError(f"--pilot {rows}: give a number of rows, at least 1 (20 to 50 is plenty)")
    if config.out is None:
        raise ConfigError("--pilot needs --out DIR: the pilot's calls are paid, and the full run reuses them there")
    limit = min(rows, config.data.limit) if config.data.limit else rows
    pilot_config = config.model_copy(update={"data": config.data.model_copy(update={"limit": limit})})
    result = denoise(pilot_config, progress=progress)
    return measure_pilot(result.out_dir, limit)


def describe_run(summary: dict[str, Any], out_dir: Path) -> str:
    from ..run.rundir import DENOISED, SAMPLES, SUMMARY

    from ..run.outputs import describe_counts, kept_count

    s = summary
    return "\n".join([
        describe_counts(s),
        f"fine-tuning set: {kept_count(s)} samples in {out_dir / DENOISED}",
        f"every sample's path: {out_dir / SAMPLES}   counts and config: {out_dir / SUMMARY}",
        f"model calls: {s['model_calls']['total']}, tokens: {s['tokens']['prompt']} prompt + "
        f"{s['tokens']['completion']} completion, wall time {s['wall_time_s']:.1f} s",
        *([describe_cost(s["cost"])] if s.get("cost") else []),
    ])


def describe_cost(cost: dict[str, Any]) -> str:
    from ..agents.cost import describe

    return "cost: " + describe(cost)


def add_demo(sub) -> None:
    p = sub.add_parser("demo", help="run the whole method offline on bundled data with simulated experts",
                       description="Starts a simulated OpenAI-compatible expert server on a free loopback port "
                                   "and denoises a small bundled multiple-choice dataset with known answers.")
    p.add_argument("--out", metavar="DIR", default="runs/demo", help="run directory (default runs/demo)")
    p.add_argument("--accuracy", type=float, default=0.8, help="how often the simulated experts are right (default 0.8)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    print(run_demo(Path(args.out), accuracy=args.accuracy, progress=not args.quiet))
    return 0
