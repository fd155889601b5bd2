"""Record shapes: which fields of a record hold the question and the answer under test.

- ``table``: a question column and an answer column (names from `DataConfig`).
- ``messages`` (OpenAI chat): ``{"messages": [{"role": "system"|"user"|"assistant", "content": ...}]}``.
- ``sharegpt``: ``{"conversations": [{"from": "system"|"human"|"gpt", "value": ...}], "system": ...}``.
- ``alpaca``: ``{"instruction", "input", "output"}``, with LLaMA-Factory's optional ``system`` and
  ``history`` (a list of ``[instruction, response]`` pairs).

In a conversation the last turn is the answer under test and must be the assistant's; every turn
before it is the question. `Parsed.conversation` holds those turns as ``{"role", "content"}`` with
roles ``system``, ``user`` and ``assistant`` (ShareGPT's ``human``/``gpt`` mapped; a top-level
``system`` field becomes the first turn), ending with the last user turn, whose text is
`Parsed.question`. Alpaca's question is the instruction, then a blank line and the input when
there is one.

`recognise` picks the shape from the columns (``data.format: auto``): the configured question and
answer columns when both are there, else ``messages`` / ``conversations`` / ``instruction`` +
``output``. `AnswerSlot` says where the answer stands in the record, for writing it back.

Each layout is a `Layout` class registered by name (`data.format`) in the entry-point group
`robustft.layouts`, robustft's own like a package's:

    [project.entry-points."robustft.layouts"]
    qa_pairs = "my_package.layouts:QAPairs"

A layout recognises records by their columns (`recognise`, for ``data.format: auto``; a package's
layouts are tried after robustft's own), parses one record into the question, the answer under
test and where that answer stands (`parse`), and so is written back in its own layout
(`robustft.data.writeback` replaces the answer at that `AnswerSlot` and nothing else).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..config import DataConfig
from ..plugins import Registry, instance_of
from .records import json_type, load_json

__all__ = ["SHAPES", "AnswerSlot", "Layout", "Parsed", "Shape", "ShapeError", "layout_of", "recognise",
           "render_conversation"]

SHAPES = ("table", "messages", "sharegpt", "alpaca")
CONVERSATION_COLUMNS = {"messages": "messages", "sharegpt": "conversations"}
TURN_KEYS = {"messages": ("role", "content"), "sharegpt": ("from", "value")}
ROLE_NAMES = {
    "messages": {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"},
    "sharegpt": {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"},
}
SHAPE_HINT = ("a question column and an answer column; or a chat format: 'messages' (OpenAI: role, content), "
              "'conversations' (ShareGPT: from, value) or Alpaca ('instruction', 'input', 'output')")


class ShapeError(Exception):
    """A record that does not fit its shape: `field` and `fix` for the InputError the caller raises."""

    def __init__(self, message: str, field: str | None, fix: str):
        super().__init__(message)
        self.field, self.fix = field, fix


@dataclass
class AnswerSlot:
    """Where the answer under test stands in a record: a column, then a path inside it (a turn's
    content). `encoded` is True when the column holds the conversation as JSON text (a CSV cell)."""

    column: str
    path: list[str | int] = field(default_factory=list)
    encoded: bool = False


@dataclass
class Parsed:
    question: str
    answer: str
    conversation: list[dict[str, str]] | None
    slot: AnswerSlot
    used: set[str]             # the columns this shape consumed (the rest go to Sample.extra)


@dataclass(frozen=True)
class Shape:
    name: str                  # table | messages | sharegpt | alpaca
    column: str | None = None  # messages / sharegpt: the column holding the conversation


def recognise(columns: list[str], cfg: DataConfig, first_row: dict[str, Any] | None = None) -> Shape:
    """The shape of records with these columns, as `data.format` says or inferred from the columns
    (and, for a conversation column, from the keys of its first turn): robustft's own layouts in
    `AUTO_ORDER`, then a package's, else a table."""
    if cfg.format != "auto":
        return layout_of(cfg.format).shape(cfg)
    for name in AUTO_ORDER:
        shape = layout_of(name).recognise(columns, cfg, first_row)
        if shape is not None:
            return shape
    for name in LAYOUTS.names():  # a package's: only for records robustft's own do not recognise
        if name not in LAYOUTS.builtin:
            shape = layout_of(name).recognise(columns, cfg, first_row)
            if shape is not None:
                return shape
    return Shape("table")


def _turn_style(turns: Any) -> str | None:
    """messages or sharegpt, from the keys of a conversation's first turn."""
    if isinstance(turns, str):
        try:
            turns = load_json(turns)
        except ValueError:
            return None
    if isinstance(turns, list) and turns and isinstance(turns[0], dict):
        if "from" in turns[0] and "value" in turns[0]:
            return "sharegpt"
        if "role" in turns[0]:
            return "messages"
    return None


def render_conversation(conversation: list[dict[str, str]], answer: str | None = None) -> str:
    """A conversation as plain text, for display and embeddings: one "Role: content" block per
    turn, separated by blank lines (with `answer` as a last assistant turn when given)."""
    turns = list(conversation) + ([{"role": "assistant", "content": answer}] if answer is not None else [])
    return "\n\n".join(f"{t['role'].capitalize()}: {t['content']}" for t in turns)


# --- parsing one record ----------------------------------------------------------------------


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _text(value: Any, where: str, column: str) -> str:
    """A turn's content as text: a string, or OpenAI's list of text parts."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(p, dict) for p in value):
        texts = []
        for part in value:
            if part.get("type", "text") != "text" or not isinstance(part.get("text"), str):
                raise ShapeError(f"{where} has a content part of type {part.get('type')!r}; only text is supported",
                                 column, "keep text parts only ({\"type\": \"text\", \"text\": ...}), or give the "
                                         "content as a string")
            texts.append(part["text"])
        return "".join(texts)
    raise ShapeError(f"{where}'s content is {json_type(value)}, not text", column,
                     "give every turn's content as a string")


def _conversation(shape: str, column: str, row: dict[str, Any]) -> Parsed:
    role_key, content_key = TURN_KEYS[shape]
    names = ROLE_NAMES[shape]
    example = ('{"role": "user", "content": "..."}' if shape == "messages" else '{"from": "human", "value": "..."}')
    if column not in row or _is_blank(row[column]):
        raise ShapeError(f"no '{column}' in this record", column, f"give every record its conversation under '{column}'")
    turns, encoded = row[column], False
    if isinstance(turns, str):
        try:
            turns, encoded = load_json(turns), True
        except ValueError as e:
            raise ShapeError(f"'{column}' is text that is not a JSON list of turns ({e})", column,
                             f"write the conversation as a JSON list of turns, e.g. [{example}, ...]") from None
    if hasattr(turns, "tolist"):  # numpy arrays from Parquet / datasets
        turns = turns.tolist()
    if not isinstance(turns, list):
        raise ShapeError(f"'{column}' is {json_type(turns)}, not a list of turns", column,
                         f"write the conversation as a list of turns, e.g. [{example}, ...]")
    if not turns:
        raise ShapeError("the conversation is empty", column, "give every record at least a user turn and an "
                                                               "assistant turn")
    normalised: list[dict[str, str]] = []
    for i, turn in enumerate(turns, 1):
        where = f"turn {i}"
        if not isinstance(turn, dict):
            raise ShapeError(f"{where} is {json_type(turn)}, not an object", column, f"write each turn as {example}")
        if role_key not in turn:
            raise ShapeError(f"{where} has no '{role_key}' (keys: {', '.join(map(str, turn)) or 'none'})", column,
                             f"write each turn as {example}")
        role = names.get(str(turn[role_key]).strip().lower())
        if role is None:
            raise ShapeError(f"{where} has the unknown role {turn[role_key]!r}", column,
                             f"use the roles {', '.join(repr(r) for r in names)}; other turns (tools, functions) "
                             "are not supported: remove them")
        if content_key not in turn or _is_blank(turn[content_key]):
            raise ShapeError(f"{where} has no '{content_key}'", column, f"give every turn its text under '{content_key}'")
        normalised.append({"role": role, "content": _text(turn[content_key], where, column)})
    last = normalised[-1]
    if "assistant" not in (t["role"] for t in normalised):
        raise ShapeError("the conversation has no assistant turn, so there is no answer to check", column,
                         "end each conversation with the assistant's answer")
    if last["role"] != "assistant":
        raise ShapeError(f"the last turn ({len(normalised)}) is a {last['role']} turn, not the assistant's answer",
                         column, "end each conversation with the assistant turn to check: remove the turns after it")
    before = normalised[:-1]
    users = [t for t in before if t["role"] == "user"]
    if not users:
        raise ShapeError("no user turn before the assistant's answer", column,
                         "put the question in a user turn before the answer")
    used = {column}
    system = row.get("system") if shape == "sharegpt" else None
    if isinstance(system, str) and system.strip() and not any(t["role"] == "system" for t in before):
        before.insert(0, {"role": "system", "content": system})
        used.add("system")
    return Parsed(question=users[-1]["content"], answer=last["content"], conversation=before,
                  slot=AnswerSlot(column, [len(turns) - 1, content_key], encoded), used=used)


def _alpaca(row: dict[str, Any]) -> Parsed:
    def text(name: str, required: bool) -> str:
        value = row.get(name)
        if _is_blank(value):
            if required:
                raise ShapeError(f"no '{name}' in this record", name, f"give every record its '{name}'")
            return ""
        if not isinstance(value, str):
            raise ShapeError(f"'{name}' is {json_type(value)}, not text", name, f"write '{name}' as a string")
        return value

    instruction, extra_input, output = text("instruction", True), text("input", False), text("output", True)
    question = instruction.strip() + (f"\n\n{extra_input.strip()}" if extra_input.strip() else "")
    conversation: list[dict[str, str]] = []
    system = text("system", False) if "system" in row else ""
    if system.strip():
        conversation.append({"role": "system", "content": system})
    history = row.get("history")
    if hasattr(history, "tolist"):
        history = history.tolist()
    if not _is_blank(history) and history != []:
        if not isinstance(history, list) or not all(
                isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(x, str) for x in pair)
                for pair in history):
            raise ShapeError("'history' is not a list of [instruction, response] pairs of text", "history",
                             'write history as [["earlier question", "earlier answer"], ...], or remove it')
        for q, a in history:
            conversation += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    conversation.append({"role": "user", "content": question})
    return Parsed(question=question, answer=output, conversation=conversation, slot=AnswerSlot("output"),
                  used={"instruction", "input", "output", "system", "history"} & set(row))


# --- layouts ---------------------------------------------------------------------------------


def cell_text(value: Any, column: str) -> str:
    """A cell as text: a string, a number written out, "" for a missing one; ShapeError for anything else."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and math.isnan(value):
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ShapeError(f"is {json_type(value)}, not text", column, "write this field as a string")


class Layout:
    """One input layout. `name` is set from the registration (the entry point's name); one instance
    serves the whole process."""

    name: str = ""

    def recognise(self, columns: list[str], cfg: DataConfig, first_row: dict[str, Any] | None) -> Shape | None:
        """``data.format: auto``: this layout's `Shape` when records with these columns (and this first
        record) are in it, else None."""
        return None

    def shape(self, cfg: DataConfig) -> Shape:
        """The `Shape` when ``data.format`` names this layout."""
        return Shape(self.name)

    def required(self, shape: Shape, cfg: DataConfig) -> tuple[tuple[str, ...], str]:
        """The fields every record must have, and the fix to say when one is missing from the columns:
        checked once, before any row is read."""
        return (), ""

    def parse(self, shape: Shape, row: dict[str, Any], cfg: DataConfig | None) -> Parsed:
        """One record: the question, the answer under test, the conversation before it (None: the
        question alone), where the answer stands (`AnswerSlot`) and the fields consumed (the rest
        go to `Sample.extra`). Raise `ShapeError` (message, field, fix) for a record that does not
        fit. ``cfg`` is None when a record is read again to write its new answer back."""
        raise NotImplementedError

    def answer_column(self, shape: Shape, cfg: DataConfig) -> str:
        """The column that holds the answer under test (named in messages, kept in `DataSource`)."""
        return shape.column or cfg.answer_column

    def answer_slot(self, shape: Shape, row: dict[str, Any], answer_column: str) -> tuple[AnswerSlot, Any]:
        """Where the answer stands in this record, and the answer as written there (writing back)."""
        parsed = self.parse(shape, row, None)
        return parsed.slot, parsed.answer


class Table(Layout):
    """A question column and an answer column (their names from `DataConfig`); the fallback."""

    def recognise(self, columns, cfg, first_row):
        return Shape("table") if cfg.question_column in columns and cfg.answer_column in columns else None

    def parse(self, shape, row, cfg):
        assert cfg is not None
        qcol, acol = cfg.question_column, cfg.answer_column
        if qcol not in row:
            raise ShapeError(f"no '{qcol}' field in this record", qcol, "give every record a question")
        question = cell_text(row[qcol], qcol).strip()
        if not question:
            raise ShapeError("question is empty", qcol, "write the question, or remove the row")
        if acol not in row:
            raise ShapeError(f"no '{acol}' field in this record", acol, "give every record an answer")
        label = cell_text(row[acol], acol).strip()
        if not label:
            raise ShapeError("label is empty", acol, "write the answer, or remove the row")
        return Parsed(question=question, answer=label, conversation=None, slot=AnswerSlot(acol), used={qcol, acol})

    def answer_column(self, shape, cfg):
        return cfg.answer_column

    def answer_slot(self, shape, row, answer_column):
        return AnswerSlot(answer_column), row.get(answer_column)


class Messages(Layout):
    """OpenAI chat turns (``role``, ``content``) under ``messages``."""

    def recognise(self, columns, cfg, first_row):
        # ShareGPT is recognised here too: the column name does not decide, the first turn's keys do
        present = set(columns)
        candidates = [cfg.conversation_column] if cfg.conversation_column else ["messages", "conversations"]
        for column in candidates:
            if column in present:
                style = _turn_style(first_row.get(column) if first_row else None)
                return Shape(style or ("sharegpt" if column == "conversations" else "messages"), column)
        return None

    def shape(self, cfg):
        return Shape(self.name, cfg.conversation_column or CONVERSATION_COLUMNS[self.name])

    def required(self, shape, cfg):
        return (str(shape.column),), "set data.conversation_column to the field that holds the conversation"

    def parse(self, shape, row, cfg):
        assert shape.column is not None
        return _conversation(shape.name, shape.column, row)


class ShareGPT(Messages):
    """ShareGPT turns (``from``, ``value``) under ``conversations``, with an optional ``system``."""

    def recognise(self, columns, cfg, first_row):
        return None  # `Messages.recognise` tells the two apart by the first turn


class Alpaca(Layout):
    """``instruction``, ``input``, ``output`` (LLaMA-Factory's ``system`` and ``history`` too)."""

    def recognise(self, columns, cfg, first_row):
        return Shape("alpaca") if "instruction" in columns and "output" in columns else None

    def required(self, shape, cfg):
        return ("instruction", "output"), "give every record 'instruction', 'output' and optionally 'input'"

    def parse(self, shape, row, cfg):
        return _alpaca(row)

    def answer_column(self, shape, cfg):
        return "output"


BUILTIN = {"table": "robustft.data.shapes:Table", "messages": "robustft.data.shapes:Messages",
           "sharegpt": "robustft.data.shapes:ShareGPT", "alpaca": "robustft.data.shapes:Alpaca"}
AUTO_ORDER = ("table", "messages", "alpaca")  # which of robustft's own `data.format: auto` tries first
LAYOUTS: Registry[Layout] = Registry("robustft.layouts", "data.format", "layout", BUILTIN,
                                     instance_of(Layout, "robustft.data.shapes.Layout"))
layout_of = LAYOUTS.get  # the Layout named so, or UnknownName (a ConfigError) listing the registered ones


def check_format(name: str) -> str:
    """`data.format` when it is `auto` or a registered layout (a run checks this when it starts)."""
    return name if name == "auto" else LAYOUTS.check(name)
