"""Every command's --help, word for word: the flags and their help are the command line's contract.

tests/cli_help.json holds the expected texts (at 100 columns). After changing a flag or its help on
purpose, write them again: `python tests/test_cli_help.py` from the repository root."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import pytest

EXPECTED = Path(__file__).with_name("cli_help.json")


def help_texts() -> dict[str, str]:
    """'robustft', 'robustft denoise', 'robustft review export', ... -> its --help text."""
    from robustft.cli import build_parser

    texts: dict[str, str] = {}

    def walk(parser, name: str) -> None:
        texts[name] = parser.format_help()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub, subparser in action.choices.items():
                    walk(subparser, f"{name} {sub}")

    walk(build_parser(), "robustft")
    return texts


@pytest.fixture
def columns_100(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")


def test_every_commands_help_is_unchanged(columns_100):
    expected = json.loads(EXPECTED.read_text(encoding="utf-8"))
    actual = help_texts()
    assert sorted(actual) == sorted(expected)
    for command, text in expected.items():
        assert actual[command] == text, command


if __name__ == "__main__":
    os.environ["COLUMNS"] = "100"
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    EXPECTED.write_text(json.dumps(help_texts(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {EXPECTED}")
