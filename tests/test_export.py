"""`robustft export`: the fine-tuning set as messages JSONL, Alpaca JSON and a Hugging Face dataset."""

from __future__ import annotations

import json

import pytest

from robustft.cli import main
from robustft.config import load_config
from robustft.data import write_jsonl
from robustft.errors import ConfigError, InputError
from robustft.finetune.export import export, infer_format, load_export
from robustft.prompts import PromptLibrary
from robustft.finetune.train import load_training_set, sft_examples


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
