"""What a run costs, and the budget: prices turn every paid call into money (per role, in summary.json
and the progress line), store hits are shown as saved, and `--max-cost` stops the run with exit 4,
its progress kept, so that a higher cap continues paying for nothing twice. Against the simulated
experts over HTTP; the prices are made up (robustft ships none)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from robustft.agents.cost import BudgetReached, CostLedger, Prices, usd
from robustft.backends.base import Generation
from robustft.cli import main
from robustft.config import ModelConfig, load_config
from robustft.demo import DEMO_DATA, DEMO_GOLD
from robustft.sim import SimServer

ROWS = 24
PRICE_IN, PRICE_OUT = 200.0, 800.0  # USD per million tokens: large, so that 24 rows cost dollars


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def priced_config(tmp_path: Path, **extra_model: float) -> Path:
    path = tmp_path / "prices.yaml"
    lines = [f"  price_input_per_mtok: {PRICE_IN}", f"  price_output_per_mtok: {PRICE_OUT}"]
    lines += [f"  {k}: {v}" for k, v in extra_model.items()]
    path.write_text("model:\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def denoise_args(sim: SimServer, config: Path, out: Path, *extra: str) -> list[str]:
    return ["denoise", "--config", str(config), "--data", str(DEMO_DATA), "--limit", str(ROWS), "--model", "sim",
            "--base-url", sim.base_url, "--embedding-base-url", sim.base_url, "--embedding-model", "e",
            "--concurrency", "4", "--out", str(out), "--quiet", *extra]


def priced(record: dict) -> float:
    return sum((n.get("prompt_tokens") or 0) * PRICE_IN + (n.get("completion_tokens") or 0) * PRICE_OUT
               for n in record["nodes"].values()) / 1e6


# -- prices and the ledger ---------------------------------------------------------------------------

def test_prices_of_a_model_and_the_cost_of_a_call():
    assert Prices.of(ModelConfig()) is None  # no price, no cost
    p = Prices.of(ModelConfig(price_input_per_mtok=2.0, price_output_per_mtok=8.0, price_cached_input_per_mtok=0.5))
    assert p.usd(1_000_000, 0) == pytest.approx(2.0)
    assert p.usd(0, 1_000_000) == pytest.approx(8.0)
    assert p.usd(1_000_000, 500_000, cached_tokens=400_000) == pytest.approx(0.6 * 2 + 0.4 * 0.5 + 0.5 * 8)
    assert p.usd(10, 0, cached_tokens=99) == pytest.approx(10 * 0.5 / 1e6)  # never more cached than sent
    only_in = Prices.of(ModelConfig(price_input_per_mtok=3.0))
    assert only_in.cached_input == 3.0 and only_in.output == 0.0
    assert (usd(0), usd(0.00123), usd(1.5), usd(12345.6)) == ("$0", "$0.0012", "$1.50", "$12,346")


def test_prices_are_not_part_of_a_models_identity():
    """Setting or changing a price must not make the store forget every response."""
    from robustft.backends.store import model_identity

    assert model_identity(ModelConfig(name="m")) == model_identity(
        ModelConfig(name="m", price_input_per_mtok=1, price_output_per_mtok=2, requests_per_minute=10))


def test_the_example_price_file_loads_and_prices_every_role():
    config = load_config(Path(__file__).resolve().parents[1] / "examples" / "hosted_api.yaml")
    for role in ("base", "reasoning", "context", "reviewer"):
        assert Prices.of(config.model_for(role)) == Prices(input=1.0, output=4.0, cached_input=0.25)
    assert config.model.requests_per_minute == 500 and config.denoise.max_cost_usd is None


def test_bad_prices_and_caps_are_config_errors(tmp_path):
    from robustft.errors import ConfigError

    for raw in ({"model": {"price_input_per_mtok": -1}}, {"denoise": {"max_cost_usd": 0}},
                {"model": {"requests_per_minute": 0}}):
        with pytest.raises(ConfigError):
            load_config(None, raw)


def test_a_cap_without_prices_is_refused_before_any_call(tmp_path, capsys):
    with SimServer(DEMO_GOLD, accuracy=0.8, seed=0) as sim:
        config = tmp_path / "empty.yaml"
        config.write_text("{}\n")
        assert main(denoise_args(sim, config, tmp_path / "run", "--max-cost", "1")) == 2
        assert sim.requests == 0
    assert "no model has a price" in capsys.readouterr().err


def test_the_ledger_waits_for_calls_in_flight_then_stops_at_the_cap():
    async def scenario():
        ledger = CostLedger(cap_usd=1.0)
        prices = Prices(input=1e6, output=0.0, cached_input=1e6)  # a dollar a token
        await ledger.admit(0.4)
        await ledger.admit(0.4)
        third = asyncio.ensure_future(ledger.admit(0.4))  # 1.2 > 1.0: waits for the calls in flight
        await asyncio.sleep(0)
        assert not third.done()
        ledger.paid("base", prices, Generation("x", prompt_tokens=0), 0.4)  # cost nothing after all: room
        await asyncio.wait_for(third, 1)
        ledger.paid("base", prices, Generation("x", prompt_tokens=1), 0.4)
        ledger.paid("base", prices, Generation("x", prompt_tokens=0), 0.4)
        assert ledger.total == pytest.approx(1.0) and ledger.in_flight == 0
        with pytest.raises(BudgetReached, match=r"\$1.00 spent of denoise.max_cost_usd = \$1.00"):
            await ledger.admit(0.01)  # nothing in flight that could free room: stop
        assert BudgetReached.exit_code == 4

    asyncio.run(scenario())


def test_once_the_budget_stops_the_run_no_call_goes_out_not_even_one_that_fits(tmp_path):
    """The stop is final. When one call finds the cap reached (nothing in flight), the run is stopping:
    its driver cancels every other sample's task. A smaller call that still fitted under the cap used
    to be admitted and sent in that moment; cancelled in flight, it was paid at the server and never
    stored, so the resumed run paid for it again (the capped-then-resumed run sent one request more
    than a run never stopped, whenever a cheaper role's call was waiting at the stop)."""
    from robustft.agents.calls import ModelCalls
    from robustft.backends.registry import ModelPool
    from robustft.backends.store import ResponseStore

    async def scenario(sim: SimServer) -> None:
        # A dollar a prompt token; before any reply a prompt counts about 0.3 tokens a character.
        cfg = ModelConfig(name="sim", base_url=sim.base_url, price_input_per_mtok=1e6, price_output_per_mtok=0.0,
                          max_retries=0)
        store = ResponseStore(tmp_path / "responses.sqlite")
        pool = ModelPool()
        calls = ModelCalls(pool, store, 4, ledger=CostLedger(cap_usd=50.0, store=store))
        try:
            with pytest.raises(BudgetReached, match="the next call would cost about"):
                await calls.call(cfg, [{"role": "user", "content": "a long prompt " * 30}], "reasoning")  # ~$127
            with pytest.raises(BudgetReached, match="stopped at the budget"):
                await calls.call(cfg, [{"role": "user", "content": "short"}], "base")  # ~$3: would fit
            assert sim.requests == 0 and calls.stats.paid == 0 and calls.ledger.in_flight == 0
        finally:
            await pool.aclose()
            store.close()

    with SimServer(DEMO_GOLD, accuracy=0.8, seed=0) as sim:
        asyncio.run(scenario(sim))


# -- against the simulated experts ---------------------------------------------------------------------

def test_every_paid_call_has_a_cost_per_role_and_store_hits_are_saved(tmp_path, capsys):
    out = tmp_path / "run"
    with SimServer(DEMO_GOLD, accuracy=0.8, seed=0) as sim:
        assert main(denoise_args(sim, priced_config(tmp_path), out)) == 0
        printed = capsys.readouterr().out
        summary = json.loads((out / "summary.json").read_text())
        records = read_jsonl(out / "samples.jsonl")
        cost = summary["cost"]
        assert summary["cost_usd"] == pytest.approx(sum(priced(r) for r in records), rel=1e-6)
        for role in ("base", "reasoning", "context"):
            expected = sum(priced({"nodes": {role: r["nodes"][role]}}) for r in records if role in r["nodes"])
            assert cost["by_role"][role] == pytest.approx(expected, rel=1e-6) and expected > 0
        # This run paid for the records' calls and the preflight probe, and spent that in all.
        preflight = cost["this_run"]["by_role"]["base"]["paid_usd"] - cost["by_role"]["base"]
        assert 0 < preflight < cost["by_role"]["base"] / ROWS * 3
        assert cost["this_run"]["paid_usd"] == pytest.approx(cost["spent_usd"]) == pytest.approx(
            summary["cost_usd"] + preflight, rel=1e-6)
        assert cost["prices"]["base"] == {"input_per_mtok": PRICE_IN, "cached_input_per_mtok": PRICE_IN,
                                          "output_per_mtok": PRICE_OUT}
        assert f"cost: {usd(summary['cost_usd'])} for these outputs" in printed
        from robustft.inspect.report import build_report

        report = build_report(out)
        assert f"cost: {usd(summary['cost_usd'])} for these outputs (base " in report.text
        assert f"Cost at the configured prices: {usd(summary['cost_usd'])}" in report.html_path.read_text()

        # The same outputs again from the store: nothing paid but the probe, the rest saved.
        (out / "samples.jsonl").unlink()
        requests = sim.requests
        assert main(denoise_args(sim, priced_config(tmp_path), out)) == 0
        again = json.loads((out / "summary.json").read_text())["cost"]
        assert sim.requests == requests + 1  # the preflight probe only
        assert again["this_run"]["paid_usd"] == pytest.approx(preflight, rel=1e-6)
        assert again["this_run"]["saved_usd"] == pytest.approx(summary["cost_usd"], rel=1e-5)
        assert again["spent_usd"] == pytest.approx(cost["spent_usd"] + preflight, rel=1e-6)
        assert again["usd"] == pytest.approx(summary["cost_usd"], rel=1e-6)


def test_no_prices_no_cost(tmp_path):
    with SimServer(DEMO_GOLD, accuracy=0.8, seed=0) as sim:
        config = tmp_path / "empty.yaml"
        config.write_text("{}\n")
        assert main(denoise_args(sim, config, tmp_path / "run")) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert "cost_usd" not in summary and "cost" not in summary


def test_the_progress_line_shows_the_money(tmp_path, caplog):
    import logging

    from robustft.run.runner import DenoiseRun

    with SimServer(DEMO_GOLD, accuracy=0.8, seed=0, latency_ms=20) as sim:
        config = load_config(priced_config(tmp_path), {
            "data.path": str(DEMO_DATA), "data.limit": 16, "model.name": "sim", "model.base_url": sim.base_url,
            "denoise.embedding_base_url": sim.base_url, "denoise.embedding_model": "e", "denoise.concurrency": 2,
            "out": str(tmp_path / "run")})
        with caplog.at_level(logging.INFO, logger="robustft"):
            asyncio.run(DenoiseRun(config, progress=False, quiet_log_every_s=0.05).run())
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("detect: ")]
    assert any(" paid (base $" in line and "reasoning $" in line for line in lines), lines


def test_the_cap_stops_with_exit_4_and_a_higher_cap_continues_paying_nothing_twice(tmp_path, capsys):
    config = priced_config(tmp_path)
    with SimServer(DEMO_GOLD, accuracy=0.8, seed=0) as sim:
        whole = tmp_path / "whole"
        assert main(denoise_args(sim, config, whole)) == 0
        full = json.loads((whole / "summary.json").read_text())["cost"]
        full_requests = sim.requests
        capsys.readouterr()

        out = tmp_path / "capped"
        cap = round(full["spent_usd"] * 0.4, 2)
        before = sim.requests
        assert main(denoise_args(sim, config, out, "--max-cost", str(cap))) == 4
        err = capsys.readouterr().err
        assert "stopped at the budget" in err and f"of denoise.max_cost_usd (--max-cost) = {usd(cap)}" in err
        assert "higher denoise.max_cost_usd" in err
        first_requests = sim.requests - before
        spent = float(__import__("sqlite3").connect(out / "responses.sqlite").execute(
            "select value from meta where name='spent_usd'").fetchone()[0])
        # Overshoot: at most what the calls in flight (4) cost beyond their expectation.
        biggest = max(priced({"nodes": {k: v}}) / max(1, v.get("attempts") or 1)
                      for r in read_jsonl(whole / "samples.jsonl") for k, v in r["nodes"].items())
        assert cap * 0.8 < spent <= cap + 4 * biggest
        done = read_jsonl(out / "samples.jsonl")
        assert 0 < len(done) < ROWS  # progress kept, not finished

        # The same cap again: nothing is sent at all.
        before = sim.requests
        assert main(denoise_args(sim, config, out, "--max-cost", str(cap))) == 4
        assert sim.requests == before

        # A higher cap finishes the run; every call was paid once (plus one probe per start). Exact: no
        # call goes out after the stop, so none was cut off in flight, paid and not stored.
        assert main(denoise_args(sim, config, out, "--max-cost", str(round(full["spent_usd"] * 3, 2)))) == 0
        second_requests = sim.requests - before
        assert first_requests + second_requests == full_requests + 1
        resumed = json.loads((out / "summary.json").read_text())
        assert resumed["cost"]["spent_usd"] == pytest.approx(full["spent_usd"] + full["this_run"]["by_role"]["base"]
                                                             ["paid_usd"] - full["by_role"]["base"], rel=1e-3)
    for name in ("samples.jsonl", "denoised.jsonl"):
        assert (out / name).read_bytes() == (whole / name).read_bytes()


def test_a_node_that_is_not_a_role_is_priced_at_its_roles_prices():
    """The trust score's claim checks run on the judge's model: they cost what the judge costs."""
    from robustft.agents.cost import records_cost
    from robustft.config import RobustFTConfig
    from robustft.run.outputs import Summary

    config = RobustFTConfig.model_validate({
        "model": {"price_input_per_mtok": 1.0, "price_output_per_mtok": 2.0},
        "roles": {"judge": {"price_input_per_mtok": 100.0, "price_output_per_mtok": 200.0}}})
    summary = Summary()
    tokens = {"prompt_tokens": 1000, "completion_tokens": 100, "attempts": 1}
    summary.add({"status": "clean", "nodes": {"base": {"role": "base", **tokens},
                                               "claim": {"role": "judge", **tokens},
                                               "relabel_claim": {"role": "judge", **tokens}}})
    cost = records_cost(config, summary.tokens_by_role)
    assert cost["by_role"] == {"base": pytest.approx(0.0012), "judge": pytest.approx(2 * 0.12)}
    assert summary.calls == {"base": 1, "claim": 1, "relabel_claim": 1}  # calls stay counted per node
