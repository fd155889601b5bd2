"""The command line. Thin: parses flags, calls the library, turns its errors into messages and
exit codes (0 done, 2 bad input or config, 1 anything else, 130 interrupted)."""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

from . import __version__
from .errors import RobustFTError, UserError

Handler = Callable[[argparse.Namespace], int]


def _model_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """--model with --base-url is an OpenAI-compatible server; --model alone a local model,
    unless the config file already names a server."""
    from .config import load_config

    overrides: dict[str, Any] = {"model.name": args.model, "model.base_url": args.base_url,
                                 "model.max_tokens": getattr(args, "max_tokens", None)}
    if args.base_url:
        overrides["model.provider"] = "openai"
    elif args.model:
        from_file = load_config(args.config) if getattr(args, "config", None) else None
        if not (from_file and from_file.model.base_url and from_file.model.provider == "openai"):
            overrides["model.provider"] = "transformers"
    return overrides


def _add_model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="NAME", help="model name on the server (with --base-url), "
                   "or a local transformers model directory / hub name (without)")
    p.add_argument("--base-url", metavar="URL", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 "
                   "(vllm serve); the API key is read from $OPENAI_API_KEY (any value for local servers)")


# --- denoise ---------------------------------------------------------------------------------

def _add_denoise(sub) -> None:
    p = sub.add_parser("denoise", help="clean a noisy SFT dataset with the RobustFT agents",
                       description="Run base expert, reasoning expert, checker, context relabeler, reviewer "
                                   "and entropy selection over a dataset. Writes denoised.jsonl, samples.jsonl "
                                   "and summary.json to --out; re-running with the same --out resumes.")
    p.add_argument("--config", metavar="FILE", help="YAML config (see examples/); flags override it")
    p.add_argument("--data", metavar="FILE", help="CSV, JSONL, or a Hugging Face dataset saved with save_to_disk")
    p.add_argument("--out", metavar="DIR", help="run directory (outputs, checkpoints, the clean index)")
    _add_model_flags(p)
    p.add_argument("--concurrency", type=int, metavar="N", help="model calls in flight at once (default 32)")
    p.add_argument("--limit", type=int, metavar="N", help="take only the first N rows")
    p.add_argument("--max-tokens", type=int, metavar="N", help="max tokens per response (default 512)")
    p.add_argument("--beta", type=float, help="fraction of relabeled samples kept (default 0.5)")
    p.add_argument("--k", type=int, help="clean examples shown to the context relabeler (default 3)")
    p.add_argument("--checker", choices=["paper", "majority", "judge"], help="noise detection rule (default paper)")
    p.add_argument("--reflection-rounds", type=int, metavar="N", help="extra self-reflection calls (default 0)")
    p.add_argument("--task", choices=["auto", "multiple_choice", "text", "numeric"], help="answer type (default: inferred)")
    p.add_argument("--prompts-dir", metavar="DIR", help="folder of .jinja templates overriding the built-ins")
    p.add_argument("--out-of-range-labels", choices=["error", "keep"],
                   help="a label letter past the last option: stop with an error (default) or keep it to be relabeled")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=_denoise)


def _denoise(args: argparse.Namespace) -> int:
    from .config import load_config
    from .graph.runner import denoise

    overrides = _model_overrides(args)
    overrides.update({"data.path": args.data, "out": args.out, "data.limit": args.limit, "data.task": args.task,
                      "data.out_of_range_labels": args.out_of_range_labels,
                      "denoise.concurrency": args.concurrency, "denoise.beta": args.beta, "denoise.k": args.k,
                      "denoise.checker": args.checker, "denoise.reflection_rounds": args.reflection_rounds,
                      "denoise.prompts_dir": args.prompts_dir})
    config = load_config(args.config, overrides)
    result = denoise(config, progress=not args.quiet)
    print(describe_run(result.summary, result.out_dir))
    return 0


def describe_run(summary: dict[str, Any], out_dir: Path) -> str:
    s, sel = summary, summary["selection"]
    return "\n".join([
        f"{s['total']} samples: {s['clean']} clean, {s['noisy']} flagged noisy -> {s['relabeled']} relabeled "
        f"and kept, {s['dropped']} dropped by selection (beta={sel['beta']}), {s['failed']} failed",
        f"fine-tuning set: {s['clean'] + s['relabeled']} samples in {out_dir / 'denoised.jsonl'}",
        f"every sample's path: {out_dir / 'samples.jsonl'}   counts and config: {out_dir / 'summary.json'}",
        f"model calls: {s['model_calls']['total']}, tokens: {s['tokens']['prompt']} prompt + "
        f"{s['tokens']['completion']} completion, wall time {s['wall_time_s']:.1f} s",
    ])


# --- demo ------------------------------------------------------------------------------------

def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="run the whole method offline on bundled data with simulated experts",
                       description="Starts a simulated OpenAI-compatible expert server on a free loopback port "
                                   "and denoises a small bundled multiple-choice dataset with known answers.")
    p.add_argument("--out", metavar="DIR", default="runs/demo", help="run directory (default runs/demo)")
    p.add_argument("--accuracy", type=float, default=0.8, help="how often the simulated experts are right (default 0.8)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    print(run_demo(Path(args.out), accuracy=args.accuracy, progress=not args.quiet))
    return 0


# --- entry point -----------------------------------------------------------------------------

COMMANDS = [_add_denoise, _add_demo]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="robustft", description="Clean noisy SFT data with LLM agents "
                                     "(RobustFT), fine-tune on the result, and inspect every decision.")
    parser.add_argument("--version", action="version", version=f"robustft {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except UserError as e:
        print(f"robustft: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("\nrobustft: interrupted; progress is saved: run the same command again to resume", file=sys.stderr)
        return 130
    except RobustFTError as e:
        print(f"robustft: error: {e}", file=sys.stderr)
        return e.exit_code
    except Exception:  # noqa: BLE001 - the edge: anything unexpected is a bug report, exit 1
        traceback.print_exc()
        print("robustft: internal error (the traceback above); please report it", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
