"""Gold-label metrics: detection precision/recall/F1, relabel accuracy, label accuracy, matching."""

from __future__ import annotations

import pytest

from robustft.errors import UserError
from robustft.inspect.metrics import detection_scores, gold_metrics, match_gold, run_gold_metrics
from robustft.run.rundir import load_run

from recorded import GOLD, NOISY, make_run, write_gold


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    result, _ = make_run(tmp_path_factory.mktemp("metrics"))
    return result.out_dir


def test_hand_computed_figures_of_the_constructed_run(run_dir, tmp_path):
    run = load_run(run_dir)
    m = run_gold_metrics(run, match_gold(write_gold(tmp_path / "gold.csv"), run))
    d = m["detection"]
    assert (d["true_positive"], d["false_positive"], d["false_negative"], d["true_negative"]) == (3, 1, 1, 7)
    assert (d["precision"], d["recall"], d["f1"]) == (0.75, 0.75, 0.75)
    rl = m["relabel"]
    assert (rl["proposed"], rl["correct"], rl["accuracy"]) == (4, 3, 0.75)
    assert (rl["kept"], rl["kept_correct"], rl["dropped"], rl["dropped_correct"]) == (2, 1, 2, 2)
    assert m["input"]["label_accuracy"] == pytest.approx(8 / 12)
    assert (m["fine_tuning_set"]["samples"], m["fine_tuning_set"]["correct"]) == (10, 8)
    assert m["wrong_labels"] == {"fixed": 1, "relabeled_wrong": 1, "kept_unchanged": 1, "removed": 1, "failed": 0}
    assert m["right_labels"] == {"kept_right": 7, "broken": 0, "removed": 1, "failed": 0}
    assert m["gold"]["matched_by"] == "id" and m["gold"]["matched"] == 12


def test_figures_agree_with_a_direct_count_over_samples_jsonl(run_dir, tmp_path):
    run = load_run(run_dir)
    m = run_gold_metrics(run, match_gold(write_gold(tmp_path / "gold.csv"), run))
    flagged = {r["id"] for r in run.records if r["decision"] == "noisy"}
    wrong = {r["id"] for r in run.records if r["original_label"] != GOLD[r["id"]]}
    assert m["detection"]["precision"] == len(flagged & wrong) / len(flagged)
    assert m["detection"]["recall"] == len(flagged & wrong) / len(wrong)
    assert wrong == set(NOISY)


def test_gold_without_ids_is_matched_by_row_order(run_dir, tmp_path):
    run = load_run(run_dir)
    gold = match_gold(write_gold(tmp_path / "gold.csv", with_ids=False), run)
    assert gold.matched_by == "row" and gold.labels == GOLD


def test_gold_rows_that_do_not_line_up_are_refused(run_dir, tmp_path):
    run = load_run(run_dir)
    path = write_gold(tmp_path / "gold.csv", with_ids=False)
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], *reversed(lines[1:])]) + "\n")
    with pytest.raises(UserError, match="do not line up"):
        match_gold(path, run)


def test_gold_with_foreign_ids_and_other_questions_is_refused(run_dir, tmp_path):
    run = load_run(run_dir)
    path = tmp_path / "gold.csv"
    path.write_text("id,question,answer,options\nx1,Something else entirely?,A,\"[\"\"a\"\", \"\"b\"\"]\"\n")
    with pytest.raises(UserError, match="do not line up"):
        match_gold(path, run)


def test_a_gold_label_outside_the_options_names_the_row(run_dir, tmp_path):
    run = load_run(run_dir)
    path = write_gold(tmp_path / "gold.csv", labels={**GOLD, "q4": "Z"})
    with pytest.raises(UserError, match="gold"):
        match_gold(path, run)


def test_partial_gold_counts_only_matched_samples():
    records = [
        {"id": "a", "original_label": "A", "decision": "noisy", "status": "relabeled", "proposed_label": "B", "label": "B"},
        {"id": "b", "original_label": "B", "decision": "clean", "status": "clean", "proposed_label": None, "label": "B"},
        {"id": "c", "original_label": "C", "decision": "noisy", "status": "dropped", "proposed_label": "A", "label": None},
        {"id": "d", "original_label": "D", "decision": None, "status": "failed", "proposed_label": None, "label": None},
    ]
    m = gold_metrics(records, {"a": "B", "b": "A", "d": "A"}, "multiple_choice")
    d = m["detection"]
    # a: wrong+flagged (TP); b: wrong, not flagged (FN); d: wrong, undecided (FN). c has no gold.
    assert (d["true_positive"], d["false_positive"], d["false_negative"], d["undecided"]) == (1, 0, 2, 1)
    assert d["precision"] == 1.0 and d["recall"] == pytest.approx(1 / 3) and d["f1"] == pytest.approx(0.5)
    assert m["samples"] == 3 and m["wrong_labels"]["failed"] == 1
    assert m["fine_tuning_set"]["samples"] == 2 and m["fine_tuning_set"]["correct"] == 1


def test_detection_scores_are_undefined_without_flags_or_positives():
    assert detection_scores(0, 0, 3) == {"precision": None, "recall": 0.0, "f1": None}
    assert detection_scores(0, 2, 0) == {"precision": 0.0, "recall": None, "f1": None}
    assert detection_scores(0, 2, 3)["f1"] == 0.0
    assert detection_scores(2, 2, 2) == {"precision": 0.5, "recall": 0.5, "f1": 0.5}
