"""Multiple-choice layouts recognised by shape (robustft.data.choices): each layout in tests/data/choices
is read as multiple choice with the right options and letter labels, and written back in its own form."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from robustft.cli import main
from robustft.config import DataConfig
from robustft.data import load_dataset, load_source
from robustft.data.writeback import write_back
from robustft.errors import InputError

DATA = Path(__file__).parent / "data" / "choices"
PLANETS = ["Venus", "Earth", "Mars", "Jupiter"]

# file -> (settings, the layout as described, the second sample's (options, label), how the
# first sample's answer reads back once relabeled to "C")
LAYOUTS = {
    "mmlu_columns.csv": ({}, "options from columns A, B, C, D; answers in 'answer'", (PLANETS, "A"), "C"),
    "option_underscore.csv": ({}, "columns option_a, option_b, option_c", (["Mars", "Earth", "Venus"], "A"), "C"),
    "choice_one_based.csv": ({}, "answers in 'answer' are 1-based positions (1 = A)", (PLANETS, "C"), "3"),
    "medmcqa_opa.jsonl": ({}, "columns opa, opb, opc, opd; answers in 'cop' are 0-based", (PLANETS, "C"), 2),
    "hub_choices.jsonl": ({}, "a list in column 'choices'; answers in 'answer' are 0-based", (PLANETS, "A"), 2),
    "endings_label.jsonl": ({}, "a list in column 'endings'; answers in 'label' are 0-based", (None, "C"), "2"),
    "arc.jsonl": ({}, "ARC's {text, label} in column 'choices'; answers in 'answerKey'", (PLANETS, "A"), "C"),
    "custom_columns.csv": ({"options_columns": ["first", "second", "third"]}, "columns first, second, third",
                           (["Mars", "Earth", "Venus"], "A"), "C"),
}


def _read_rows(path: Path) -> list:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    return path.read_text().splitlines()


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_each_layout_is_read_as_multiple_choice_and_written_back_in_its_own_form(name, tmp_path):
    settings, described, (options, label), written = LAYOUTS[name]
    cfg = DataConfig(path=DATA / name, **settings)
    table, ds = load_source(cfg)
    assert ds.task == "multiple_choice" and described in ds.source.options_layout.describe()
    second = ds.samples[1]
    assert second.label == label and (options is None or second.options == options)
    assert all(s.options and s.label in "ABCD"[:len(s.options)] for s in ds.samples)

    out = tmp_path / name
    result = write_back(table, ds, {s.id: ("C" if s.row == 0 else s.label) for s in ds.samples}, out)
    assert result.changed == 1 and result.count == len(ds.samples)
    before, after = _read_rows(DATA / name), _read_rows(out)
    assert after[1:] == before[1:] or after[2:] == before[2:]  # only the first sample's line changes
    if out.suffix == ".jsonl":
        answer_key = ds.source.answer_column
        assert after[0][answer_key] == written and type(after[0][answer_key]) is type(before[0][answer_key])
        assert {k: v for k, v in after[0].items() if k != answer_key} == \
               {k: v for k, v in before[0].items() if k != answer_key}
    else:
        assert after[1].rsplit(",", 1)[1] == written
    again = load_dataset(DataConfig(path=out, **settings))
    assert again.samples[0].label == "C" and [s.options for s in again.samples] == [s.options for s in ds.samples]


def test_arc_keeps_its_digit_keys_when_relabeled(tmp_path):
    table, ds = load_source(DataConfig(path=DATA / "arc.jsonl"))
    out = tmp_path / "arc.jsonl"
    write_back(table, ds, {"Mercury_2": "C"}, out)
    assert json.loads(out.read_text().splitlines()[0])["answerKey"] == "3"  # ARC's label of the third option


def test_letters_without_options_stop_before_any_call_naming_the_likely_columns(tmp_path, capsys):
    with pytest.raises(InputError) as e:
        load_dataset(DataConfig(path=DATA / "letters_no_options.csv"))
    message = str(e.value)
    assert "every answer is an option letter, but no options were found" in message
    assert "'opt1', 'opt2', 'opt3', 'opt4'" in message and "data.options_columns" in message
    # from the command line: exit 2, the fix named, no model asked (there is none at this address)
    code = main(["denoise", "--data", str(DATA / "letters_no_options.csv"), "--out", str(tmp_path / "run"),
                 "--model", "m", "--base-url", "http://127.0.0.1:9/v1"])
    assert code == 2 and "data.options_columns (--options-columns)" in capsys.readouterr().err
    assert main(["denoise", "--data", str(DATA / "letters_no_options.csv"), "--dry-run",
                 "--options-columns", "opt1,opt2,opt3,opt4", "--model", "m", "--base-url", "http://127.0.0.1:9/v1"]) == 0
    assert "C. 5" in capsys.readouterr().out


def test_small_integer_counts_stay_numeric_when_no_column_looks_like_options(tmp_path):
    path = tmp_path / "counts.csv"
    path.write_text("question,answer\nHow many legs has a cat?,4\nHow many wheels has a bike?,2\n")
    assert load_dataset(DataConfig(path=path)).task == "numeric"


def test_options_columns_naming_a_missing_column_is_an_error(tmp_path):
    with pytest.raises(InputError, match="data.options_columns names 'E', not in the data"):
        load_dataset(DataConfig(path=DATA / "mmlu_columns.csv", options_columns=["A", "B", "E"]))


def test_the_dry_run_states_the_layout_and_how_integer_answers_are_read(capsys):
    assert main(["denoise", "--data", str(DATA / "choice_one_based.csv"), "--dry-run", "--model", "m",
                 "--base-url", "http://127.0.0.1:9/v1"]) == 0
    out = capsys.readouterr().out
    assert ("options from columns choice1, choice2, choice3, choice4; answers in 'answer' are 1-based positions "
            "(1 = A)") in out
    assert "A. 3\nB. 4\nC. 5\nD. 6" in out


def test_an_mmlu_csv_is_denoised_and_exported_in_its_own_columns(tmp_path, capsys):
    """End to end with the simulated experts: MMLU's own CSV layout (question, A, B, C, D, answer) is
    multiple choice (the options reach the prompts), and `export` writes the same columns back."""
    from robustft.data import read_jsonl
    from robustft.sim import SimServer

    rows = [(f"Which option names item {i} correctly?", [f"thing {i}{c}" for c in "wxyz"], "ABCD"[i % 4])
            for i in range(12)]
    gold = tmp_path / "gold.csv"
    given = tmp_path / "mmlu.csv"
    header = "question,A,B,C,D,answer\n"
    gold.write_text(header + "".join(f"{q},{','.join(o)},{a}\n" for q, o, a in rows))
    wrong = {0: "B", 5: "D"}
    given.write_text(header + "".join(f"{q},{','.join(o)},{wrong.get(i, a)}\n" for i, (q, o, a) in enumerate(rows)))
    out = tmp_path / "run"
    with SimServer(gold, accuracy=1.0, seed=2) as sim:
        assert main(["denoise", "--data", str(given), "--model", "sim", "--base-url", sim.base_url, "--out", str(out),
                     "--quiet", "--beta", "1"]) == 0
    records = {r["id"]: r for r in read_jsonl(out / "samples.jsonl")}
    assert "A. thing 0w" in records["0"]["nodes"]["base"]["prompt"]
    assert {sid for sid, r in records.items() if r["decision"] == "noisy"} == {"0", "5"}
    assert main(["export", str(out), "--out", str(tmp_path / "clean.csv")]) == 0
    lines = (tmp_path / "clean.csv").read_text().splitlines()
    assert lines[0] == header.strip() and lines[1].endswith(",A") and lines[6].endswith(",B")
    assert lines[2:6] == given.read_text().splitlines()[2:6]
