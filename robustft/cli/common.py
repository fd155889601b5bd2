"""What the commands share: the settings their flags give, and the exit code and printing
conventions."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .flags import setting_values


def settings_given(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """The settings `command`'s flags gave (None: not given), by dotted key, ready for
    `load_config`: a model name and base URL resolved as `config.model_flag_updates` says."""
    from ..config import ModelConfig, load_config, model_flag_updates

    values = setting_values(args, command)
    if "model.name" in values or "model.base_url" in values:
        configured = load_config(args.config).model if getattr(args, "config", None) else ModelConfig()
        updates = model_flag_updates(configured, model=values.pop("model.name", None),
                                     base_url=values.pop("model.base_url", None))
        values.update({f"model.{key}": value for key, value in updates.items()})
    return values


def add_run_dir(p: argparse.ArgumentParser, metavar: str = "DIR", **kwargs: Any) -> None:
    p.add_argument("dir", metavar=metavar, help="run directory (robustft denoise --out)", **kwargs)


def data_help() -> str:
    """What a data source may be (the help of data.path), for the commands whose --data is no setting."""
    from ..settings import table

    return next(s.help for s in table() if s.key == "data.path")


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
