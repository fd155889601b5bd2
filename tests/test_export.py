"""`robustft export`: the fine-tuning set in the input's own format (RUN_DIR), and as messages JSONL, Alpaca
JSON and a Hugging Face dataset of training pairs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from robustft.cli import main
from robustft.config import load_config
from robustft.data import load_dataset, read_jsonl, write_jsonl
from robustft.data.jsonspan import replace_value
from robustft.errors import ConfigError, InputError
from robustft.finetune.export import export, export_run, infer_format, load_export
from robustft.prompts import PromptLibrary
from robustft.finetune.train import load_training_set, sft_examples

from shared_data import ARC


def expected_pairs(config, path) -> list[dict[str, str]]:
    examples = sft_examples(load_training_set(config.data, path), PromptLibrary(), config.data.instruction)
    return [{"prompt": e["prompt"][0]["content"], "completion": e["completion"][0]["content"]} for e in examples]


@pytest.mark.parametrize("name,fmt", [("set.jsonl", "messages"), ("set.json", "alpaca"), ("set_hf", "hf")])
def test_every_format_round_trips(tmp_path, toy_mc_csv, name, fmt):
    config = load_config(None, {"data.instruction": "Be brief."})
    out = tmp_path / name
    result = export(config, data=toy_mc_csv, out=out)
    assert result.format == fmt == infer_format(out) and result.count == 24
    pairs = load_export(out)
    assert pairs == expected_pairs(config, toy_mc_csv)
    assert pairs[0]["completion"] == "Answer: A" and "Be brief." in pairs[0]["prompt"]


def test_the_files_have_the_standard_shapes(tmp_path, toy_mc_csv):
    from datasets import load_from_disk
    from trl.data_utils import is_conversational

    config = load_config()
    export(config, data=toy_mc_csv, out=tmp_path / "m.jsonl")
    first = json.loads((tmp_path / "m.jsonl").read_text().splitlines()[0])
    assert first["id"] == "t0" and [m["role"] for m in first["messages"]] == ["user", "assistant"]

    export(config, data=toy_mc_csv, out=tmp_path / "a.json")
    alpaca = json.loads((tmp_path / "a.json").read_text())
    assert set(alpaca[0]) == {"instruction", "input", "output"} and alpaca[0]["output"] == "Answer: A"

    export(config, data=toy_mc_csv, out=tmp_path / "hf")
    ds = load_from_disk(str(tmp_path / "hf"))
    assert ds.column_names == ["id", "prompt", "completion"] and len(ds) == 24
    assert is_conversational(ds[0])  # TRL's conversational prompt-completion type: SFTTrainer takes it as is


def test_denoised_jsonl_exports_its_denoised_labels(tmp_path):
    path = tmp_path / "denoised.jsonl"
    write_jsonl(path, [{"id": "x", "question": "Up or down?", "options": ["up", "down"], "task": "multiple_choice",
                        "label": "B", "original_label": "A", "source": "relabeled", "score": 0.2}])
    export(load_config(), data=path, out=tmp_path / "o.jsonl")
    assert load_export(tmp_path / "o.jsonl")[0]["completion"] == "Answer: B"


def test_cli_export_and_its_errors(tmp_path, toy_mc_csv, capsys):
    assert main(["export", "--data", str(toy_mc_csv), "--out", str(tmp_path / "x.data"), "--format", "messages",
                 "--limit", "5"]) == 0
    assert "wrote 5 samples as messages" in capsys.readouterr().out
    assert len(load_export(tmp_path / "x.data", "messages")) == 5
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    assert main(["export", "--data", str(toy_mc_csv), "--out", str(foreign)]) == 2
    assert "new or empty folder" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="unknown export format"):
        export(load_config(), data=toy_mc_csv, out=tmp_path / "y", fmt="parquet")
    with pytest.raises(InputError):
        export(load_config(), data=tmp_path / "missing.csv", out=tmp_path / "z.jsonl")


# --- robustft export RUN_DIR: the input's own format -----------------------------------------



def fake_run(run: Path, data: Path, new_labels: dict[str, str | None], **data_cfg) -> list:
    """A run directory as `robustft denoise` leaves it: summary.json with the resolved config, and
    denoised.jsonl holding the samples in `new_labels` (None: keep the original label)."""
    config = load_config(None, {"data.path": str(data), **{f"data.{k}": v for k, v in data_cfg.items()}})
    ds = load_dataset(config.data)
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"config": config.public_dict(), "data": str(ds.path),
                                                  "task": ds.task}))
    kept = [{"id": s.id, "question": s.question, "task": ds.task, "label": new_labels[s.id] or s.label,
             "original_label": s.label, "source": "clean" if new_labels[s.id] is None else "relabeled", "score": None}
            for s in ds.samples if s.id in new_labels]
    write_jsonl(run / "denoised.jsonl", kept)
    return ds.samples


def test_csv_comes_back_as_the_same_csv_with_answers_in_their_own_form(tmp_path):
    src = tmp_path / "quiz.csv"
    src.write_bytes('id,question,answer,options,note\r\n'
                    'q1,"Sky, by day?",C,"[""red"", ""green"", ""blue""]",kept as is\r\n'
                    'q2,Grass?,red,"[""red"", ""green"", ""blue""]",answer given as text\r\n'
                    'q3,Blood?,A,"[""red"", ""green"", ""blue""]",dropped\r\n'
                    'q4,"Multi\nline?",b,"[""red"", ""green"", ""blue""]",relabeled to same\r\n'.encode())
    fake_run(tmp_path / "run", src, {"q1": None, "q2": "B", "q4": "B"})
    result = export_run(tmp_path / "run")
    assert result.path == tmp_path / "run" / "export" / "quiz.csv" and result.format == "table (csv)"
    assert (result.count, result.changed) == (3, 1)
    lines = result.path.read_bytes().decode().split("\r\n")
    original = src.read_bytes().decode().split("\r\n")
    assert lines[0] == original[0] and lines[1] == original[1]  # header and an unchanged row: byte for byte
    assert lines[2] == 'q2,Grass?,green,"[""red"", ""green"", ""blue""]",answer given as text'
    assert lines[3:5] == original[4:6]  # the multi-line row, unchanged, with its own quoting
    rows = list(csv.DictReader(result.path.open(newline="", encoding="utf-8")))
    assert [r["id"] for r in rows] == ["q1", "q2", "q4"] and [r["answer"] for r in rows] == ["C", "green", "b"]


def test_messages_jsonl_keeps_every_other_byte(tmp_path):
    lines = [
        '{"id": "m1", "messages": [{"role": "system", "content": "Tutor."}, {"role": "user", "content": "Caf\\u00e9?"}, '
        '{"role": "assistant", "content": "A caf\\u00e9."}], "meta": {"k": [1, 2.50]}}',
        '{"messages":[{"content":"2+2?","role":"user"},{"role":"assistant","content":"5","weight":1}],"id":"m2"}',
        '{"id": "m3", "messages": [{"role": "user", "content": "3+3?"}, {"role": "assistant", "content": "6"}]}',
    ]
    src = tmp_path / "chat.jsonl"
    src.write_text("\n".join(lines) + "\n")
    fake_run(tmp_path / "run", src, {"m1": "A coffee shop.", "m2": "4", "m3": None}, task="text")
    result = export_run(tmp_path / "run", out=tmp_path / "out" / "clean.jsonl")
    assert (result.count, result.changed, result.format) == (3, 2, "messages (jsonl)")
    out = (tmp_path / "out" / "clean.jsonl").read_text().splitlines()
    assert out[2] == lines[2]
    assert out[0] == lines[0].replace('"A caf\\u00e9."', '"A coffee shop."')  # escapes kept as the file had them
    assert out[1] == lines[1].replace('"content":"5"', '"content":"4"')      # compact spacing and key order kept


def test_sharegpt_and_alpaca_json_keep_their_layout(tmp_path):
    sg = tmp_path / "sg.json"
    sg.write_text(json.dumps({"version": 1, "data": [
        {"conversations": [{"from": "human", "value": "Capital of Italy?"}, {"from": "gpt", "value": "Milan"}],
         "system": "Be brief."},
        {"conversations": [{"from": "human", "value": "Capital of Peru?"}, {"from": "gpt", "value": "Lima"}]},
        {"conversations": [{"from": "human", "value": "Capital of Chad?"}, {"from": "gpt", "value": "Lagos"}]},
    ]}, indent=2))
    fake_run(tmp_path / "r1", sg, {"0": "Rome", "1": None})
    result = export_run(tmp_path / "r1")
    assert result.format == "sharegpt (json)" and (result.count, result.changed) == (2, 1)
    text = result.path.read_text()
    back = json.loads(text)
    assert back["version"] == 1 and len(back["data"]) == 2 and back["data"][0]["system"] == "Be brief."
    assert [c["value"] for c in back["data"][0]["conversations"]] == ["Capital of Italy?", "Rome"]
    assert text == json.dumps({"version": 1, "data": [
        {"conversations": [{"from": "human", "value": "Capital of Italy?"}, {"from": "gpt", "value": "Rome"}],
         "system": "Be brief."},
        {"conversations": [{"from": "human", "value": "Capital of Peru?"}, {"from": "gpt", "value": "Lima"}]},
    ]}, indent=2)  # the same indentation and separators as the input

    al = tmp_path / "alpaca.json"
    al.write_text(json.dumps([{"instruction": "Translate: cat", "input": "", "output": "chien"},
                              {"instruction": "Translate: dog", "input": "", "output": "chien"}]))
    fake_run(tmp_path / "r2", al, {"0": "chat", "1": None})
    result = export_run(tmp_path / "r2")
    assert json.loads(result.path.read_text()) == [{"instruction": "Translate: cat", "input": "", "output": "chat"},
                                                   {"instruction": "Translate: dog", "input": "", "output": "chien"}]


def test_parquet_and_dataset_folders_keep_their_schema(tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"id": ["a", "b", "c"], "question": ["1+1?", "2+2?", "3+3?"], "answer": [2, 5, 6],
                      "weight": [0.5, 1.0, 1.5]})
    pq.write_table(table, tmp_path / "math.parquet")
    fake_run(tmp_path / "r1", tmp_path / "math.parquet", {"a": None, "b": "4"})
    result = export_run(tmp_path / "r1")
    back = pq.read_table(result.path)
    assert back.schema == table.schema and back.to_pylist() == [
        {"id": "a", "question": "1+1?", "answer": 2, "weight": 0.5},
        {"id": "b", "question": "2+2?", "answer": 4, "weight": 1.0}]

    folder = tmp_path / "saved"
    datasets.Dataset.from_list([{"messages": [{"role": "user", "content": "Hi?"},
                                              {"role": "assistant", "content": "Bye."}], "n": 1}]).save_to_disk(str(folder))
    fake_run(tmp_path / "r2", folder, {"0": "Hello."})
    result = export_run(tmp_path / "r2")
    assert result.path == tmp_path / "r2" / "export" / "saved"
    back = datasets.load_from_disk(str(result.path))
    assert back.features == datasets.load_from_disk(str(folder)).features
    assert back[0] == {"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}],
                       "n": 1}


def test_out_suffix_picks_another_file_type(tmp_path):
    src = tmp_path / "q.csv"
    src.write_text("question,answer\nQ1?,a\nQ2?,b\n")
    fake_run(tmp_path / "run", src, {"0": "x", "1": None})
    result = export_run(tmp_path / "run", out=tmp_path / "q.jsonl")
    assert read_jsonl(result.path) == [{"question": "Q1?", "answer": "x"}, {"question": "Q2?", "answer": "b"}]


def test_export_run_errors(tmp_path, capsys):
    src = tmp_path / "q.csv"
    src.write_text("question,answer\nQ1?,a\nQ2?,b\n")
    fake_run(tmp_path / "run", src, {"0": "x", "1": None})
    with pytest.raises(ConfigError, match="is the input itself"):
        export_run(tmp_path / "run", out=src)
    src.write_text("question,answer\nQ1 changed?,a\nQ2?,b\n")
    with pytest.raises(InputError, match="sample '0' .* has a different question there: the input changed"):
        export_run(tmp_path / "run")
    moved = tmp_path / "moved.csv"
    moved.write_text("question,answer\nQ1?,a\nQ2?,b\n")
    src.unlink()
    assert main(["export", str(tmp_path / "run")]) == 2
    assert "not there any more" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "run"), "--data", str(moved)]) == 0
    assert "wrote 2 samples (1 clean, 1 relabeled; 1 with a corrected answer) as table (csv)" in capsys.readouterr().out
    assert main(["export", str(tmp_path)]) == 2
    assert "no summary.json" in capsys.readouterr().err
    assert main(["export", "--data", str(moved), "--out", str(tmp_path / "o.jsonl"), "--format", "input"]) == 2
    assert "needs the run directory" in capsys.readouterr().err
    assert main(["export"]) == 2
    assert "RUN_DIR" in capsys.readouterr().err


def test_run_dir_with_a_training_pair_format(tmp_path):
    src = tmp_path / "q.csv"
    src.write_text("question,answer\nQ1?,a\nQ2?,b\n")
    fake_run(tmp_path / "run", src, {"0": "x", "1": None})
    result = export_run(tmp_path / "run", fmt="messages")
    assert result.path == tmp_path / "run" / "export" / "fine_tuning_set.jsonl"
    assert [p["completion"] for p in load_export(result.path)] == ["Answer: x", "Answer: b"]


def test_column_flags_map_the_data(tmp_path, capsys):
    src = tmp_path / "odd.csv"
    src.write_text("key,prompt,target\nk1,What is 2+2?,4\n")
    assert main(["export", "--data", str(src), "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "missing column 'question'" in capsys.readouterr().err
    assert main(["export", "--data", str(src), "--out", str(tmp_path / "o.jsonl"), "--question-column", "prompt",
                 "--answer-column", "target", "--id-column", "key"]) == 0
    assert [(r["id"], r["messages"][-1]["content"]) for r in read_jsonl(tmp_path / "o.jsonl")] == [("k1", "Answer: 4")]
    # denoise takes the same flags: with them the data loads and the run gets as far as the (absent) server.
    args = ["denoise", "--data", str(src), "--model", "m", "--base-url", "http://127.0.0.1:9/v1",
            "--out", str(tmp_path / "run"), "--quiet"]
    assert main(args) == 2 and "missing column 'question'" in capsys.readouterr().err
    assert main(args + ["--question-column", "prompt", "--answer-column", "target"]) == 2
    assert "cannot use the base model" in capsys.readouterr().err


# --- a messages file through denoise and export, end to end ----------------------------------


def test_a_messages_file_round_trips_through_denoise_and_export(tmp_path):
    from robustft.data import read_csv
    from robustft.sim import SimServer

    noisy = read_csv(ARC / "noisy30.csv")[:60]
    gold = {r["id"]: r["answer"] for r in read_csv(ARC / "labeled.csv")[:60]}
    lines = []
    for i, row in enumerate(noisy):
        options = json.loads(row["options"])
        earlier = [{"role": "user", "content": "Can you help me with science homework?"},
                   {"role": "assistant", "content": "Of course. What is the question?"}] if i % 3 == 0 else []
        record = {"id": row["id"], "messages": [
            {"role": "system", "content": "You are a careful science tutor."}, *earlier,
            {"role": "user", "content": row["question"]},
            {"role": "assistant", "content": options[ord(row["answer"]) - 65]}],  # the answer written out
            "options": options, "source": "arc", "grade": i % 5}
        lines.append(json.dumps(record, ensure_ascii=False))
    chat = tmp_path / "arc chat.jsonl"
    chat.write_text("\n".join(lines) + "\n", encoding="utf-8")

    with SimServer(ARC / "labeled.csv", accuracy=0.85, seed=3) as sim:
        code = main(["denoise", "--data", str(chat), "--model", "sim", "--base-url", sim.base_url,
                     "--out", str(tmp_path / "run"), "--quiet"])
    assert code == 0
    denoised = {r["id"]: r for r in read_jsonl(tmp_path / "run" / "denoised.jsonl")}
    assert main(["export", str(tmp_path / "run")]) == 0
    out_lines = (tmp_path / "run" / "export" / "arc chat.jsonl").read_text(encoding="utf-8").splitlines()
    by_id = {json.loads(line)["id"]: line for line in lines}
    assert [json.loads(x)["id"] for x in out_lines] == [json.loads(x)["id"] for x in lines
                                                       if json.loads(x)["id"] in denoised]  # input order, kept only
    changed = 0
    for line in out_lines:
        out, before = json.loads(line), json.loads(by_id[json.loads(line)["id"]])
        record = denoised[out["id"]]
        expected_answer = before["options"][ord(record["label"]) - 65]
        assert out["messages"][-1]["content"] == expected_answer
        if record["label"] == record["original_label"]:
            assert line == by_id[out["id"]]  # untouched: byte for byte
            continue
        changed += 1
        # Only the last assistant turn's content differs; with it put back, the line is the input's.
        assert replace_value(line, ["messages", len(before["messages"]) - 1, "content"],
                             before["messages"][-1]["content"]) == by_id[out["id"]]
        assert list(out) == list(before) and out["messages"][:-1] == before["messages"][:-1]
    assert changed >= 5
    right_in = sum(json.loads(x)["messages"][-1]["content"] == json.loads(x)["options"][ord(gold[json.loads(x)["id"]]) - 65]
                   for x in lines) / len(lines)
    right_out = sum(json.loads(x)["messages"][-1]["content"] == json.loads(x)["options"][ord(gold[json.loads(x)["id"]]) - 65]
                    for x in out_lines) / len(out_lines)
    assert right_out >= right_in + 0.15, (right_in, right_out)
