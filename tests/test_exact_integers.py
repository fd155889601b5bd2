"""The issue's measurement, end to end against the simulated experts: 40 integer questions, 20 of
them labelled one off, experts always right. With a relative tolerance every off-by-one label was
kept as clean; whole numbers now compare exactly, so each is flagged and relabeled to the answer."""

from __future__ import annotations

from robustft.cli import main
from robustft.data import read_jsonl
from robustft.sim import SimServer


def test_off_by_one_integer_labels_are_all_flagged(tmp_path, capsys):
    items = [(f"q{i}", f"How many marbles are left when {i + 150} marbles lose {i % 7 + 3}?", 147 + i - i % 7)
             for i in range(40)]
    gold = tmp_path / "gold.csv"
    gold.write_text("id,question,answer\n" + "".join(f"{sid},{q},{a}\n" for sid, q, a in items))
    data = tmp_path / "data.csv"
    off = {sid for sid, _, _ in items[::2]}
    data.write_text("id,question,answer\n" + "".join(
        f"{sid},{q},{a + 1 if sid in off else a}\n" for sid, q, a in items))
    out = tmp_path / "run"
    with SimServer(gold, accuracy=1.0, seed=5) as sim:
        assert main(["denoise", "--data", str(data), "--model", "sim", "--base-url", sim.base_url, "--out", str(out),
                     "--quiet", "--beta", "1"]) == 0
    records = {r["id"]: r for r in read_jsonl(out / "samples.jsonl")}
    assert {sid for sid, r in records.items() if r["decision"] == "noisy"} == off
    answer = {sid: str(a) for sid, _, a in items}
    assert all(records[sid]["status"] == "relabeled" and records[sid]["label"] == answer[sid] for sid in off)
    assert "20 relabeled (label changed)" in capsys.readouterr().out
    from robustft.inspect.report import report

    assert "whole numbers exactly (125 is not 126), others within a relative tolerance of 0.01" in report(out)


def test_the_old_tolerance_setting_says_its_new_name(tmp_path):
    import pytest

    from robustft.config import load_config
    from robustft.errors import ConfigError

    path = tmp_path / "c.yaml"
    path.write_text("data:\n  numeric_rel_tol: 0.05\n")
    with pytest.raises(ConfigError, match="renamed: write data.numeric_tolerance instead"):
        load_config(path, {})
    assert load_config(None, {"data.numeric_tolerance": 0.05}).data.numeric_tolerance == 0.05
