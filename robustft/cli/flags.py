"""Flags generated from the settings table (`robustft.settings`): a setting with command-line
metadata is a flag of the commands it names, with its help and default, and messages that name a
setting show its flag. No command module lists setting flags by hand."""

from __future__ import annotations

import argparse
from typing import Any

from ..settings import Setting, for_command, section_about, shown_default, table

_TYPES = {"int": int, "float": float}


def add_setting_flags(p: argparse.ArgumentParser, command: str) -> None:
    """Add the flags of every setting `command` takes: top-level ones (`--out`) among the command's
    own options, the rest in one group per config section, in the config's order."""
    groups: dict[str, Any] = {}
    for s in for_command(command):
        target: Any = p
        if s.section is not None:
            if s.section not in groups:
                groups[s.section] = p.add_argument_group(f"{section_about(s.section)} ({s.section}.* settings)")
            target = groups[s.section]
        target.add_argument(s.flag, dest=s.key, help=_help(s, command), **_parsing(s))


def _help(s: Setting, command: str) -> str:
    default = shown_default(s)
    text = s.help_for(command)
    return f"{text} ({s.key}{', default ' + default if default else ''})".replace("%", "%%")


def _parsing(s: Setting) -> dict[str, Any]:
    kind = s.kind
    if kind == "bool":
        return {"action": "store_true", "default": None}  # unset: the config decides
    kwargs: dict[str, Any] = {}
    if s.choices:
        kwargs["choices"] = s.choices
    else:
        kwargs["metavar"] = s.metavar or s.name.upper()
    if kind == "repeat":
        kwargs["action"] = "append"
    elif kind == "list":
        kwargs["type"] = _comma_list
    elif kind in _TYPES:
        kwargs["type"] = _TYPES[kind]
    return kwargs


def _comma_list(text: str) -> list[str]:
    names = [c.strip() for c in text.split(",")]
    if len(names) < 2 or not all(names):
        raise argparse.ArgumentTypeError(f"{text!r}: give two or more names separated by commas, e.g. A,B,C,D")
    return names


def setting_values(args: argparse.Namespace, command: str) -> dict[str, Any]:
    """The settings `command`'s flags gave, by dotted key (None: not given). A repeatable flag given
    once is its one value (`--base-url URL`: a URL, not a list of one)."""
    values = {}
    for s in for_command(command):
        value = getattr(args, s.key, None)
        if s.kind == "repeat" and isinstance(value, list) and len(value) == 1:
            value = value[0]
        values[s.key] = value
    return values


def with_flags(message: str, command: str | None) -> str:
    """`message` with each setting it names followed by the flag that sets it in `command`:
    "denoise.max_cost_usd (--max-cost)". A setting without a dot (`out`) counts only in backticks."""
    if not command:
        return message
    offered = {s.key: s.flag for s in table() if command in s.commands}
    for key in sorted(offered, key=len, reverse=True):
        message = _after_each(message, key if "." in key else f"`{key}`", f" ({offered[key]})")
    return message


def _after_each(text: str, name: str, addition: str) -> str:
    """`text` with `addition` after every whole-word `name` that does not already have it."""
    out, start = [], 0
    while (found := text.find(name, start)) >= 0:
        end = found + len(name)
        before = text[found - 1] if found else " "
        after = text[end:end + 1]
        word_goes_on = after.isalnum() or after == "_" or (after == "." and text[end + 1:end + 2].isalnum())
        whole = not (before.isalnum() or before in "_.") and not word_goes_on
        out.append(text[start:end])
        if whole and not text.startswith(addition, end):
            out.append(addition)
        start = end
    out.append(text[start:])
    return "".join(out)
