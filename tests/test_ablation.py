"""Ablation switches (the paper's Table 3), `robustft ablate`, and the shared response store."""

from __future__ import annotations

import json

import pytest

from robustft.inspect.ablation import VARIANTS, format_table, parse_variants, run_ablation
from robustft.agents.runtime import AgentRuntime
from robustft.cli import main
from robustft.errors import ConfigError
from robustft.graph.build import build_graph
from robustft.prompts import PromptLibrary

from fakes import config_for, fake_pool, make_dataset
from recorded import NOISY, REPLIES, write_gold

# --- the switches change the graph -------------------------------------------------------------

# With the barrier: detection enters at base and ends after the checker; relabeling re-enters at context.
ENTRY = ["__start__ -.-> base;", "__start__ -.-> context;", "base -.-> __end__;", "checker -.-> __end__;"]
DETECT = ["base -.-> reasoning;", "reasoning -.-> __end__;", "reasoning -.-> checker;"]
RELABEL = ["context -.-> __end__;", "context -.-> reviewer;", "reviewer -.-> __end__;"]
EDGES = {
    "full": ENTRY + DETECT + RELABEL,
    "reasoning": ENTRY + ["base -.-> checker;"] + RELABEL,
    "checker": ENTRY + DETECT + RELABEL,  # same wiring: the checker node flags every sample
    # No context relabeler, no barrier: one pass from base to the relabel.
    "context": ["__start__ -.-> base;", "base -.-> __end__;", *DETECT, "checker -.-> __end__;",
                "checker -.-> reasoning_relabel;", "reasoning_relabel -.-> __end__;"],
    "reviewer": ENTRY + DETECT + ["context -.-> __end__;"],
    "selection": ENTRY + DETECT + RELABEL,  # selection happens in the runner, after the graph
}


@pytest.mark.parametrize("switch", list(EDGES))
def test_each_switch_draws_the_intended_graph(tmp_path, switch):
    config = config_for(tmp_path, ablate=[] if switch == "full" else [switch])
    pool, _ = fake_pool(config, {})
    rt = AgentRuntime(config=config, task="multiple_choice", pool=pool, prompts=PromptLibrary())
    drawn = build_graph(rt).compile().get_graph().draw_mermaid().splitlines()
    assert sorted(line.strip() for line in drawn if "-->" in line or ".->" in line) == sorted(EDGES[switch])


def test_variant_names():
    assert parse_variants(None) == VARIANTS
    assert parse_variants("full, no-reviewer+no-selection") == {"full": [], "no-reviewer+no-selection": ["reviewer", "selection"]}
    with pytest.raises(ConfigError, match="unknown variant 'no-magic'"):
        parse_variants("full,no-magic")
    with pytest.raises(ConfigError, match="listed twice"):
        parse_variants("full,full")


# --- robustft ablate ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ablation(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ablation")
    config = config_for(tmp)
    pool, fakes = fake_pool(config, REPLIES)
    result = run_ablation(config, dict(VARIANTS), tmp / "abl", gold=write_gold(tmp / "gold.csv"), pool=pool,
                          dataset=make_dataset(NOISY), progress=False, preflight=False, log=lambda m: None)
    return result, fakes


def records(variant):
    return {r["id"]: r for r in (json.loads(x) for x in (variant.out_dir / "samples.jsonl").read_text().splitlines())}


def test_every_variant_is_a_complete_run(ablation):
    result, _ = ablation
    by = {v.name: v for v in result.variants}
    assert list(by) == list(VARIANTS)
    for v in result.variants:
        assert (v.out_dir / "denoised.jsonl").exists() and v.out_dir == result.out_dir / v.name
        assert v.summary["config"]["denoise"]["ablate"] == VARIANTS[v.name]
    assert by["full"].summary["relabeled"] == 2 and by["full"].summary["dropped"] == 2


def test_no_reasoning_checks_the_base_answer_alone(ablation):
    recs = records({v.name: v for v in ablation[0].variants}["no-reasoning"])
    assert all("reasoning" not in r["nodes"] for r in recs.values())
    assert recs["q3"]["decision"] == "noisy" and recs["q6"]["decision"] == "clean"
    assert "Answered directly: C" in recs["q2"]["nodes"]["reviewer"]["prompt"]  # the base answer


def test_no_checker_relabels_every_sample(ablation):
    v = {v.name: v for v in ablation[0].variants}["no-checker"]
    recs = records(v)
    assert all(r["decision"] == "noisy" for r in recs.values())
    assert "checker switched off" in recs["q0"]["decision_reason"]
    assert v.summary["selection"]["candidates"] == 12 and v.summary["relabeled"] + v.summary["confirmed"] == 6
    # a relabel that gives back the given label is counted as confirmed, not as relabeled
    assert all((r["label"] == r["original_label"]) == (r["status"] == "confirmed")
               for r in recs.values() if r["status"] in ("relabeled", "confirmed"))
    assert v.metrics["detection"]["recall"] == 1.0 and v.metrics["detection"]["precision"] == 4 / 12


def test_no_context_takes_the_reasoning_answer(ablation):
    recs = records({v.name: v for v in ablation[0].variants}["no-context"])
    assert all("context" not in r["nodes"] and "reviewer" not in r["nodes"] for r in recs.values())
    assert recs["q2"]["proposed_label"] == "C"  # the reasoning expert's (right) answer


def test_no_reviewer_takes_the_context_answer(ablation):
    recs = records({v.name: v for v in ablation[0].variants}["no-reviewer"])
    assert all("reviewer" not in r["nodes"] for r in recs.values())
    assert recs["q2"]["proposed_label"] == "D" and recs["q2"]["nodes"]["context"]["answer"] == "D"


def test_no_selection_keeps_every_relabel(ablation):
    v = {v.name: v for v in ablation[0].variants}["no-selection"]
    assert (v.summary["relabeled"] + v.summary["confirmed"], v.summary["dropped"]) == (4, 0)
    assert v.summary["selection"]["enabled"] is False


def test_a_prompt_is_paid_once_across_variants(ablation):
    result, fakes = ablation
    by = {v.name: v for v in result.variants}
    assert len(fakes["base"].calls) == 12 and len(fakes["reasoning"].calls) == 12
    # Later variants reuse every base and reasoning call; only new prompts are paid.
    for name in ("no-context", "no-reviewer", "no-selection"):
        assert by[name].calls_paid == 0, name
        assert by[name].calls_reused == by[name].summary["model_calls"]["total"] > 0
    # Without reasoning the reviewer sees the base answer, so its prompts are new; nothing else is.
    calls = by["no-reasoning"].summary["model_calls"]
    assert 0 < by["no-reasoning"].calls_paid <= calls.get("reviewer", 0)
    paid_checker = by["no-checker"].calls_paid
    assert 0 < paid_checker < by["no-checker"].summary["model_calls"]["total"]
    # full's 4 noisy samples; no-checker shows examples drawn from all samples, so its 12 prompts are new.
    assert len(fakes["context"].calls) == 4 + 12
    assert sum(v.calls_paid for v in result.variants) == sum(len(f.calls) for f in fakes.values())


def test_the_table_and_files(ablation):
    result, _ = ablation
    table = format_table(result)
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["variant", "flagged", "relabeled"] and "precision" in lines[0]
    assert [line.split()[0] for line in lines[2:]] == list(VARIANTS)
    full = lines[2].split()
    assert full[1:5] == ["4", "2", "2", "0"] and "75.0%" in full
    data = json.loads((result.out_dir / "ablation.json").read_text())
    assert [r["variant"] for r in data["variants"]] == list(VARIANTS)
    assert data["metrics"]["full"]["detection"]["f1"] == 0.75
    assert "| no-selection |" in (result.out_dir / "ablation.md").read_text()


def test_cli_ablate_with_the_simulated_server_pays_each_prompt_once(tmp_path, capsys):
    from robustft.demo import DEMO_DATA, DEMO_GOLD
    from robustft.sim import SimServer

    with SimServer(DEMO_GOLD, accuracy=0.8, seed=3) as sim:
        args = ["ablate", "--data", str(DEMO_DATA), "--limit", "16", "--model", "sim", "--base-url", sim.base_url,
                "--out", str(tmp_path / "abl"), "--variants", "full,no-selection", "--gold", str(DEMO_GOLD), "--quiet"]
        assert main(args) == 0
        first = sim.requests
        out = capsys.readouterr().out
        data = json.loads((tmp_path / "abl" / "ablation.json").read_text())
        full, nosel = data["variants"]
        # The second variant pays only its connection check: every prompt comes from the store.
        assert full["calls_paid"] + nosel["calls_paid"] == first and nosel["calls_paid"] == 1
        assert nosel["calls_reused"] == full["calls"] > 0
        assert "no-selection" in out and "precision" in out
        # Running it again resumes both variants: no request at all.
        assert main(args) == 0 and sim.requests == first
    assert main(["ablate", "--data", str(DEMO_DATA), "--out", str(tmp_path / "x"), "--variants", "nope"]) == 2
