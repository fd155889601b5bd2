"""`robustft trace`, `report`, `ablate` and `review`: looking into finished runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_run_dir, failed_exit, print_to_pager, settings_given
from .flags import add_setting_flags


def add_trace(sub) -> None:
    p = sub.add_parser("trace", help="one sample's path through the agents: prompts, replies, decisions",
                       description="Show each step a sample went through in a finished run: every agent's prompt "
                                   "(shortened; --full for all of it), the model's reply, the extracted answer and "
                                   "its score, the checker's decision and why, the retrieved examples and their "
                                   "similarity, the reviewer's verdict, selection, any human review, the final status.")
    add_run_dir(p)
    p.add_argument("sample_id", metavar="SAMPLE_ID", help="the sample's id (its row number when the data has no id column)")
    p.add_argument("--full", action="store_true", help="show prompts and replies in full")
    p.add_argument("--json", action="store_true", help="print the trace as JSON")
    p.set_defaults(handler=_trace)


def _trace(args: argparse.Namespace) -> int:
    from ..inspect.trace import trace

    print_to_pager(trace(args.dir, args.sample_id, full=args.full, as_json=args.json))
    return 0


def add_report(sub) -> None:
    p = sub.add_parser("report", help="an HTML report with plots of a run; detection quality with --gold",
                       description="Write DIR/report.html (self-contained, opens offline), the plots as DIR/plots/*.png "
                                   "and DIR/report.json, and print a short table. With --gold FILE (the correct "
                                   "answers, same ids or same row order), also the noise detector's precision, recall "
                                   "and F1, the accuracy of the relabels, and the label accuracy of the input versus "
                                   "the fine-tuning set.")
    add_run_dir(p)
    p.add_argument("--gold", metavar="FILE", help="the same samples with correct labels (CSV, JSONL, ...)")
    p.set_defaults(handler=_report)


def _report(args: argparse.Namespace) -> int:
    from ..inspect.report import report

    print(report(args.dir, args.gold))
    return 0


def add_ablate(sub) -> None:
    from ..inspect.ablation import VARIANTS

    p = sub.add_parser("ablate", help="run the method with parts switched off (the paper's Table 3) and compare",
                       description="Denoise one dataset once per variant into DIR/<variant>/, sharing one response "
                                   "store (DIR/responses.sqlite) so no prompt is paid for twice, then print one table "
                                   "(also DIR/ablation.json and DIR/ablation.md). Variants: "
                                   + ", ".join(VARIANTS) + "; combine switches with '+'. Re-running resumes.")
    p.add_argument("--config", metavar="FILE", help="YAML config (see examples/); flags override it")
    p.add_argument("--variants", metavar="LIST", help="comma-separated variants (default: all of them)")
    p.add_argument("--gold", metavar="FILE", help="correct labels: adds detection and label-accuracy figures")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_setting_flags(p, "ablate")
    p.set_defaults(handler=_ablate)


def _ablate(args: argparse.Namespace) -> int:
    from ..inspect.ablation import LEGEND, format_table, parse_variants, run_ablation
    from ..config import load_config
    from ..errors import ConfigError

    variants = parse_variants(args.variants)
    overrides = settings_given(args, "ablate")
    config = load_config(args.config, overrides)
    out = config.out
    if out is None:
        raise ConfigError("no output directory: pass --out DIR (or set `out:` in the config)")
    result = run_ablation(config, variants, out, gold=args.gold, progress=not args.quiet)
    print(f"\nAblation of {config.data.path} ({len(result.variants)} variants) in {result.out_dir}\n")
    print(format_table(result))
    print(f"\n{LEGEND}\ntable: {result.out_dir / 'ablation.md'}  numbers: {result.out_dir / 'ablation.json'}")
    return failed_exit({"failed": sum(v.summary.get("failed", 0) for v in result.variants),
                         "total": sum(v.summary.get("total", 0) for v in result.variants)})


def add_review(sub) -> None:
    p = sub.add_parser("review", help="export contested samples for a person to decide; import the decisions",
                       description="export: write the samples the checker flagged (relabeled, dropped, failed) to a "
                                   "CSV (or .jsonl) with an empty 'decision' column. import: apply the filled-in "
                                   "decisions (keep = original label, accept = proposed label, drop, or a label) to "
                                   "DIR/denoised.jsonl with source 'human', logging every change in "
                                   "DIR/review_log.jsonl.")
    actions = p.add_subparsers(dest="review_action", required=True, metavar="ACTION")
    e = actions.add_parser("export", help="write the contested samples to a file to edit (open-ended runs with "
                                          "trust scores: every scored sample, least trusted first)")
    add_run_dir(e)
    e.add_argument("--out", metavar="FILE", help="file to write: .csv (default DIR/review.csv) or .jsonl")
    e.add_argument("--score-above", type=float, metavar="X",
                   help="of the kept relabels, export only those with a selection score above X (the uncertain ones)")
    e.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    e.set_defaults(handler=_review)
    i = actions.add_parser("import", help="apply a reviewed file's decisions to the fine-tuning set")
    add_run_dir(i)
    i.add_argument("file", metavar="FILE", help="the exported file with its 'decision' column filled in")
    i.set_defaults(handler=_review)


def _review(args: argparse.Namespace) -> int:
    from ..inspect.review import export_review, import_review
    from ..run.rundir import DENOISED, REVIEW_LOG

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
        print(f"fine-tuning set: {Path(args.dir) / DENOISED}   changes logged in "
              f"{Path(args.dir) / REVIEW_LOG}")
    return 0


def add_doctor(sub) -> None:
    p = sub.add_parser("doctor", help="check a run directory and say what is damaged; --repair fixes it",
                       description="Check a run directory: files robustft writes that are symbolic links, "
                                   "temporaries left by a killed command, a damaged responses.sqlite (SQLite's "
                                   "check, its tables, every row), the run's files as the other commands read them, "
                                   "and human review decisions not yet applied. Says what --repair would do; exit 0 "
                                   "when nothing is wrong (or all was repaired), 2 otherwise.")
    add_run_dir(p)
    p.add_argument("--repair", action="store_true",
                   help="make the repairs: remove robustft's temporaries, rebuild the store from the rows that read "
                        "(the rest is asked again by the next run), apply logged review decisions")
    p.set_defaults(handler=_doctor)


def _doctor(args: argparse.Namespace) -> int:
    from ..inspect.doctor import doctor

    checkup = doctor(args.dir, repair=args.repair)
    print(checkup.text(args.repair))
    return 0 if checkup.healthy else 2
