"""The command line end to end: real CLI process, real HTTP (robustft.sim), real Chroma and MiniLM.
The 200-row ARC run reads the shared benchmark data, or the rows carried in tests/data/shared."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from robustft.cli import main
from robustft.sim import SimServer

from shared_data import ARC, shared_file


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def gold_labels(n: int) -> dict[str, str]:
    with open(ARC / "labeled.csv", newline="", encoding="utf-8") as f:
        return {row["id"]: row["answer"] for row, _ in zip(csv.DictReader(f), range(n))}


@pytest.fixture(scope="module")
def arc_server():
    with SimServer(shared_file("arc", "labeled.csv"), accuracy=0.8, seed=1) as sim:
        yield sim


@pytest.fixture(scope="module")
def arc_run(arc_server, tmp_path_factory):
    out = tmp_path_factory.mktemp("arc") / "run"
    cmd = [sys.executable, "-m", "robustft", "denoise", "--data", str(ARC / "noisy30.csv"), "--limit", "200",
           "--model", "sim-expert", "--base-url", arc_server.base_url, "--out", str(out), "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return proc, out, cmd


def test_denoise_cleans_200_arc_rows_well_above_the_input_accuracy(arc_run):
    proc, out, _ = arc_run
    assert proc.returncode == 0, proc.stderr
    gold = gold_labels(200)
    samples = read_jsonl(out / "samples.jsonl")
    denoised = read_jsonl(out / "denoised.jsonl")
    summary = json.loads((out / "summary.json").read_text())
    input_acc = sum(s["original_label"] == gold[s["id"]] for s in samples) / len(samples)
    output_acc = sum(d["label"] == gold[d["id"]] for d in denoised) / len(denoised)
    assert 0.65 <= input_acc <= 0.75  # noisy30
    assert output_acc >= input_acc + 0.15, (input_acc, output_acc)
    assert len(denoised) >= 120  # cleaning, not deleting
    # The counts add up, and the files agree with them.
    assert summary["total"] == 200 == len(samples)
    assert summary["clean"] + summary["relabeled"] + summary["confirmed"] + summary["dropped"] + summary["failed"] == 200
    assert summary["noisy"] == sum(s["decision"] == "noisy" for s in samples)
    assert len(denoised) == summary["clean"] + summary["relabeled"] + summary["confirmed"]
    assert {d["source"] for d in denoised} <= {"clean", "relabeled", "confirmed"}
    # a relabel is "relabeled" only when it changed the label, "confirmed" when it kept it
    assert all((d["label"] != d["original_label"]) == (d["source"] == "relabeled") for d in denoised if d["source"] != "clean")
    assert summary["model_calls"]["base"] == 200
    assert "fine-tuning set: " in proc.stdout


def test_rerunning_the_same_command_resumes_without_model_calls(arc_run, arc_server):
    _, out, cmd = arc_run
    before = (out / "samples.jsonl").read_text()
    served = arc_server.requests
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "200 of 200 samples already finished" in proc.stderr
    assert arc_server.requests == served
    assert (out / "samples.jsonl").read_text() == before


def test_an_unreachable_server_is_a_clear_error_not_200_failures(tmp_path, toy_mc_csv, capsys):
    code = main(["denoise", "--data", str(toy_mc_csv), "--limit", "5", "--model", "m",
                 "--base-url", "http://127.0.0.1:9/v1", "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert "cannot use the base model 'm' at http://127.0.0.1:9/v1" in err and "Traceback" not in err


BAD_INPUTS = {
    "empty.csv": (b"", "empty"),
    "no_question.csv": (b"id,prompt,answer\n1,hi,A\n", "question"),
    "options_not_list.csv": (b'id,question,answer,options\n1,q,A,"not a list"\n', "options"),
    "label_not_option.csv": (b'id,question,answer,options\n1,q,A,"[""x"", ""y""]"\n2,q2,Q,"[""x"", ""y""]"\n', "row 2"),
    "truncated.jsonl": (b'{"question": "q", "answer": "a"}\n{"question": "q2", "ans', "line 2"),
    "latin1.csv": ("question,answer\ncaf\u00e9,a\n".encode("latin-1"), "UTF-8"),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_exits_2_naming_the_file_and_place(tmp_path, capsys, name):
    data, needle = BAD_INPUTS[name]
    path = tmp_path / name
    path.write_bytes(data)
    code = main(["denoise", "--data", str(path), "--model", "m", "--base-url", "http://127.0.0.1:9/v1",
                 "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert name in err and needle in err and "Traceback" not in err
    assert "fix:" in err


def test_bad_config_exits_2(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("denoise:\n  beta: 2\n")
    assert main(["denoise", "--config", str(cfg)]) == 2
    assert "denoise.beta" in capsys.readouterr().err


def test_missing_out_is_a_clear_error(toy_mc_csv, capsys):
    assert main(["denoise", "--data", str(toy_mc_csv), "--model", "m", "--base-url", "http://x/v1"]) == 2
    assert "--out" in capsys.readouterr().err


def test_help_lists_the_contract_flags(capsys):
    with pytest.raises(SystemExit):
        main(["denoise", "--help"])
    text = capsys.readouterr().out
    for flag in ("--config", "--data", "--out", "--model", "--base-url", "--concurrency", "--limit", "--max-tokens"):
        assert flag in text


@pytest.mark.parametrize("task", ["numeric", "text"])
def test_free_form_tasks_run_end_to_end(tmp_path, capsys, task):
    import random

    rng = random.Random(7)
    gold, noisy = tmp_path / "gold.jsonl", tmp_path / "noisy.jsonl"
    rows = []
    for i in range(40):
        if task == "numeric":
            q, a = f"What is {i} times {i + 3}, computed carefully for case {i}?", str(i * (i + 3))
            wrong = str(i * (i + 3) + 7)
        else:
            q, a = f"Which colour is associated with item number {i} in the catalogue?", ["red", "green", "blue"][i % 3]
            wrong = "purple"
        rows.append((q, a, wrong if rng.random() < 0.3 else a))
    gold.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a, _ in rows))
    noisy.write_text("".join(json.dumps({"question": q, "answer": n}) + "\n" for q, _, n in rows))
    with SimServer(gold, accuracy=0.85, seed=2) as sim:
        code = main(["denoise", "--data", str(noisy), "--model", "sim", "--base-url", sim.base_url,
                     "--out", str(tmp_path / "run"), "--quiet"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["task"] == task
    denoised = read_jsonl(tmp_path / "run" / "denoised.jsonl")
    truth = {str(i): a for i, (_, a, _) in enumerate(rows)}
    input_acc = sum(n == a for _, a, n in rows) / len(rows)
    output_acc = sum(d["label"] == truth[d["id"]] for d in denoised) / len(denoised)
    assert output_acc > input_acc + 0.1 and "options" not in denoised[0]


