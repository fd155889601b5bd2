"""`robustft trace`: one sample's path through the graph, readable and as JSON."""

from __future__ import annotations

import json

import pytest

from robustft.cli import main
from robustft.errors import UserError
from robustft.inspect.trace import trace

from fakes import QUESTIONS
from recorded import make_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    result, _ = make_run(tmp_path_factory.mktemp("trace"))
    return result.out_dir


def positions(text: str, *needles: str) -> list[int]:
    found = [text.find(n) for n in needles]
    assert -1 not in found, [n for n, p in zip(needles, found) if p == -1]
    return found


def test_a_relabeled_sample_shows_every_step_in_order(run_dir):
    out = trace(run_dir, "q2")
    pos = positions(out, "base expert", "reasoning expert", "checker: NOISY", "context relabeler",
                    "reviewer (weighs", "selection: KEPT", "final status: RELABELED: A (alpha) -> D (delta)")
    assert pos == sorted(pos)
    assert "why: base answer C, reasoning answer C; not all equal the label A" in out
    assert "retrieved examples (3 most similar clean samples" in out
    assert "Some thoughts.\n" in out.replace("   | ", "")  # the model's response
    assert "verdict: D (delta)" in out
    assert "score 0.200 <= threshold 0.200" in out
    assert out.splitlines()[1] == "outcome: RELABELED: A (alpha) -> D (delta) (score 0.200)"


def test_examples_are_listed_with_their_similarity(run_dir):
    data = json.loads(trace(run_dir, "q2", as_json=True))
    context = next(s for s in data["steps"] if s["node"] == "context")
    assert len(context["examples"]) == 3
    out = trace(run_dir, "q2")
    for ex in context["examples"]:
        assert f"{ex['similarity']:.3f}  {ex['id']}  answer {ex['answer']}" in out


def test_prompts_are_shortened_unless_full(run_dir):
    short, full = trace(run_dir, "q2"), trace(run_dir, "q2", full=True)
    data = json.loads(trace(run_dir, "q2", as_json=True))
    context_prompt = next(s for s in data["steps"] if s["node"] == "context")["prompt"]
    assert "the full trace shows all of it" in short and "full trace shows" not in full
    for line in context_prompt.rstrip("\n").splitlines():
        assert f"   | {line}".rstrip() in [x.rstrip() for x in full.splitlines()]
    assert len(short) < len(full)


def test_clean_and_dropped_samples(run_dir):
    clean = trace(run_dir, "q0")
    assert "checker: CLEAN" in clean and "context relabeler" not in clean and "selection" not in clean
    assert "final status: CLEAN: kept with its given label A (alpha)" in clean
    dropped = trace(run_dir, "q5")
    assert "selection: DROPPED" in dropped and "score 1.500 > threshold 0.200" in dropped
    assert "final status: DROPPED" in dropped and "not in the fine-tuning set" in dropped


def test_json_trace_is_machine_readable(run_dir):
    data = json.loads(trace(run_dir, "q2", as_json=True))
    assert [s["node"] for s in data["steps"]] == ["base", "reasoning", "checker", "context", "reviewer", "selection"]
    assert data["status"] == "relabeled" and data["label"] == "D" and data["original_label"] == "A"
    assert data["question"] == QUESTIONS["q2"][0]
    assert data["steps"][2] == {"node": "checker", "decision": "noisy",
                                "reason": "base answer C, reasoning answer C; not all equal the label A"}
    assert data["steps"][-1]["kept"] is True and data["in_fine_tuning_set"] is True


def test_unknown_id_and_non_run_directory_are_clear_errors(run_dir, tmp_path, capsys):
    with pytest.raises(UserError, match=r"no sample with id 'q2x'.*did you mean q2"):
        trace(run_dir, "q2x")
    with pytest.raises(UserError, match="data row 4 \(counted from 1, as editors show it\) has the id .q3."):
        trace(run_dir, "4")
    with pytest.raises(UserError, match="not a robustft run directory"):
        trace(tmp_path, "q1")
    (tmp_path / "run.json").write_text("{}")
    with pytest.raises(UserError, match="has not finished"):
        trace(tmp_path, "q1")
    assert main(["trace", str(run_dir), "nope"]) == 2
    assert "no sample with id 'nope'" in capsys.readouterr().err
    assert main(["trace", str(tmp_path / "missing"), "q1"]) == 2


def test_cli_prints_the_trace(run_dir, capsys):
    assert main(["trace", str(run_dir), "q1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == "q1"
    assert main(["trace", str(run_dir), "q1", "--full"]) == 0
    assert "final status: RELABELED" in capsys.readouterr().out


ESCAPES = "\x1b[2J\x1b]0;pwned\x07\x9b31m\u202eevil\rhidden\x00"


def test_escape_sequences_from_the_data_are_shown_not_obeyed(run_dir, tmp_path, capsys):
    import shutil

    run = shutil.copytree(run_dir, tmp_path / "run")
    rows = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    for r in rows:
        if r["id"] == "q1":
            r["question"] = "Which? " + ESCAPES
            r["nodes"]["base"]["response"] = "Thinking " + ESCAPES + "\nAnswer: B"
            r["options"][0] = "alpha" + ESCAPES
    (run / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["trace", str(run), "q1", "--full"]) == 0
    out = capsys.readouterr().out
    for raw in ("\x1b", "\x07", "\x9b", "\u202e", "\r", "\x00"):
        assert raw not in out
    # (a lone carriage return also breaks the indented block's line: shown, and harmless)
    shown = "\\x1b[2J\\x1b]0;pwned\\x07\\x9b31m\\u202eevil\\x0d"
    assert f"Which? {shown}" in out and f"Thinking {shown}" in out and f"A. alpha{shown}hidden\\x00" in out
    # --json stays exact JSON with the same values, and carries no raw control character either.
    assert main(["trace", str(run), "q1", "--json"]) == 0
    out = capsys.readouterr().out
    assert not any(c in out for c in ("\x1b", "\x07", "\x9b", "\u202e", "\r"))
    assert json.loads(out)["question"] == "Which? " + ESCAPES


def test_an_unknown_id_full_of_escapes_is_reported_harmlessly(run_dir, capsys):
    assert main(["trace", str(run_dir), "\x1b[2Jq1"]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\\x1b[2Jq1" in err
