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


def with_flags(message: str, command: str | None, own: dict[str, str] | None = None) -> str:
    """`message` with each setting it names followed, the first time, by the flag that sets it in
    `command`: "denoise.max_cost_usd (--max-cost)". A name without a dot counts only in backticks: a top-level
    setting (`out`) or, from `own`, an argument the command's own flags give (`gold` -> --gold)."""
    if not command:
        return message
    offered = {s.key if "." in s.key else f"`{s.key}`": s.flag for s in table() if command in s.commands}
    for name, flag in (own or {}).items():
        offered.setdefault(f"`{name}`", flag)
    for name in sorted(offered, key=len, reverse=True):
        message = _after_first(message, name, f" ({offered[name]})")
    return message


def own_flags(parser: argparse.ArgumentParser) -> dict[str, str]:
    """A command's flags that are not settings, by the name the library gives their value."""
    return {a.dest: a.option_strings[-1] for a in parser._actions
            if a.option_strings and a.option_strings[-1].startswith("--") and "." not in a.dest and a.dest != "help"}


def _after_first(text: str, name: str, addition: str) -> str:
    """`text` with `addition` after the first whole-word `name`, unless it has it already."""
    start = 0
    while (found := text.find(name, start)) >= 0:
        end = found + len(name)
        before = text[found - 1] if found else " "
        after = text[end:end + 1]
        word_goes_on = after.isalnum() or after == "_" or (after == "." and text[end + 1:end + 2].isalnum())
        if not (before.isalnum() or before in "_.") and not word_goes_on:
            if before in "'\"" and after == before:
                end += 1  # 'denoise.beta' (--beta): after the quote that closes the name
            return text if text.startswith(addition, end) else text[:end] + addition + text[end:]
        start = end
    return text
