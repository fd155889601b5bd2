"""`python -m robustft.sim`: serve the simulated expert, or `make-open-data` for open-ended benchmark files."""

from __future__ import annotations

import argparse
import sys
import threading

from ..errors import ConfigError, InputError
from .faults import FAULT_KINDS
from .server import SimServer

__all__ = ["main"]


def _serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m robustft.sim",
        description="Serve a simulated OpenAI-compatible expert that knows the gold answers of FILE "
                    "(chat completions and embeddings).",
        epilog="Also: `python -m robustft.sim make-open-data --help` makes open-ended benchmark files.")
    parser.add_argument("--gold", required=True, metavar="FILE",
                        help="CSV or JSONL with question, answer and optional id, options columns "
                             "(open-ended: key and optional distractors columns)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 (default) picks a free port")
    parser.add_argument("--accuracy", type=float, default=0.8, help="chance of a correct answer (0.8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay per request")
    parser.add_argument("--error-rate", type=float, default=0.0, help="chance of an HTTP 500")
    parser.add_argument("--malformed-rate", type=float, default=0.0, help="chance of a reply without 'Answer:'")
    parser.add_argument("--fault-rate", type=float, default=0.0,
                        help="chance that a call fails in one of the --faults ways (0)")
    parser.add_argument("--faults", default="all", metavar="KINDS",
                        help=f"comma-separated fault kinds, or all (default): {', '.join(FAULT_KINDS)}")
    parser.add_argument("--retry-after-s", type=float, default=1.0, help="Retry-After of the 429 fault (1)")
    parser.add_argument("--hang-s", type=float, default=150.0,
                        help="how long the hang fault holds a request before answering (150)")
    parser.add_argument("--calibration", type=float, default=0.8,
                        help="how far logprobs separate right from wrong answers, 0 to 1 (0.8)")
    parser.add_argument("--rpm", type=float, metavar="N",
                        help="enforce a limit of N chat requests per --rate-window-s, OpenAI-style: x-ratelimit-* "
                             "headers on every reply, 429 with Retry-After over the limit (default: none)")
    parser.add_argument("--tpm", type=float, metavar="N",
                        help="enforce N tokens (prompt plus max_tokens) per --rate-window-s (default: none)")
    parser.add_argument("--rate-window-s", type=float, default=60.0, metavar="S",
                        help="the window of --rpm and --tpm in seconds (60: per minute; less for quick tests)")
    parser.add_argument("--batch-delay-s", type=float, default=0.2, metavar="S",
                        help="the Batch API (/v1/files, /v1/batches): seconds before a batch is worked (0.2)")
    parser.add_argument("--batch-fail-rate", type=float, default=0.0, metavar="P",
                        help="the Batch API: chance that a request of a batch fails into its error file (0)")
    parser.add_argument("--batch-expire-after", type=int, default=None, metavar="N",
                        help="the Batch API: a batch expires after N requests, the rest reported batch_expired")
    parser.add_argument("--task", metavar="NAME", help="a task type (a package's, say) that writes the wrong short "
                                                    "answers (Task.sim_wrong_answer); default: by the gold answers")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["make-open-data"]:
        from .open_data import main as make_open_data

        return make_open_data(argv[1:])
    args = _serve_parser().parse_args(argv)
    try:
        server = SimServer(args.gold, accuracy=args.accuracy, seed=args.seed, latency_ms=args.latency_ms,
                           error_rate=args.error_rate, malformed_rate=args.malformed_rate,
                           calibration=args.calibration, faults=args.faults, fault_rate=args.fault_rate,
                           retry_after_s=args.retry_after_s, hang_s=args.hang_s,
                           host=args.host, port=args.port, verbose=args.verbose, rpm=args.rpm, tpm=args.tpm,
                           rate_window_s=args.rate_window_s, batch_delay_s=args.batch_delay_s,
                           batch_fail_rate=args.batch_fail_rate, batch_expire_after=args.batch_expire_after,
                           task=args.task)
        url = server.start()
    except (InputError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(url, flush=True)
    print(f"serving {len(server.model.index)} gold questions from {args.gold}; Ctrl-C stops",
          file=sys.stderr, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0
