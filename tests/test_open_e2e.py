"""A chat file of open-ended questions with swapped and altered responses, cleaned end to end through
the command line against the simulated experts, exported back as a chat file; and LoRA training
on an open-ended fine-tuning set."""

from __future__ import annotations

import json

import pytest

from robustft.cli import main
from robustft.config import DataConfig, load_config
from robustft.data import read_jsonl, write_jsonl
from robustft.finetune.export import to_alpaca
from robustft.finetune.train import build_trainer, load_training_set, sft_examples, train
from robustft.inspect.trace import trace
from robustft.prompts import PromptLibrary
from robustft.sim import SimServer
from robustft.sim.facts import is_right
from robustft.sim.gold import load_gold
from robustft.sim.open_data import make_open_data

from simhelp import arc_gold_path

SYSTEM = "You are a patient science teacher. Answer in a short paragraph."


@pytest.fixture(scope="module")
def cleaned(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("open-chat")
    folder = tmp / "data"
    make_open_data(arc_gold_path(), folder, noise=0.5, limit=30, seed=3)
    source = tmp / "chat.messages.jsonl"
    rows = [{**r, "messages": [{"role": "system", "content": SYSTEM}, *r["messages"]]}
            for r in read_jsonl(folder / "noisy.messages.jsonl")]
    write_jsonl(source, rows)
    out, exported = tmp / "run", tmp / "cleaned.messages.jsonl"
    judge = tmp / "judge.yaml"
    judge.write_text("denoise:\n  checker: judge\n")
    with SimServer(folder / "gold.csv", accuracy=0.8, seed=1) as sim:
        args = ["denoise", "--data", str(source), "--out", str(out), "--model", "sim", "--base-url", sim.base_url,
                "--quiet"]
        assert main(args) == 0
        similarity_rule = {r["id"]: r for r in read_jsonl(out / "samples.jsonl")}
        # The same run again with the LLM judge: every call the two share comes from the response store.
        assert main(["denoise", "--config", str(judge), *args[1:]]) == 0
    assert main(["export", str(out), "--out", str(exported)]) == 0
    gold = {g.id: g for g in load_gold(folder / "gold.csv")}
    kinds = {line.split(",")[0]: line.split(",")[1] for line in (folder / "noise.csv").read_text().splitlines()[1:]}
    return {"source": source, "rows": rows, "out": out, "exported": exported, "gold": gold, "kinds": kinds,
            "similarity_rule": similarity_rule}


def right(gold, sid: str, text: str) -> bool:
    return is_right(text, gold[sid].key, gold[sid].distractors)


def test_the_similarity_rule_finds_every_swapped_response(cleaned):
    """The default checker (response similarity): another question's response is never a close call;
    a changed key fact in the same wording mostly passes (README: Open-ended responses)."""
    gold, records = cleaned["gold"], cleaned["similarity_rule"]
    wrong = {r["id"] for r in cleaned["rows"] if not right(gold, r["id"], r["messages"][-1]["content"])}
    assert len(wrong) == 15 and set(cleaned["kinds"]) == wrong
    flagged = {sid for sid, r in records.items() if r["decision"] == "noisy"}
    swaps = {sid for sid in wrong if cleaned["kinds"][sid] == "swap"}
    assert swaps and swaps <= flagged
    assert len(wrong & flagged) > len(wrong) / 2
    assert all("similarity" in r["decision_reason"] for r in records.values())


def test_with_the_judge_most_wrong_responses_are_found_and_none_is_kept_as_it_was(cleaned):
    gold, rows = cleaned["gold"], cleaned["rows"]
    summary = json.loads((cleaned["out"] / "summary.json").read_text())
    assert summary["task"] == "open" and summary["failed"] == 0 and summary["config"]["denoise"]["checker"] == "judge"
    records = {r["id"]: r for r in read_jsonl(cleaned["out"] / "samples.jsonl")}
    wrong = {r["id"] for r in rows if not right(gold, r["id"], r["messages"][-1]["content"])}
    flagged = {sid for sid, r in records.items() if r["decision"] == "noisy"}
    # A judge right 80 % of the time: about 12 of the 15; 9 (60 %) leaves room for an unlucky draw.
    assert len(wrong & flagged) >= 0.6 * len(wrong)
    exported = {r["id"]: r["messages"][-1]["content"] for r in read_jsonl(cleaned["exported"])}
    for sid in wrong & flagged:  # found: replaced by a new response, or left out
        assert sid not in exported or exported[sid] != records[sid]["original_label"]
    relabeled = [sid for sid, r in records.items() if r["status"] == "relabeled"]
    assert relabeled and sum(right(gold, sid, exported[sid]) for sid in relabeled) >= 0.8 * len(relabeled)
    share_in = 1 - len(wrong) / len(rows)
    share_out = sum(right(gold, sid, text) for sid, text in exported.items()) / len(exported)
    assert share_out >= share_in + 0.2, (share_in, share_out)


def test_the_export_is_the_chat_file_with_only_the_corrected_assistant_turns_changed(cleaned):
    source_lines = {json.loads(line)["id"]: line for line in cleaned["source"].read_text().splitlines()}
    records = {r["id"]: r for r in read_jsonl(cleaned["out"] / "samples.jsonl")}
    out_lines = cleaned["exported"].read_text().splitlines()
    kept = [sid for sid in source_lines if records[sid]["status"] in ("clean", "relabeled", "confirmed")]
    assert [json.loads(line)["id"] for line in out_lines] == kept  # input order, dropped ones left out
    for line in out_lines:
        record = json.loads(line)
        before = json.loads(source_lines[record["id"]])
        if records[record["id"]]["status"] == "clean":
            assert line == source_lines[record["id"]]  # byte for byte
        else:
            assert record["messages"][:-1] == before["messages"][:-1]  # the system prompt and question as they were
            assert record["messages"][-1] == {"role": "assistant", "content": records[record["id"]]["label"]}
            assert set(record) == set(before)


def test_trace_shows_the_system_prompt_and_the_responses(cleaned):
    records = read_jsonl(cleaned["out"] / "samples.jsonl")
    sid = next(r["id"] for r in records if r["status"] == "relabeled")
    out = trace(cleaned["out"], sid)
    assert f"    system: {SYSTEM}" in out and "question (the last user turn):" in out
    assert "given response:" in out and "response to train on:" in out
    assert "judge (an LLM decides" in out
    assert "   | The given response (may be wrong):" in trace(cleaned["out"], sid, full=True)


def test_the_report_of_an_open_run_counts_no_agreement_by_text(cleaned):
    from robustft.inspect.report import build_report

    report = build_report(cleaned["out"])
    # Paraphrases that agree in meaning differ in text: counting equal texts would call them disagreements.
    assert report.data["roles"] == [] and "roles" not in report.plots
    assert not (cleaned["out"] / "plots" / "roles.png").exists()
    html = report.html_path.read_text(encoding="utf-8")
    assert "Agreement per agent is not counted for open-ended responses" in html
    assert "agrees with given label" not in html


# --- training on an open-ended fine-tuning set -------------------------------------------------

OPEN_RECORDS = [
    {"id": "a", "question": "Why does ice float?", "task": "open", "source": "relabeled", "score": 0.4,
     "conversation": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why does ice float?"}],
     "label": "Ice is less dense than liquid water.\nIts molecules form an open lattice.",
     "original_label": "Because it is cold."},
    {"id": "b", "question": "What makes the sky blue?", "task": "open", "source": "clean", "score": None,
     "label": "Air scatters blue light more than red light.", "original_label": "Air scatters blue light more than red light."},
]


def test_an_open_fine_tuning_set_trains_on_the_conversation_and_the_response_itself(tmp_path, tiny_model_dir):
    path = tmp_path / "denoised.jsonl"
    write_jsonl(path, [{**r, "id": f"{r['id']}{i}"} for i in range(4) for r in OPEN_RECORDS])
    unique = tmp_path / "unique.jsonl"
    write_jsonl(unique, OPEN_RECORDS)
    dataset = load_training_set(DataConfig(), unique)
    assert dataset.task == "open" and "conversation" not in dataset.samples[0].extra
    examples = sft_examples(dataset, PromptLibrary())
    assert examples[0]["prompt"] == OPEN_RECORDS[0]["conversation"]
    assert examples[0]["completion"] == [{"role": "assistant", "content": OPEN_RECORDS[0]["label"]}]
    assert examples[1]["prompt"] == [{"role": "user", "content": "What makes the sky blue?"}]
    # Alpaca keeps the system prompt apart, as LLaMA-Factory reads it.
    assert to_alpaca(examples)[0] == {"instruction": "Why does ice float?", "input": "", "system": "Be brief.",
                                      "output": OPEN_RECORDS[0]["label"]}

    config = load_config(None, {"train.learning_rate": 1e-2, "train.batch_size": 2, "train.max_steps": 3,
                                "train.gradient_accumulation_steps": 1, "train.logging_steps": 1,
                                "train.warmup_ratio": 0.0})
    trainer = build_trainer(examples, str(tiny_model_dir), config.train, tmp_path / "probe", progress=False)
    batch = trainer.data_collator([trainer.train_dataset[0]])
    labels = [t for t in batch["labels"][0].tolist() if t != -100]
    completion = trainer.processing_class.decode(labels)
    assert completion.startswith(OPEN_RECORDS[0]["label"]) and "Answer:" not in completion  # only the response has loss

    result = train(config, data=path, model=str(tiny_model_dir), out=tmp_path / "adapter", progress=False)
    assert result.summary["steps"] == 3 and result.summary["task"] == "open" and result.summary["samples"] == 8
    assert all(loss > 0 for loss in result.summary["losses"])
    resolved = json.loads((tmp_path / "adapter" / "train_config.json").read_text())
    assert resolved["prompt_format"]["completion"] == "[{role: assistant, content: <the response>}]"


def test_cli_export_of_an_open_chat_run_in_pair_formats(cleaned, tmp_path):
    alpaca = tmp_path / "set.json"
    assert main(["export", str(cleaned["out"]), "--format", "alpaca", "--out", str(alpaca)]) == 0
    first = json.loads(alpaca.read_text())[0]
    assert first["system"] == SYSTEM and not first["output"].startswith("Answer:")
    messages = tmp_path / "set.jsonl"
    assert main(["export", str(cleaned["out"]), "--format", "messages", "--out", str(messages)]) == 0
    record = read_jsonl(messages)[0]
    assert record["messages"][0] == {"role": "system", "content": SYSTEM} and record["messages"][-1]["role"] == "assistant"


def test_report_gold_compares_open_responses_by_meaning_and_by_facts(cleaned, tmp_path):
    from robustft.inspect.report import build_report

    gold, out = cleaned["gold"], cleaned["out"]
    records = {r["id"]: r for r in read_jsonl(out / "samples.jsonl")}
    proposed = [sid for sid, r in records.items() if r.get("proposed_label") is not None]
    stating_key = [sid for sid in proposed if right(gold, sid, records[sid]["proposed_label"])]
    assert stating_key  # relabels that state the gold fact in their own words
    gold_file = tmp_path / "gold.csv"
    gold_file.write_text((out.parent / "data" / "gold.csv").read_text())
    rep = build_report(out, gold_file)
    m = rep.data["gold_metrics"]
    assert m["comparison"]["rule"].startswith("by meaning: embedding cosine similarity >= ")
    assert "compared with gold: by meaning" in rep.text
    assert m["relabel"]["correct"] > 0  # compared as exact text, every paraphrase counted wrong (0 %)
    html = rep.html_path.read_text(encoding="utf-8")
    assert "<div class=card>" in html and "Given response" in html  # readable cards, not narrow columns

    # the exact form: a facts column, every fact must appear
    import csv

    rows = list(csv.DictReader(gold_file.open()))
    with (tmp_path / "facts.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "question", "answer", "facts"])
        writer.writeheader()
        for row in rows:
            writer.writerow({"id": row["id"], "question": row["question"], "answer": row["answer"],
                             "facts": row["key"]})
    m = build_report(out, tmp_path / "facts.csv").data["gold_metrics"]
    assert m["comparison"]["with_facts"] == len(rows)
    assert m["relabel"]["correct"] == len(stating_key)
