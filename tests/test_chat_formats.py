"""Chat-format records (OpenAI messages, ShareGPT, Alpaca), their errors, and open-task inference."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from robustft.config import DataConfig
from robustft.data import OPEN_MEDIAN_WORDS, infer_task, load_dataset, render_conversation
from robustft.errors import InputError

PARAGRAPH = ("Photosynthesis turns light, water and carbon dioxide into glucose and oxygen inside the "
             "chloroplasts of plant cells.")


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def load(path, **cfg):
    return load_dataset(DataConfig(**cfg), path)


def error_of(path, **cfg) -> str:
    with pytest.raises(InputError) as info:
        load(path, **cfg)
    return str(info.value)


def turn(role, content):
    return {"role": role, "content": content}


def test_openai_messages_last_assistant_turn_is_the_answer(tmp_path):
    p = write_jsonl(tmp_path / "chat.jsonl", [
        {"id": "c1", "messages": [turn("system", "You are a biology tutor."), turn("user", "Hi!"),
                                  turn("assistant", "Hello, ask away."), turn("user", "What does photosynthesis do?"),
                                  turn("assistant", PARAGRAPH)], "topic": "bio"},
        {"id": "c2", "messages": [turn("user", "And respiration?"),
                                  turn("assistant", "It releases energy from glucose, using oxygen and giving off "
                                                    "carbon dioxide and water.")]},
    ])
    ds = load(p)
    first = ds.samples[0]
    assert ds.source.shape == "messages" and ds.task == "open"
    assert first.question == "What does photosynthesis do?" and first.label == PARAGRAPH
    assert first.conversation == [turn("system", "You are a biology tutor."), turn("user", "Hi!"),
                                  turn("assistant", "Hello, ask away."), turn("user", "What does photosynthesis do?")]
    assert first.extra == {"topic": "bio"} and ds.samples[1].extra == {}
    assert ds.samples[1].conversation == [turn("user", "And respiration?")]
    assert render_conversation(first.conversation, first.label).startswith(
        "System: You are a biology tutor.\n\nUser: Hi!\n\nAssistant: Hello, ask away.\n\nUser: What does")
    assert render_conversation(first.conversation, first.label).endswith(f"Assistant: {PARAGRAPH}")


def test_sharegpt_maps_roles_and_takes_the_system_field(tmp_path):
    p = tmp_path / "sg.json"
    p.write_text(json.dumps([
        {"conversations": [{"from": "human", "value": "Capital of France?"}, {"from": "gpt", "value": "Paris"}],
         "system": "Answer briefly."},
        {"conversations": [{"from": "system", "value": "Be exact."}, {"from": "human", "value": "Capital of Peru?"},
                           {"from": "gpt", "value": "Lima"}]},
    ]))
    ds = load(p)
    assert ds.source.shape == "sharegpt" and ds.task == "text"
    assert [(s.id, s.question, s.label) for s in ds.samples] == [("0", "Capital of France?", "Paris"),
                                                                  ("1", "Capital of Peru?", "Lima")]
    assert ds.samples[0].conversation == [turn("system", "Answer briefly."), turn("user", "Capital of France?")]
    assert ds.samples[1].conversation == [turn("system", "Be exact."), turn("user", "Capital of Peru?")]


def test_alpaca_question_is_instruction_and_input_with_history(tmp_path):
    p = tmp_path / "alpaca.json"
    p.write_text(json.dumps([
        {"instruction": "Translate to French.", "input": "the cat", "output": "le chat"},
        {"instruction": "And this one?", "input": "", "output": "le chien", "system": "You translate.",
         "history": [["Translate to French: the dog", "le chien"]]},
    ]))
    ds = load(p)
    assert ds.source.shape == "alpaca" and ds.source.answer_column == "output"
    assert ds.samples[0].question == "Translate to French.\n\nthe cat" and ds.samples[0].label == "le chat"
    assert ds.samples[1].question == "And this one?"
    assert ds.samples[1].conversation == [turn("system", "You translate."),
                                          turn("user", "Translate to French: the dog"), turn("assistant", "le chien"),
                                          turn("user", "And this one?")]


def test_conversation_in_a_csv_cell_with_options_and_text_parts(tmp_path):
    p = tmp_path / "chat.csv"
    with p.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "messages", "options"])
        w.writerow(["a", json.dumps([turn("user", "Sky colour?"), turn("assistant", "blue")]),
                    json.dumps(["red", "green", "blue"])])
        w.writerow(["b", json.dumps([turn("user", [{"type": "text", "text": "Grass "}, {"type": "text", "text": "colour?"}]),
                                     turn("assistant", "B")]), json.dumps(["red", "green", "blue"])])
    ds = load(p)
    assert ds.task == "multiple_choice" and [s.label for s in ds.samples] == ["C", "B"]
    assert ds.samples[1].question == "Grass colour?"


def test_configured_columns_win_over_chat_recognition(tmp_path):
    p = write_jsonl(tmp_path / "both.jsonl", [{"prompt": "Q?", "reply": "yes",
                                               "messages": [turn("user", "other"), turn("assistant", "no")]}])
    ds = load(p, question_column="prompt", answer_column="reply")
    assert ds.source.shape == "table" and ds.samples[0].question == "Q?" and "messages" in ds.samples[0].extra
    ds = load(p)
    assert ds.source.shape == "messages" and ds.samples[0].label == "no"
    assert load(p, format="messages", conversation_column="messages").samples[0].question == "other"


BAD_CONVERSATIONS = {
    "no assistant": ([turn("system", "s"), turn("user", "q")], "no assistant turn", "end each conversation"),
    "last not assistant": ([turn("user", "q"), turn("assistant", "a"), turn("user", "more?")],
                           "the last turn (3) is a user turn", "remove the turns after it"),
    "unknown role": ([turn("user", "q"), turn("tool", "{}"), turn("assistant", "a")],
                     "turn 2 has the unknown role 'tool'", "'system', 'developer', 'user', 'assistant'"),
    "non-string content": ([turn("user", "q"), turn("assistant", 42)], "turn 2's content is a number, not text",
                           "as a string"),
    "image content": ([turn("user", [{"type": "image_url", "image_url": {"url": "x"}}]), turn("assistant", "a")],
                      "content part of type 'image_url'", "keep text parts only"),
    "turn without role": ([{"content": "q"}, turn("assistant", "a")], "turn 1 has no 'role'", '{"role": "user"'),
    "turn not an object": (["q", turn("assistant", "a")], "turn 1 is a string, not an object", "write each turn"),
    "empty": ([], "the conversation is empty", "at least a user turn"),
    "no user": ([turn("system", "s"), turn("assistant", "a")], "no user turn before", "user turn"),
    "not a list": ({"role": "user"}, "is an object, not a list of turns", "list of turns"),
    "empty answer": ([turn("user", "q"), turn("assistant", "  ")], "the answer (the last assistant turn) is empty",
                     "write the answer"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONVERSATIONS))
def test_malformed_conversations_name_the_row_and_the_fix(tmp_path, case):
    messages, needle, fix = BAD_CONVERSATIONS[case]
    good = {"id": "ok", "messages": [turn("user", "fine?"), turn("assistant", "yes")]}
    p = write_jsonl(tmp_path / "bad.jsonl", [good, {"id": "broken", "messages": messages}])
    msg = error_of(p)
    assert "bad.jsonl" in msg and "row 2" in msg and "field 'messages'" in msg and "id 'broken'" in msg
    assert needle in msg, msg
    assert "fix:" in msg and fix in msg, msg


def test_sharegpt_and_alpaca_errors(tmp_path):
    p = write_jsonl(tmp_path / "sg.jsonl", [{"conversations": [{"from": "human", "value": "q"},
                                                               {"from": "bot", "value": "a"}]}])
    msg = error_of(p)
    assert "row 1" in msg and "field 'conversations'" in msg and "unknown role 'bot'" in msg and "'gpt'" in msg
    p = write_jsonl(tmp_path / "al.jsonl", [{"instruction": "Do it", "output": "done"},
                                            {"instruction": "Do it", "output": ["done"]}])
    msg = error_of(p)
    assert "row 2" in msg and "field 'output'" in msg and "a list, not text" in msg
    p = write_jsonl(tmp_path / "hist.jsonl", [{"instruction": "Do it", "output": "done", "history": [["only one"]]}])
    assert "history" in error_of(p) and "pairs" in error_of(p)
    p = tmp_path / "cell.csv"
    p.write_text('messages\n"[{""role"": ""user"", ""content"": ""q""}, oops]"\n')
    msg = error_of(p)
    assert "row 1" in msg and "not a JSON list of turns" in msg


def test_a_table_without_question_column_mentions_the_chat_formats(tmp_path):
    p = write_jsonl(tmp_path / "odd.jsonl", [{"prompt": "Q?", "completion": "A"}])
    msg = error_of(p)
    assert "missing column 'question'" in msg and "data.question_column" in msg and "'messages'" in msg


# --- open-ended answers ------------------------------------------------------------------------


@pytest.mark.parametrize("labels, task", [
    (["Paris", "the Treaty of Versailles", "blue"], "text"),
    ([PARAGRAPH, "It releases energy from glucose.", PARAGRAPH], "open"),
    (["one two three four five six seven eight"] * 2 + ["short"], "open"),  # median of 8, 8, 1 words
    (["42", "3.5"], "numeric"),
])
def test_open_task_is_inferred_from_long_free_text(tmp_path, labels, task):
    p = write_jsonl(tmp_path / "d.jsonl", [{"question": f"Q{i}?", "answer": a} for i, a in enumerate(labels)])
    ds = load(p)
    assert ds.task == task == infer_task(labels)
    if task == "open":
        assert [s.label for s in ds.samples] == labels  # kept exactly as written


def test_open_threshold_is_the_median_word_count():
    below = " ".join(["w"] * (OPEN_MEDIAN_WORDS - 1))
    at = " ".join(["w"] * OPEN_MEDIAN_WORDS)
    assert infer_task([below, below, at]) == "text"
    assert infer_task([below, at, at]) == "open"


def test_task_open_can_be_set(tmp_path):
    p = write_jsonl(tmp_path / "d.jsonl", [{"question": "Q?", "answer": "  Yes.  "}])
    ds = load(p, task="open")
    assert ds.task == "open" and ds.samples[0].label == "Yes."
