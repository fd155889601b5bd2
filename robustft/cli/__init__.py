"""The command line. Thin: parses flags, calls the library, turns its errors into messages and
exit codes (0 done, 2 bad input or config, 3 samples failed, 4 stopped at the budget (--max-cost),
1 anything else, 130 interrupted).

One module per group of commands, each with an `add_<command>(subparsers)` and its handler:
`denoise` (denoise, demo), `finetune` (train, eval, export, run), `inspect` (trace, report, ablate,
review), `config` (config); `common` holds the flags several of them take."""

from __future__ import annotations

import argparse
import sys
import traceback

from .. import __version__
from ..errors import RobustFTError, UserError
from . import config, denoise, finetune, inspect

# In the order `robustft --help` lists them.
COMMANDS = [denoise.add_denoise, denoise.add_demo, finetune.add_train, finetune.add_eval, finetune.add_export,
            finetune.add_run, inspect.add_trace, inspect.add_report, inspect.add_ablate, inspect.add_review,
            inspect.add_doctor,
            config.add_config]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="robustft", description="Clean noisy SFT data with LLM agents "
                                     "(RobustFT), fine-tune on the result, and inspect every decision.")
    parser.add_argument("--version", action="version", version=f"robustft {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def _shown(text: str, command: str | None = None) -> str:
    """A library message as it may reach the terminal: no API key, no live escape sequence, and each
    setting it names followed by the flag that sets it in `command` ("denoise.concurrency (--concurrency)")."""
    from ..terminal import visible
    from ..secrets import redact
    from .flags import with_flags

    return visible(redact(with_flags(text, command)))


def _configure_logging(command: str | None) -> None:
    """The library speaks through the `robustft` logger; on the command line that is stderr."""
    import logging

    logger = logging.getLogger("robustft")
    for h in [h for h in logger.handlers if getattr(h, "_robustft_cli", False)]:
        logger.removeHandler(h)  # one per command: its messages show that command's flags

    class Format(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            text = _shown(record.getMessage(), command)
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
    _configure_logging(args.command)
    try:
        return args.handler(args)
    except UserError as e:
        print(f"robustft: error: {_shown(str(e), args.command)}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("\nrobustft: interrupted; progress is saved: run the same command again to resume", file=sys.stderr)
        return 130
    except RobustFTError as e:
        print(f"robustft: error: {_shown(str(e), args.command)}", file=sys.stderr)
        return e.exit_code
    except OSError as e:
        from ..files import disk_error_message

        message = disk_error_message(e)  # a full or read-only disk: the path and the fix, no traceback
        if message is None:
            return _internal_error()
        print(f"robustft: error: {_shown(message)}", file=sys.stderr)
        return 1
    except Exception:  # noqa: BLE001 - the edge: anything unexpected is a bug report, exit 1
        return _internal_error()


def _internal_error() -> int:
    print(_shown(traceback.format_exc()), file=sys.stderr, end="")
    print("robustft: internal error (the traceback above); please report it", file=sys.stderr)
    return 1

