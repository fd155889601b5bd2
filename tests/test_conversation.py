"""Chat samples (`Sample.conversation`): the experts are sent the conversation as it is, the record
keeps it, trace shows it, and retrieved examples show other samples' conversations as text."""

from __future__ import annotations

import pytest

from robustft.inspect.trace import trace
from robustft.prompts import PromptLibrary, prompt_values
from robustft.run.runner import denoise

from fakes import QUESTIONS, answering, config_for, fake_pool, make_dataset, target_id

GOLD = {sid: gold for sid, (_, _, gold) in QUESTIONS.items()}
NOISY = {"q1": "A", "q2": "A", "q5": "C", "q6": "A"}
SYSTEM = "You are a careful tutor. Keep answers short."
EARLIER = [{"role": "system", "content": SYSTEM},
           {"role": "user", "content": "Before we start: are the options always four?"},
           {"role": "assistant", "content": "Yes, every item here has four options."}]


def conversation_of(sid: str) -> list[dict[str, str]]:
    """q1 and q2 have earlier turns; the clean q0, q4, q8 have a system prompt; the rest none."""
    question = {"role": "user", "content": QUESTIONS[sid][0]}
    if sid in ("q1", "q2"):
        return [*EARLIER, question]
    if sid in ("q0", "q4", "q8"):
        return [{"role": "system", "content": SYSTEM}, question]
    return [question]


@pytest.fixture(scope="module")
def chat_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("chat")
    dataset = make_dataset(NOISY)
    for sample in dataset.samples:
        sample.conversation = conversation_of(sample.id)
    gold = answering(lambda sid: GOLD[sid])
    config = config_for(tmp_path, review="always")
    pool, fakes = fake_pool(config, {"base": gold, "reasoning": gold, "context": gold, "reviewer": gold})
    result = denoise(config, pool=pool, dataset=dataset, progress=False, preflight=False, log=lambda msg: None)
    return result, fakes


def calls_for(model, sid: str) -> list[list[dict]]:
    return [messages for messages in model.calls if target_id(messages) == sid]


def test_every_node_sends_the_earlier_turns_as_they_were_then_its_prompt(chat_run):
    result, fakes = chat_run
    library = PromptLibrary()
    for role in ("base", "reasoning", "context", "reviewer"):
        (messages,) = calls_for(fakes[role], "q1")
        assert messages[:-1] == EARLIER, role
        last = messages[-1]
        assert last["role"] == "user" and QUESTIONS["q1"][0] in last["content"] and "Answer:" in last["content"]
    (base,) = calls_for(fakes["base"], "q1")
    values = prompt_values(QUESTIONS["q1"][0], QUESTIONS["q1"][1], "multiple_choice")
    assert base[-1]["content"] == library.render("base", **values)
    # A sample with only a system prompt gets it first; a plain sample is one user message, as before.
    (q4,) = calls_for(fakes["base"], "q4")
    assert q4[0] == {"role": "system", "content": SYSTEM} and len(q4) == 2
    (q3,) = calls_for(fakes["base"], "q3")
    assert len(q3) == 1 and q3[0]["role"] == "user"


def test_the_record_keeps_the_conversation_and_the_relabel_phase_uses_it(chat_run):
    result, _ = chat_run
    records = {r["id"]: r for r in result.records}
    assert records["q1"]["conversation"] == conversation_of("q1")
    assert records["q1"]["status"] == "relabeled" and records["q1"]["label"] == GOLD["q1"]
    assert records["q3"]["conversation"] == conversation_of("q3")
    denoised = {r["id"]: r for r in result_lines(result.out_dir / "denoised.jsonl")}
    assert denoised["q1"]["conversation"] == conversation_of("q1")


def test_retrieved_examples_show_other_samples_conversations_as_text(chat_run):
    result, fakes = chat_run
    record = next(r for r in result.records if r["id"] == "q1")
    shown = {e["id"] for e in record["nodes"]["context"]["examples"]}
    (messages,) = calls_for(fakes["context"], "q1")
    prompt = messages[-1]["content"]
    for sid in shown:
        if sid in ("q0", "q4", "q8"):
            assert f"System: {SYSTEM}\n\nUser: {QUESTIONS[sid][0]}" in prompt
        else:
            assert QUESTIONS[sid][0] in prompt and "User: " + QUESTIONS[sid][0] not in prompt


def test_trace_shows_the_earlier_turns_before_the_question(chat_run):
    result, _ = chat_run
    out = trace(result.out_dir, "q1")
    head = out.split("\n1. ")[0]
    assert "conversation before the question (3 turns; every prompt was sent after them):" in head
    assert f"    system: {SYSTEM}" in head and "    assistant: Yes, every item here has four options." in head
    assert head.index("assistant: Yes") < head.index("question (the last user turn):") < head.index(QUESTIONS["q1"][0])
    assert "conversation before" not in trace(result.out_dir, "q3")


def result_lines(path):
    import json

    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
