"""The command line. Thin: parses flags, calls the library, turns its errors into messages and
exit codes (0 done, 2 bad input or config, 3 samples failed, 4 stopped at the budget (--max-cost),
1 anything else, 130 interrupted).

One module per group of commands, each with an `add_<command>(subparsers)` and its handler:
`denoise` (denoise, demo), `finetune` (train, eval, export, run), `inspect` (trace, report, ablate,
review), `config` (config). The flags that set a setting are written nowhere here: `flags`
generates them from the config's field metadata (`robustft.settings`) and shows a setting's flag in
each message that names it; `common` holds what several commands share."""

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


def _shown(text: str, command: tuple[str, dict[str, str]] | None = None) -> str:
    """A library message as it may reach the terminal: no API key, no live escape sequence, and each
    setting it names followed by the flag that sets it in the command ("denoise.concurrency
    (--concurrency)"); `command`: its name and its own flags (`flags.own_flags`)."""
    from ..terminal import visible
    from ..secrets import redact
    from .flags import with_flags

    return visible(redact(with_flags(text, *command) if command else text))


def _command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[str, dict[str, str]]:
    """The command that runs (`review export`: review) and the flags of its own parser."""
    from .flags import own_flags

    while True:
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        if sub is None or getattr(args, sub.dest, None) not in sub.choices:
            return args.command, own_flags(parser)
        parser = sub.choices[getattr(args, sub.dest)]


def _configure_logging(command: tuple[str, dict[str, str]] | None) -> None:
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
    parser = build_parser()
    args = parser.parse_args(argv)
    command = _command(parser, args)
    _configure_logging(command)
    try:
        return args.handler(args)
    except UserError as e:
        print(f"robustft: error: {_shown(str(e), command)}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("\nrobustft: interrupted; progress is saved: run the same command again to resume", file=sys.stderr)
        return 130
    except RobustFTError as e:
        print(f"robustft: error: {_shown(str(e), command)}", file=sys.stderr)
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

