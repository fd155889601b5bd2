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
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from ..config import DataConfig
from .records import json_type, load_json

__all__ = ["SHAPES", "AnswerSlot", "Parsed", "Shape", "ShapeError", "recognise", "render_conversation", "parse_row"]

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
    (and, for a conversation column, from the keys of its first turn)."""
    present = set(columns)
    if cfg.format in CONVERSATION_COLUMNS:
        return Shape(cfg.format, cfg.conversation_column or CONVERSATION_COLUMNS[cfg.format])
    if cfg.format != "auto":
        return Shape(cfg.format)
    if cfg.question_column in present and cfg.answer_column in present:
        return Shape("table")
    candidates = [cfg.conversation_column] if cfg.conversation_column else ["messages", "conversations"]
    for column in candidates:
        if column in present:
            style = _turn_style(first_row.get(column) if first_row else None)
            return Shape(style or ("sharegpt" if column == "conversations" else "messages"), column)
    if "instruction" in present and "output" in present:
        return Shape("alpaca")
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


def parse_row(shape: Shape, row: dict[str, Any]) -> Parsed:
    """The question, the answer under test and the conversation of one chat-shaped record.
    (Tables are read column by column by the caller, with its own row-precise messages.)"""
    if shape.name in TURN_KEYS:
        assert shape.column is not None
        return _conversation(shape.name, shape.column, row)
    if shape.name == "alpaca":
        return _alpaca(row)
    raise ValueError(f"parse_row reads chat shapes, not {shape.name!r}")
