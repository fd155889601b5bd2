"""The settings a person gives by name: on the command line as flags, to `robustft.denoise(...)` as
keywords. One table, read from the configuration's field metadata (`config.flag(...)`), so a new
setting is one field: the command line generates its flag, help and shown default from it, the
library takes it as a keyword, and messages name it by its dotted name (`denoise.concurrency`)."""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from . import config


@dataclass(frozen=True)
class Setting:
    """One setting of the table: where it lives in the config, and how a person names it."""

    key: str                   # dotted, as in a config file and in messages: "denoise.max_cost_usd"
    name: str                  # flag and keyword name: "max_cost" (--max-cost, max_cost=)
    commands: tuple[str, ...]  # the commands that take it as a flag
    api: bool                  # a keyword of robustft.denoise(...)
    info: FieldInfo
    metavar: str | None
    help: str
    help_in: dict[str, str]

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def section(self) -> str | None:
        """The config section ("denoise"), None for a top-level setting (`out`)."""
        return self.key.split(".")[0] if "." in self.key else None

    @property
    def default(self) -> Any:
        return self.info.get_default(call_default_factory=True)

    @property
    def choices(self) -> list[Any] | None:
        return _literal_values(self.info.annotation)

    @property
    def kind(self) -> str:
        """How a flag reads its value: "bool" (a switch), "list" (comma-separated), "repeat" (one URL per
        flag, repeatable), or a scalar type's name ("int", "float", "str", "path")."""
        return _kind(self.info.annotation)

    def help_for(self, command: str) -> str:
        return self.help_in.get(command, self.help)


def _literal_values(annotation: Any) -> list[Any] | None:
    if typing.get_origin(annotation) is Literal:
        return list(typing.get_args(annotation))
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _literal_values(arg)
            if found:
                return found
    return None


def _kind(annotation: Any) -> str:
    args = [a for a in typing.get_args(annotation) if a is not type(None)] \
        if typing.get_origin(annotation) in (typing.Union, types.UnionType) else [annotation]
    if any(typing.get_origin(a) is list for a in args):
        return "repeat" if str in args else "list"  # `str | list[str]`: one value per flag, given again for more
    (first, *_) = args
    if first is bool:
        return "bool"
    if first is int:
        return "int"
    if first is float:
        return "float"
    if first is Path:
        return "path"
    return "str"


def _fields(model: type[BaseModel], prefix: str = ""):
    for name, info in model.model_fields.items():
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            yield from _fields(info.annotation, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", name, info


def table() -> tuple[Setting, ...]:
    """Every setting offered by name (as a flag or a keyword), in the config's order."""
    return _table(config.RobustFTConfig)


def section_about(section: str) -> str:
    """What a config section holds, as a phrase ("the method's settings")."""
    return phrase(config.RobustFTConfig.model_fields[section].description or "")


@cache
def _table(root: type[BaseModel]) -> tuple[Setting, ...]:
    rows = []
    for key, field_name, info in _fields(root):
        extra = info.json_schema_extra
        meta = extra.get("cli") if isinstance(extra, dict) else None
        if not isinstance(meta, dict):
            continue
        rows.append(Setting(
            key=key, name=meta.get("name") or field_name, commands=tuple(meta.get("commands", ())),
            api=bool(meta.get("api")), info=info, metavar=meta.get("metavar"),
            help=meta.get("help") or phrase(info.description or ""),
            help_in=dict(meta.get("help_in", {}))))
    return tuple(rows)


def phrase(sentence: str) -> str:
    """A description as a help phrase: "Peak learning rate." -> "peak learning rate" ("LoRA rank." stays)."""
    text = sentence.strip().rstrip(".")
    return text[:1].lower() + text[1:] if text[1:2].islower() else text


def for_command(command: str) -> list[Setting]:
    """The settings `command` takes as flags."""
    return [s for s in table() if command in s.commands]


def keywords() -> dict[str, Setting]:
    """The library API's keyword settings (`robustft.denoise(concurrency=8)`), by keyword."""
    return {s.name: s for s in table() if s.api}


def flag_of(key: str, command: str) -> str | None:
    """The flag that sets `key` in `command`, if it takes one."""
    return next((s.flag for s in for_command(command) if s.key == key), None)


def shown_default(setting: Setting) -> str | None:
    """The default as help shows it; None when there is none worth showing (unset, a switch, empty)."""
    value = setting.default
    if value is None or isinstance(value, bool) or value in ("", [], ()):
        return None
    return str(value)
