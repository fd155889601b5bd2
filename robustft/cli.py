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
    """The model settings that --model, --base-url and --max-tokens set (see `model_flag_updates`)."""
    from .config import ModelConfig, load_config, model_flag_updates

    configured = load_config(args.config).model if getattr(args, "config", None) else ModelConfig()
    updates = model_flag_updates(configured, model=args.model, base_url=args.base_url)
    overrides: dict[str, Any] = {f"model.{key}": value for key, value in updates.items()}
    overrides["model.max_tokens"] = getattr(args, "max_tokens", None)
    return overrides


def _add_model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="NAME", help="model name on the server (with --base-url), "
                   "or a local transformers model directory / hub name (without)")
    p.add_argument("--base-url", metavar="URL", action="append",
                   help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 (vllm serve); repeat it for "
                        "replicas of the same model (each call goes to the least busy one; one that keeps failing "
                        "is rested). The API key is read from $OPENAI_API_KEY (any value for local servers)")


def _add_embedding_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--embedding-base-url", metavar="URL", action="append",
                   help="embed the questions with an OpenAI-compatible /v1/embeddings server (vllm serve of an "
                        "embedding model, TEI, a hosted API) instead of a local sentence-transformers model; "
                        "repeat it for replicas")
    p.add_argument("--embedding-model", metavar="NAME",
                   help="embedding model: its name on that server, or a local sentence-transformers model "
                        "(default sentence-transformers/all-MiniLM-L6-v2)")


def _embedding_overrides(args: argparse.Namespace) -> dict[str, Any]:
    urls = args.embedding_base_url
    return {"denoise.embedding_base_url": urls[0] if urls and len(urls) == 1 else urls,
            "denoise.embedding_model": args.embedding_model}


DATA_HELP = ("CSV, TSV, JSONL, JSON, Parquet, a save_to_disk folder, or a Hugging Face Hub name (org/name); "
             "tables and chat formats (messages, ShareGPT conversations, Alpaca)")


def _add_data_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data columns (override data.* in the config)")
    g.add_argument("--question-column", metavar="NAME", help="column holding the question (default question)")
    g.add_argument("--answer-column", metavar="NAME", help="column holding the answer (default answer)")
    g.add_argument("--options-column", metavar="NAME", help="column holding multiple-choice options (default options)")
    g.add_argument("--id-column", metavar="NAME", help="column holding unique ids (default id; none: row numbers)")
    g.add_argument("--split", metavar="NAME", help="split of a hub dataset or DatasetDict (default train, or the only one)")


def _data_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {"data.question_column": args.question_column, "data.answer_column": args.answer_column,
            "data.options_column": args.options_column, "data.id_column": args.id_column, "data.split": args.split}


# --- denoise ---------------------------------------------------------------------------------

def _add_denoise(sub) -> None:
    p = sub.add_parser("denoise", help="clean a noisy SFT dataset with the RobustFT agents",
                       description="Run base expert, reasoning expert, checker, context relabeler, reviewer "
                                   "and entropy selection over a dataset. Writes denoised.jsonl, samples.jsonl "
                                   "and summary.json to --out; re-running with the same --out resumes.")
    p.add_argument("--config", metavar="FILE", help="YAML config (see examples/); flags override it")
    p.add_argument("--data", metavar="SOURCE", help=DATA_HELP)
    p.add_argument("--out", metavar="DIR", help="run directory: the outputs, every model response (to resume), "
                                                "the run's log")
    _add_model_flags(p)
    _add_embedding_flags(p)
    p.add_argument("--concurrency", type=int, metavar="N", help="model calls in flight at once (default 32)")
    p.add_argument("--limit", type=int, metavar="N", help="take only the first N rows")
    p.add_argument("--max-tokens", type=int, metavar="N", help="max tokens per response (default 512)")
    p.add_argument("--beta", type=float, help="fraction of relabeled samples kept (default 0.5)")
    p.add_argument("--k", type=int, help="clean examples shown to the context relabeler (default 3)")
    p.add_argument("--checker", choices=["paper", "majority", "judge"], help="noise detection rule (default paper)")
    p.add_argument("--reflection-rounds", type=int, metavar="N", help="extra self-reflection calls (default 0)")
    p.add_argument("--review", choices=["on_disagreement", "always"],
                   help="when the reviewer is asked: only when reasoning and context answers differ (default), "
                        "or always (the paper's code)")
    p.add_argument("--task", choices=["auto", "multiple_choice", "text", "numeric", "open"],
                   help="answer type (default: inferred; open = long free-text responses)")
    p.add_argument("--prompts-dir", metavar="DIR", help="folder of .jinja templates overriding the built-ins")
    p.add_argument("--out-of-range-labels", choices=["error", "keep"],
                   help="a label letter past the last option: stop with an error (default) or keep it to be relabeled")
    p.add_argument("--dry-run", action="store_true",
                   help="check and print every prompt for the first sample and estimate the calls and tokens of "
                        "the whole run; calls no model and writes nothing")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_data_flags(p)
    p.set_defaults(handler=_denoise)


def _denoise(args: argparse.Namespace) -> int:
    from .config import load_config
    from .run.runner import denoise

    overrides = _model_overrides(args)
    overrides.update({"data.path": args.data, "out": args.out, "data.limit": args.limit, "data.task": args.task,
                      "data.out_of_range_labels": args.out_of_range_labels,
                      "denoise.concurrency": args.concurrency, "denoise.beta": args.beta, "denoise.k": args.k,
                      "denoise.checker": args.checker, "denoise.reflection_rounds": args.reflection_rounds,
                      "denoise.review": args.review,
                      "denoise.prompts_dir": args.prompts_dir, **_embedding_overrides(args), **_data_overrides(args)})
    config = load_config(args.config, overrides)
    if args.dry_run:
        from .run.dryrun import describe_dry_run, dry_run

        _print_to_pager(describe_dry_run(dry_run(config), config))
        return 0
    result = denoise(config, progress=not args.quiet)
    print(describe_run(result.summary, result.out_dir))
    return _failed_exit(result.summary)


def _failed_exit(summary: dict[str, Any]) -> int:
    """0, or 3 when samples failed: `denoise && train` must not train on a sliver unnoticed."""
    failed = summary.get("failed", 0)
    if not failed:
        return 0
    print(f"robustft: {failed} of {summary['total']} samples failed (their errors are in samples.jsonl; "
          "`robustft report` counts them); run the same command again to retry them", file=sys.stderr)
    return 3


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


# --- train ---------------------------------------------------------------------------------

def _add_train(sub) -> None:
    p = sub.add_parser("train", help="fine-tune a model with LoRA (TRL SFTTrainer + PEFT) on a fine-tuning set",
                       description="Supervised fine-tuning on denoised.jsonl (or any CSV/JSONL/dataset folder with "
                                   "question and answer columns). Prompt: the base expert's question prompt; "
                                   "completion: 'Answer: X'; loss on the completion only. Writes the LoRA adapter, "
                                   "the tokenizer, train_config.json and train_summary.json to --out; re-running "
                                   "with the same --out resumes from the last checkpoint. Several GPUs: "
                                   "accelerate launch -m robustft train ...")
    p.add_argument("--data", metavar="SOURCE", help="denoised.jsonl, or any labeled data: " + DATA_HELP)
    p.add_argument("--model", metavar="PATH_OR_NAME", help="model to fine-tune: a local directory or a hub name")
    p.add_argument("--out", metavar="DIR", help="output directory for the adapter and records")
    p.add_argument("--config", metavar="FILE", help="YAML config; its train: section sets the training settings")
    p.add_argument("--epochs", type=float, metavar="N", help="passes over the data (default 2)")
    p.add_argument("--max-steps", type=int, metavar="N", help="stop after N optimizer steps (overrides --epochs)")
    p.add_argument("--learning-rate", type=float, metavar="LR", help="peak learning rate (default 1e-4)")
    p.add_argument("--lora-r", type=int, metavar="R", help="LoRA rank (default 8)")
    p.add_argument("--batch-size", type=int, metavar="N", help="samples per device per step (default 8)")
    p.add_argument("--limit", type=int, metavar="N", help="train on the first N rows only")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_data_flags(p)
    p.set_defaults(handler=_train)


def _train(args: argparse.Namespace) -> int:
    from .config import load_config
    from .finetune.train import describe_training, train

    config = load_config(args.config, {
        "data.limit": args.limit, "train.epochs": args.epochs, "train.max_steps": args.max_steps,
        "train.learning_rate": args.learning_rate, "train.lora_r": args.lora_r, "train.batch_size": args.batch_size,
        **_data_overrides(args)})
    result = train(config, data=args.data, model=args.model, out=args.out, progress=not args.quiet)
    print(describe_training(result))
    return 0


# --- eval ------------------------------------------------------------------------------------

def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="test-set accuracy of a model (server, or local with a LoRA adapter)",
                       description="Ask each test question with the base expert's prompt (greedy decoding) and check "
                                   "the answer with the task's checker. --model NAME --base-url URL: an "
                                   "OpenAI-compatible server (vllm serve; for an adapter: --enable-lora "
                                   "--lora-modules NAME=DIR, then --model NAME). --model PATH: a local transformers "
                                   "model, with --adapter DIR for a LoRA adapter from `robustft train`. Prints the "
                                   "accuracy; writes predictions.jsonl and result.json to --out.")
    p.add_argument("--data", metavar="SOURCE", help="labeled test set: " + DATA_HELP)
    _add_model_flags(p)
    p.add_argument("--adapter", metavar="DIR", help="LoRA adapter directory (robustft train --out) for a local model")
    p.add_argument("--out", metavar="DIR", help="where predictions.jsonl and result.json go (default: "
                   "ADAPTER/eval-<data name>, or runs/eval/<model>-<data name>)")
    p.add_argument("--config", metavar="FILE", help="YAML config (data columns, eval: settings, model:)")
    p.add_argument("--limit", type=int, metavar="N", help="evaluate on the first N rows only")
    p.add_argument("--max-tokens", type=int, metavar="N", help="tokens generated per answer (default 64)")
    p.add_argument("--concurrency", type=int, metavar="N", help="server requests in flight (default 32)")
    p.add_argument("--batch-size", type=int, metavar="N", help="local model: prompts per generate call (default 16)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_data_flags(p)
    p.set_defaults(handler=_eval)


def _eval(args: argparse.Namespace) -> int:
    from .config import load_config
    from .finetune.evaluate import describe_eval, evaluate

    config = load_config(args.config, {"eval.max_tokens": args.max_tokens, "eval.concurrency": args.concurrency,
                                       "eval.batch_size": args.batch_size, **_data_overrides(args)})
    result = evaluate(config, data=args.data, model=args.model, base_url=args.base_url, adapter=args.adapter,
                      out=args.out, limit=args.limit, progress=not args.quiet)
    print(describe_eval(result))
    return 0


# --- export ----------------------------------------------------------------------------------

def _add_export(sub) -> None:
    p = sub.add_parser("export", help="write the fine-tuning set in the input's own format, or for other trainers",
                       description="robustft export RUN_DIR writes the fine-tuning set of a denoise run in the "
                                   "format of its input (default --format input): a messages file comes back as a "
                                   "messages file with only the corrected assistant turns changed, ShareGPT as "
                                   "ShareGPT, Alpaca as Alpaca, a table with the same columns and the answer "
                                   "replaced; dropped samples are left out. --format messages|alpaca|hf writes the "
                                   "prompt/completion pairs `robustft train` uses instead: chat messages JSONL, "
                                   "Alpaca JSON, or a Hugging Face dataset folder in TRL's prompt-completion format. "
                                   "Without RUN_DIR, --data FILE (denoised.jsonl or labeled data) and --out give "
                                   "those pairs.")
    p.add_argument("dir", metavar="RUN_DIR", nargs="?", help="run directory (robustft denoise --out)")
    p.add_argument("--data", metavar="SOURCE", help="with RUN_DIR: the input the run read, when it has moved; "
                   "without: denoised.jsonl, or labeled data: " + DATA_HELP)
    p.add_argument("--out", metavar="PATH", help="file or folder to write; its suffix picks the file type "
                   "(.jsonl, .json, .csv, .tsv, .parquet; otherwise a save_to_disk folder). Default with RUN_DIR: "
                   "RUN_DIR/export/<the input's name>")
    p.add_argument("--format", choices=["input", "messages", "alpaca", "hf"],
                   help="input: the input's own format (default with RUN_DIR); messages, alpaca, hf: training "
                        "pairs (default without RUN_DIR: from --out, .jsonl messages, .json alpaca, otherwise hf)")
    p.add_argument("--config", metavar="FILE", help="without RUN_DIR: YAML config (data columns, instruction, "
                   "prompts_dir); a run directory carries its own")
    p.add_argument("--limit", type=int, metavar="N", help="without RUN_DIR: export the first N rows only")
    _add_data_flags(p)
    p.set_defaults(handler=_export)


def _export(args: argparse.Namespace) -> int:
    from .config import load_config
    from .errors import ConfigError
    from .finetune.export import export, export_run

    overrides = _data_overrides(args)
    if args.dir is not None:
        if args.config or args.limit:
            raise ConfigError("--config and --limit are not used with RUN_DIR: the run's own configuration says "
                              "what it read")
        result = export_run(args.dir, out=args.out, fmt=args.format, data=args.data,
                            data_overrides={k.split(".", 1)[1]: v for k, v in overrides.items()})
    else:
        if args.data is None or args.out is None:
            raise ConfigError("pass the run directory (robustft export RUN_DIR), or --data FILE and --out PATH")
        config = load_config(args.config, {"data.limit": args.limit, **overrides})
        result = export(config, data=args.data, out=args.out, fmt=args.format)
    print(result.describe())
    return 0


# --- run -------------------------------------------------------------------------------------

def _add_run(sub) -> None:
    p = sub.add_parser("run", help="one experiment: denoise -> train -> eval, with the paper's baselines",
                       description="Denoise the noisy training set, fine-tune train.model with LoRA on the result, "
                                   "and evaluate it on experiment.test_data, next to the model as it is and SFT on "
                                   "the noisy labels; ends with a table of test accuracies (results.json, "
                                   "results.md). Re-running resumes. See examples/paper/.")
    p.add_argument("config", metavar="CONFIG", help="YAML config with data, model, train, eval and experiment sections")
    p.add_argument("--out", metavar="DIR", help="experiment directory (default: out: in the config)")
    p.add_argument("--limit", type=int, metavar="N", help="use the first N training rows only")
    p.add_argument("--test-limit", type=int, metavar="N", help="evaluate on the first N test rows only")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from .config import load_config
    from .finetune.experiment import run_experiment

    config = load_config(args.config, {"data.limit": args.limit, "experiment.test_limit": args.test_limit})
    result = run_experiment(config, out=args.out, progress=not args.quiet)
    print(f"\nTest accuracy on {result.results['test_data']}\n\n{result.table}\n")
    print(f"results: {result.out_dir / 'results.json'}  (table: {result.out_dir / 'results.md'})")
    return 0


# --- trace -----------------------------------------------------------------------------------

def _add_trace(sub) -> None:
    p = sub.add_parser("trace", help="one sample's path through the agents: prompts, replies, decisions",
                       description="Show each step a sample went through in a finished run: every agent's prompt "
                                   "(shortened; --full for all of it), the model's reply, the extracted answer and "
                                   "its score, the checker's decision and why, the retrieved examples and their "
                                   "similarity, the reviewer's verdict, selection, any human review, the final status.")
    p.add_argument("dir", metavar="DIR", help="run directory (robustft denoise --out)")
    p.add_argument("sample_id", metavar="SAMPLE_ID", help="the sample's id (its row number when the data has no id column)")
    p.add_argument("--full", action="store_true", help="show prompts and replies in full")
    p.add_argument("--json", action="store_true", help="print the trace as JSON")
    p.set_defaults(handler=_trace)


def _print_to_pager(text: str) -> None:
    """Print, treating a reader that stops early (`| head`, a closed pager) as normal."""
    import os

    try:
        print(text, flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit


def _trace(args: argparse.Namespace) -> int:
    from .inspect.trace import trace

    _print_to_pager(trace(args.dir, args.sample_id, full=args.full, as_json=args.json))
    return 0


# --- report ----------------------------------------------------------------------------------

def _add_report(sub) -> None:
    p = sub.add_parser("report", help="an HTML report with plots of a run; detection quality with --gold",
                       description="Write DIR/report.html (self-contained, opens offline), the plots as DIR/plots/*.png "
                                   "and DIR/report.json, and print a short table. With --gold FILE (the correct "
                                   "answers, same ids or same row order), also the noise detector's precision, recall "
                                   "and F1, the accuracy of the relabels, and the label accuracy of the input versus "
                                   "the fine-tuning set.")
    p.add_argument("dir", metavar="DIR", help="run directory (robustft denoise --out)")
    p.add_argument("--gold", metavar="FILE", help="the same samples with correct labels (CSV, JSONL, ...)")
    p.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    from .inspect.report import report

    print(report(args.dir, args.gold))
    return 0


# --- ablate ----------------------------------------------------------------------------------

def _add_ablate(sub) -> None:
    from .inspect.ablation import VARIANTS

    p = sub.add_parser("ablate", help="run the method with parts switched off (the paper's Table 3) and compare",
                       description="Denoise one dataset once per variant into DIR/<variant>/, sharing one response "
                                   "store (DIR/responses.sqlite) so no prompt is paid for twice, then print one table "
                                   "(also DIR/ablation.json and DIR/ablation.md). Variants: "
                                   + ", ".join(VARIANTS) + "; combine switches with '+'. Re-running resumes.")
    p.add_argument("--config", metavar="FILE", help="YAML config (see examples/); flags override it")
    p.add_argument("--data", metavar="SOURCE", help=DATA_HELP)
    p.add_argument("--out", metavar="DIR", help="ablation directory (one run directory per variant inside)")
    _add_model_flags(p)
    _add_embedding_flags(p)
    p.add_argument("--variants", metavar="LIST", help="comma-separated variants (default: all of them)")
    p.add_argument("--gold", metavar="FILE", help="correct labels: adds detection and label-accuracy figures")
    p.add_argument("--concurrency", type=int, metavar="N", help="model calls in flight at once (default 32)")
    p.add_argument("--limit", type=int, metavar="N", help="take only the first N rows")
    p.add_argument("--max-tokens", type=int, metavar="N", help="max tokens per response (default 512)")
    p.add_argument("--beta", type=float, help="fraction of relabeled samples kept (default 0.5)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_data_flags(p)
    p.set_defaults(handler=_ablate)


def _ablate(args: argparse.Namespace) -> int:
    from .inspect.ablation import LEGEND, format_table, parse_variants, run_ablation
    from .config import load_config
    from .errors import ConfigError

    variants = parse_variants(args.variants)
    overrides = _model_overrides(args)
    overrides.update({"data.path": args.data, "data.limit": args.limit, "denoise.concurrency": args.concurrency,
                      "denoise.beta": args.beta, **_embedding_overrides(args), **_data_overrides(args)})
    config = load_config(args.config, overrides)
    out = args.out or config.out
    if out is None:
        raise ConfigError("no output directory: pass --out DIR (or set `out:` in the config)")
    result = run_ablation(config, variants, out, gold=args.gold, progress=not args.quiet)
    print(f"\nAblation of {config.data.path} ({len(result.variants)} variants) in {result.out_dir}\n")
    print(format_table(result))
    print(f"\n{LEGEND}\ntable: {result.out_dir / 'ablation.md'}  numbers: {result.out_dir / 'ablation.json'}")
    return _failed_exit({"failed": sum(v.summary.get("failed", 0) for v in result.variants),
                         "total": sum(v.summary.get("total", 0) for v in result.variants)})


# --- review ----------------------------------------------------------------------------------

def _add_review(sub) -> None:
    p = sub.add_parser("review", help="export contested samples for a person to decide; import the decisions",
                       description="export: write the samples the checker flagged (relabeled, dropped, failed) to a "
                                   "CSV (or .jsonl) with an empty 'decision' column. import: apply the filled-in "
                                   "decisions (keep = original label, accept = proposed label, drop, or a label) to "
                                   "DIR/denoised.jsonl with source 'human', logging every change in "
                                   "DIR/review_log.jsonl.")
    actions = p.add_subparsers(dest="review_action", required=True, metavar="ACTION")
    e = actions.add_parser("export", help="write the contested samples to a file to edit")
    e.add_argument("dir", metavar="DIR", help="run directory (robustft denoise --out)")
    e.add_argument("--out", metavar="FILE", help="file to write: .csv (default DIR/review.csv) or .jsonl")
    e.add_argument("--score-above", type=float, metavar="X",
                   help="of the kept relabels, export only those with a selection score above X (the uncertain ones)")
    e.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    e.set_defaults(handler=_review)
    i = actions.add_parser("import", help="apply a reviewed file's decisions to the fine-tuning set")
    i.add_argument("dir", metavar="DIR", help="run directory (robustft denoise --out)")
    i.add_argument("file", metavar="FILE", help="the exported file with its 'decision' column filled in")
    i.set_defaults(handler=_review)


def _review(args: argparse.Namespace) -> int:
    from .inspect.review import export_review, import_review

    if args.review_action == "export":
        path, n = export_review(args.dir, args.out, score_above=args.score_above, force=args.force)
        print(f"wrote {n} contested samples to {path}\n"
              "fill in the 'decision' column: keep (the original label), accept (the proposed label), drop, "
              "or a label (an option letter for multiple choice); leave it empty for no change. Then run:\n"
              f"  robustft review import {args.dir} {path}")
        return 0
    result = import_review(args.dir, args.file)
    print(result.describe())
    if result.changed:
        print(f"fine-tuning set: {Path(args.dir) / 'denoised.jsonl'}   changes logged in "
              f"{Path(args.dir) / 'review_log.jsonl'}")
    return 0


# --- config --------------------------------------------------------------------------------

def _add_config(sub) -> None:
    p = sub.add_parser("config", help="print every setting with its default and help, as YAML",
                       description="Print a complete, annotated config file: every setting, its default and what "
                                   "it does, generated from the configuration models. Save it, keep what you "
                                   "change, and pass it with --config.")
    p.add_argument("--out", metavar="FILE", help="write it to FILE instead of printing it")
    p.set_defaults(handler=_config)


def _config(args: argparse.Namespace) -> int:
    from .config_doc import annotated_config

    text = annotated_config()
    if args.out:
        from .files import write_text

        write_text(args.out, text)
        print(f"wrote every setting with its default to {args.out}")
    else:
        _print_to_pager(text.rstrip("\n"))
    return 0


# --- entry point -----------------------------------------------------------------------------

COMMANDS = [_add_denoise, _add_demo, _add_train, _add_eval, _add_export, _add_run, _add_trace, _add_report, _add_ablate,
            _add_review, _add_config]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="robustft", description="Clean noisy SFT data with LLM agents "
                                     "(RobustFT), fine-tune on the result, and inspect every decision.")
    parser.add_argument("--version", action="version", version=f"robustft {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def _shown(text: str) -> str:
    """An error text as it may reach the terminal: no API key, no live escape sequence."""
    from .inspect.terminal import visible
    from .secrets import redact

    return visible(redact(text))


def _configure_logging() -> None:
    """The library speaks through the `robustft` logger; on the command line that is stderr."""
    import logging

    logger = logging.getLogger("robustft")
    if any(getattr(h, "_robustft_cli", False) for h in logger.handlers):
        return

    class Format(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            text = _shown(record.getMessage())
            return text if record.levelno < logging.WARNING else f"robustft: warning: {text}"

    class Stderr(logging.StreamHandler):
        """Writes to whatever sys.stderr is at the time (tests swap it)."""

        @property  # type: ignore[override]
        def stream(self):
            return sys.stderr

        @stream.setter
        def stream(self, value) -> None:
            pass

    handler = Stderr()
    handler.setFormatter(Format())
    handler._robustft_cli = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging()
    try:
        return args.handler(args)
    except UserError as e:
        print(f"robustft: error: {_shown(str(e))}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("\nrobustft: interrupted; progress is saved: run the same command again to resume", file=sys.stderr)
        return 130
    except RobustFTError as e:
        print(f"robustft: error: {_shown(str(e))}", file=sys.stderr)
        return e.exit_code
    except Exception:  # noqa: BLE001 - the edge: anything unexpected is a bug report, exit 1
        print(_shown(traceback.format_exc()), file=sys.stderr, end="")
        print("robustft: internal error (the traceback above); please report it", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
