"""The dry run's estimate of calls, tokens and cost: between the noise-rate range's ends from the
prompts rendered for the rows, and calibrated by a paid pilot (`--pilot N`) against the simulated
experts, where its prompt tokens must come within 15 % of the real run's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from robustft.agents.cost import Prices, usd
from robustft.cli import main
from robustft.config import load_config
from robustft.data import load_dataset
from robustft.demo import DEMO_DATA, DEMO_GOLD
from robustft.prompts import PromptLibrary
from robustft.run.dryrun import estimate
from robustft.sim import SimServer


def test_the_expected_figures_run_from_every_sample_clean_to_every_sample_noisy(toy_mc_csv):
    config = load_config(None, {"data": {"path": str(toy_mc_csv)}, "model": {"max_tokens": 100}})
    est = estimate(config, load_dataset(config.data), PromptLibrary())
    prices = {role: Prices(input=2.0, output=10.0, cached_input=2.0) for role in ("base", "reasoning", "context",
                                                                                 "reviewer")}
    clean, noisy, half = (est.expected(f, None, prices) for f in (0.0, 1.0, 0.5))
    assert (clean["calls"], noisy["calls"]) == (est.calls(False), est.calls(True))
    assert (clean["prompt_tokens"], noisy["prompt_tokens"]) == (est.tokens_in(False), est.tokens_in(True))
    assert noisy["completion_tokens"] == est.tokens_out_max(True)
    assert half["calls"] == (clean["calls"] + noisy["calls"]) / 2
    assert noisy["cost_usd"] == pytest.approx((est.tokens_in(True) * 2 + est.tokens_out_max(True) * 10) / 1e6)
    assert est.expected(0.5, None, {})["cost_usd"] is None


def test_the_dry_run_gives_the_noise_range_and_the_cost(tmp_path, toy_mc_csv, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("model:\n  price_input_per_mtok: 3\n  price_output_per_mtok: 15\n"
                      "denoise:\n  estimate_noise_rate: [0.2, 0.3]\n")
    assert main(["denoise", "--dry-run", "--config", str(config), "--data", str(toy_mc_csv)]) == 0
    text = capsys.readouterr().out
    assert "with 20% to 30% of the samples flagged noisy (denoise.estimate_noise_rate" in text
    cost = next(line for line in text.splitlines() if line.strip().startswith("cost "))
    low, high = (float(x.strip("$")) for x in cost.split()[1::2])
    assert 0 < low < high
    assert main(["denoise", "--dry-run", "--config", str(config), "--data", str(toy_mc_csv), "--batch-api"]) == 0
    batch = next(line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("cost "))
    assert [float(x.strip("$")) for x in batch.split()[1::2]] == pytest.approx([low / 2, high / 2], abs=0.006)
    assert main(["denoise", "--dry-run", "--data", str(toy_mc_csv)]) == 0
    assert "no cost: set model.price_input_per_mtok" in capsys.readouterr().out


def test_pilot_needs_the_dry_run_and_a_run_directory(toy_mc_csv, capsys):
    assert main(["denoise", "--data", str(toy_mc_csv), "--pilot", "5"]) == 2
    assert "--pilot N goes with --dry-run" in capsys.readouterr().err
    assert main(["denoise", "--dry-run", "--data", str(toy_mc_csv), "--pilot", "5"]) == 2
    assert "--pilot needs --out DIR" in capsys.readouterr().err


def test_a_pilot_calibrates_the_estimate_within_15_percent_of_the_real_run(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("model:\n  price_input_per_mtok: 3\n  price_output_per_mtok: 15\n")
    out = tmp_path / "run"
    with SimServer(DEMO_GOLD, accuracy=0.8, seed=0) as sim:
        args = ["denoise", "--config", str(config), "--data", str(DEMO_DATA), "--model", "sim", "--base-url",
                sim.base_url, "--embedding-base-url", sim.base_url, "--embedding-model", "e", "--out", str(out),
                "--quiet"]
        assert main([*args, "--dry-run", "--pilot", "20"]) == 0
        text = capsys.readouterr().out
        assert len((out / "samples.jsonl").read_text().splitlines()) == 20  # the pilot ran, for real
        pilot_requests = sim.requests
        assert main(args) == 0  # the full run: the pilot's 20 rows cost nothing again
        capsys.readouterr()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed_samples"] == 20 and summary["this_run"]["calls_paid"] == sim.requests - pilot_requests - 1

    def figure(label: str) -> tuple[float, float, float]:
        expected = text[text.index("\nexpected, as the pilot"):]
        line = next(x for x in expected.splitlines() if x.strip().startswith(label + " "))
        point, low, _, high = line.split(label, 1)[1].replace("(", "").replace(")", "").split()
        return tuple(float(v.replace(",", "").strip("$")) for v in (point, low, high))

    prompt, low, high = figure("prompt tokens")
    actual = summary["tokens"]["prompt"]
    assert abs(prompt - actual) <= 0.15 * actual, (prompt, actual)
    assert low <= actual <= high
    cost, low, high = figure("cost")
    assert low <= summary["cost_usd"] <= high or abs(cost - summary["cost_usd"]) <= 0.15 * summary["cost_usd"]
    assert "dry run after a pilot: the first 20 rows were run for real" in text
    assert usd(cost).startswith("$")
