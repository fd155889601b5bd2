"""What the commands share: the model, embedding and data flags and the settings they override,
and the exit code and printing conventions."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def model_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The model settings that --model, --base-url and --max-tokens set (see `model_flag_updates`)."""
    from ..config import ModelConfig, load_config, model_flag_updates

    configured = load_config(args.config).model if getattr(args, "config", None) else ModelConfig()
    updates = model_flag_updates(configured, model=args.model, base_url=args.base_url)
    overrides: dict[str, Any] = {f"model.{key}": value for key, value in updates.items()}
    overrides["model.max_tokens"] = getattr(args, "max_tokens", None)
    return overrides


def add_model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="NAME", help="model name on the server (with --base-url), "
                   "or a local transformers model directory / hub name (without)")
    p.add_argument("--base-url", metavar="URL", action="append",
                   help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 (vllm serve); repeat it for "
                        "replicas of the same model (each call goes to the least busy one; one that keeps failing "
                        "is rested). The API key is read from $OPENAI_API_KEY (any value for local servers)")


def add_embedding_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--embedding-base-url", metavar="URL", action="append",
                   help="embed the questions with an OpenAI-compatible /v1/embeddings server (vllm serve of an "
                        "embedding model, TEI, a hosted API) instead of a local sentence-transformers model; "
                        "repeat it for replicas")
    p.add_argument("--embedding-model", metavar="NAME",
                   help="embedding model: its name on that server, or a local sentence-transformers model "
                        "(default sentence-transformers/all-MiniLM-L6-v2)")


def embedding_overrides(args: argparse.Namespace) -> dict[str, Any]:
    urls = args.embedding_base_url
    return {"denoise.embedding_base_url": urls[0] if urls and len(urls) == 1 else urls,
            "denoise.embedding_model": args.embedding_model}


DATA_HELP = ("CSV, TSV, JSONL, JSON, Parquet, a save_to_disk folder, or a Hugging Face Hub name (org/name); "
             "tables and chat formats (messages, ShareGPT conversations, Alpaca)")


def add_run_dir(p: argparse.ArgumentParser, metavar: str = "DIR", **kwargs: Any) -> None:
    p.add_argument("dir", metavar=metavar, help="run directory (robustft denoise --out)", **kwargs)


def add_data_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data columns (override data.* in the config)")
    g.add_argument("--question-column", metavar="NAME", help="column holding the question (default question)")
    g.add_argument("--answer-column", metavar="NAME", help="column holding the answer (default answer)")
    g.add_argument("--options-column", metavar="NAME", help="column holding multiple-choice options (default options)")
    g.add_argument("--options-columns", metavar="A,B,C,D", type=_column_list,
                   help="one column per option, in order (default: recognised by name, e.g. A..E, option_a.., opa..)")
    g.add_argument("--id-column", metavar="NAME", help="column holding unique ids (default id; none: row numbers)")
    g.add_argument("--split", metavar="NAME", help="split of a hub dataset or DatasetDict (default train, or the only one)")


def data_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {"data.question_column": args.question_column, "data.answer_column": args.answer_column,
            "data.options_column": args.options_column, "data.options_columns": args.options_columns,
            "data.id_column": args.id_column, "data.split": args.split}


def _column_list(text: str) -> list[str]:
    names = [c.strip() for c in text.split(",")]
    if len(names) < 2 or not all(names):
        raise argparse.ArgumentTypeError(f"{text!r}: give two or more column names separated by commas, e.g. A,B,C,D")
    return names


def failed_exit(summary: dict[str, Any]) -> int:
    """0, or 3 when samples failed: `denoise && train` must not train on a sliver unnoticed."""
    failed = summary.get("failed", 0)
    if not failed:
        return 0
    print(f"robustft: {failed} of {summary['total']} samples failed (their errors are in samples.jsonl; "
          "`robustft report` counts them); run the same command again to retry them", file=sys.stderr)
    return 3


def print_to_pager(text: str) -> None:
    """Print, treating a reader that stops early (`| head`, a closed pager) as normal."""
    import os

    try:
        print(text, flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
