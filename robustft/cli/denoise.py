"""`robustft denoise` and `robustft demo`: the method itself, on your data or on bundled data."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .common import failed_exit, print_to_pager, settings_given
from .flags import add_setting_flags


def add_denoise(sub) -> None:
    p = sub.add_parser("denoise", help="clean a noisy SFT dataset with the RobustFT agents",
                       description="Run base expert, reasoning expert, checker, context relabeler, reviewer "
                                   "and entropy selection over a dataset. Writes denoised.jsonl, samples.jsonl "
                                   "and summary.json to --out; re-running with the same --out resumes.")
    p.add_argument("--config", metavar="FILE", help="YAML config (see examples/); flags override it")
    p.add_argument("--dry-run", action="store_true",
                   help="check and print every prompt for the first sample and estimate the calls and tokens of "
                        "the whole run (and with prices, its cost); calls no model and writes nothing")
    p.add_argument("--pilot", type=int, metavar="N",
                   help="with --dry-run: first run the first N rows for real (paid, into --out, reused by the full "
                        "run), and calibrate the estimate with what they measured")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_setting_flags(p, "denoise")
    p.set_defaults(handler=_denoise)


def _denoise(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..run.runner import denoise

    overrides = settings_given(args, "denoise")
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
    p.add_argument("--out", metavar="DIR", default="runs/demo", help="run directory (default %(default)s)")
    p.add_argument("--accuracy", type=float, default=0.8, help="how often the simulated experts are right (default %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    print(run_demo(Path(args.out), accuracy=args.accuracy, progress=not args.quiet))
    return 0
