"""`robustft run CONFIG`: denoise -> train -> eval with both baselines, end to end on a few rows."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from robustft.cli import main
from robustft.config import load_config, resolve_config_paths
from robustft.finetune.experiment import METHOD_DIRS
from robustft.sim import DEMO_DATA, SimServer

REPO = Path(__file__).resolve().parent.parent


def write_config(path: Path, base_url: str, model_dir: Path, **experiment) -> Path:
    config = {
        "data": {"path": str(DEMO_DATA / "demo.csv"), "limit": 12},
        "model": {"provider": "openai", "name": "sim-expert", "base_url": base_url, "max_retries": 0},
        "denoise": {"concurrency": 8},
        "train": {"model": str(model_dir), "max_steps": 2, "batch_size": 4, "gradient_accumulation_steps": 1,
                  "learning_rate": 1e-2},
        "eval": {"max_tokens": 6},
        "experiment": {"test_data": str(DEMO_DATA / "demo_gold.csv"), "test_limit": 6, **experiment},
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_run_end_to_end_then_resumes_without_redoing_anything(tmp_path, tiny_model_dir, capsys):
    out = tmp_path / "exp"
    with SimServer(DEMO_DATA / "demo_gold.csv", accuracy=0.8) as sim:
        config_file = write_config(tmp_path / "run.yaml", sim.base_url, tiny_model_dir)
        assert main(["run", str(config_file), "--out", str(out), "--quiet"]) == 0
        printed = capsys.readouterr()
        calls = sim.requests
        assert calls > 0

        results = json.loads((out / "results.json").read_text())
        assert [m["method"] for m in results["methods"]] == ["base", "noisy", "robustft"]
        for row in results["methods"]:
            assert row["total"] == 6 and 0.0 <= row["accuracy"] <= 1.0
            assert (out / METHOD_DIRS[row["method"]] / "eval" / "predictions.jsonl").is_file()
        assert results["methods"][1]["train_samples"] == 12
        kept = results["denoise"]["clean"] + results["denoise"]["relabeled"] + results["denoise"]["confirmed"]
        assert results["methods"][2]["train_samples"] == kept and results["denoise"]["total"] == 12
        assert (out / "denoise" / "denoised.jsonl").is_file()
        for folder in ("sft-noisy", "sft-robustft"):
            assert (out / folder / "adapter_model.safetensors").is_file()
        assert "| SFT on the RobustFT output |" in printed.out and "test accuracy" in printed.out
        assert "[1/6] denoise" in printed.err and "[6/6] evaluate" in printed.err
        assert (out / "results.md").read_text().count("|") > 10

        # Again: the denoise run resumes with no model call, training and evaluation are skipped.
        assert main(["run", str(config_file), "--out", str(out), "--quiet"]) == 0
        again = capsys.readouterr()
        assert sim.requests == calls
        assert again.err.count("already trained") == 2 and again.err.count("already evaluated") == 3
        assert json.loads((out / "results.json").read_text())["methods"] == results["methods"]


def test_run_with_baselines_only_needs_no_expert(tmp_path, tiny_model_dir, capsys):
    config_file = write_config(tmp_path / "run.yaml", "http://127.0.0.1:9/v1", tiny_model_dir, methods=["base"])
    assert main(["run", str(config_file), "--out", str(tmp_path / "exp"), "--quiet"]) == 0
    assert "| model as it is (no fine-tuning) | - |" in capsys.readouterr().out


def test_run_config_errors_name_the_field(tmp_path, capsys):
    (tmp_path / "a.yaml").write_text("data: {path: x.csv}\ntrain: {model: m}\n")
    assert main(["run", str(tmp_path / "a.yaml"), "--out", str(tmp_path / "o")]) == 2
    assert "experiment.test_data" in capsys.readouterr().err
    (tmp_path / "b.yaml").write_text("experiment: {tset_data: x.csv}\n")
    assert main(["run", str(tmp_path / "b.yaml")]) == 2
    assert "experiment.tset_data" in capsys.readouterr().err


def test_relative_paths_are_relative_to_the_config_file(tmp_path):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "models" / "tiny").mkdir(parents=True)
    config = load_config(None, {"experiment.test_data": "test.csv", "train.model": "models/tiny"})
    resolved = resolve_config_paths(config, tmp_path / "cfg" / "run.yaml")
    assert resolved.experiment.test_data == tmp_path / "cfg" / "test.csv"
    assert resolved.train.model == str(tmp_path / "cfg" / "models" / "tiny")
    hub = resolve_config_paths(load_config(None, {"train.model": "meta-llama/Llama-3.1-8B-Instruct"}),
                               tmp_path / "cfg" / "run.yaml")
    assert hub.train.model == "meta-llama/Llama-3.1-8B-Instruct"  # no such folder: a hub name, kept


def test_eval_and_run_read_a_configs_paths_alike(tmp_path, tiny_model_dir, monkeypatch, capsys):
    """Relative paths in a config file are relative to the file, for every command (the test set
    too): from another directory, `eval --config` scores the same file `run` does."""
    cfg = tmp_path / "cfg"
    (cfg / "models").mkdir(parents=True)
    (cfg / "models" / "tiny").symlink_to(tiny_model_dir)
    (cfg / "test.csv").write_bytes((DEMO_DATA / "demo_gold.csv").read_bytes())
    (cfg / "exp.yaml").write_text(yaml.safe_dump({
        "data": {"path": "test.csv"}, "train": {"model": "models/tiny"}, "eval": {"max_tokens": 4},
        "experiment": {"test_data": "test.csv", "test_limit": 4, "methods": ["base"]}}), encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    assert main(["eval", "--config", "../cfg/exp.yaml", "--model", str(tiny_model_dir), "--limit", "4",
                 "--out", "eval", "--quiet"]) == 0, capsys.readouterr().err
    assert main(["run", "../cfg/exp.yaml", "--out", "exp", "--quiet"]) == 0, capsys.readouterr().err
    evaluated = json.loads((elsewhere / "eval" / "result.json").read_text())
    run = json.loads((elsewhere / "exp" / "results.json").read_text())
    assert Path(evaluated["data"]).resolve() == Path(run["test_data"]).resolve() == (cfg / "test.csv").resolve()
    assert Path(run["model"]).resolve() == tiny_model_dir.resolve()
    assert run["methods"][0]["accuracy"] == evaluated["accuracy"] and evaluated["total"] == 4


def test_paper_configs_are_valid(tmp_path):
    configs = sorted((REPO / "examples" / "paper").glob("*.yaml"))
    assert len(configs) == 6
    for path in configs:
        config = load_config(path)
        assert config.train.model and config.experiment.test_data and config.model.base_url
        assert config.experiment.methods == ["base", "noisy", "robustft"]
