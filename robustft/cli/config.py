"""`robustft config`: every setting with its default and help, as YAML."""

from __future__ import annotations

import argparse

from .common import print_to_pager


def add_config(sub) -> None:
    p = sub.add_parser("config", help="print every setting with its default and help, as YAML",
                       description="Print a complete, annotated config file: every setting, its default and what "
                                   "it does, generated from the configuration models. Save it, keep what you "
                                   "change, and pass it with --config.")
    p.add_argument("--out", metavar="FILE", help="write it to FILE instead of printing it")
    p.set_defaults(handler=_config)


def _config(args: argparse.Namespace) -> int:
    from ..config_doc import annotated_config

    text = annotated_config()
    if args.out:
        from ..files import write_text

        write_text(args.out, text)
        print(f"wrote every setting with its default to {args.out}")
    else:
        print_to_pager(text.rstrip("\n"))
    return 0
