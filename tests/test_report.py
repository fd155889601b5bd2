"""`robustft report`: report.html (self-contained), the PNG plots, report.json, the terminal table."""

from __future__ import annotations

import base64
import json
import re

import pytest

from robustft.cli import main
from robustft.errors import UserError
from robustft.inspect.report import build_report, label_matrix
from robustft.run.rundir import load_run

from fakes import answering
from recorded import GOLD, NOISY, REPLIES, make_run, write_gold

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    result, _ = make_run(tmp_path_factory.mktemp("report"))
    return result.out_dir


def embedded_images(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)]


def test_report_with_gold_writes_html_plots_and_numbers(run_dir, tmp_path):
    rep = build_report(run_dir, write_gold(tmp_path / "gold.csv"))
    html = rep.html_path.read_text(encoding="utf-8")
    assert rep.html_path == run_dir / "report.html"
    assert set(rep.plots) == {"outcomes", "gold", "scores", "labels", "roles"}
    images = embedded_images(html)
    assert len(images) == 5
    for path in rep.plots.values():
        data = path.read_bytes()
        assert path.parent == run_dir / "plots" and data.startswith(PNG) and len(data) > 5000
        assert data in images  # the page shows exactly the PNG files
    for heading in ("How the samples ended", "Selection scores and the β threshold", "Given label versus final label",
                    "Agreement per agent", "Checked against gold labels", "Example relabels"):
        assert heading in html
    assert "Detection precision" in html and "75.0%" in html
    # Self-contained: nothing is fetched from anywhere.
    assert not re.search(r"(src|href)=['\"]?(https?:|//)", html)
    data = json.loads((run_dir / "report.json").read_text())
    assert data["gold_metrics"]["detection"]["precision"] == 0.75
    assert data["counts"] == {"clean": 8, "relabeled": 2, "confirmed": 0, "dropped": 2, "unreadable": 0, "failed": 0,
                              "total": 12, "noisy": 4, "fine_tuning_set": 10, "human": 0}


def test_terminal_table_prints_precision_and_recall(run_dir, tmp_path, capsys):
    gold = write_gold(tmp_path / "gold.csv")
    assert main(["report", str(run_dir), "--gold", str(gold)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"relabeled\s+2\s+16\.7%", out)
    assert "precision 75.0%  recall 75.0%  F1 75.0%" in out
    assert "input 66.7% (8/12) -> fine-tuning set 80.0% (8/10)" in out
    assert str(run_dir / "report.html") in out


def test_report_without_gold_has_no_gold_figure(run_dir, tmp_path):
    build_report(run_dir, write_gold(tmp_path / "gold.csv"))
    rep = build_report(run_dir)
    html = rep.html_path.read_text(encoding="utf-8")
    assert "gold" not in rep.plots and not (run_dir / "plots" / "gold.png").exists()
    assert len(embedded_images(html)) == 4 and "Checked against gold labels" not in html
    assert "gold labels" not in rep.text


def test_the_label_matrix_counts_every_sample(run_dir):
    rows, cols, m = label_matrix(load_run(run_dir))
    assert rows == ["A", "B", "C", "D"] and cols == ["A", "B", "C", "D", "dropped", "failed"]
    assert sum(map(sum, m)) == 12
    assert m[0][1] == 1 and m[0][3] == 1  # q1 A->B, q2 A->D
    assert m[2][4] == 1 and m[3][4] == 1  # q5 (C) and q3 (D) dropped


def test_relabels_without_scores_are_reported(tmp_path):
    from robustft.backends.base import Generation

    def no_logprobs(sid, messages):
        return Generation(text=f"Answer: {GOLD[sid]}", token_logprobs=None)

    result, _ = make_run(tmp_path, replies={role: no_logprobs for role in REPLIES})
    rep = build_report(result.out_dir)
    html = rep.html_path.read_text()
    assert rep.data["selection"]["unscored"] == 4 and "4 without a score" in html
    assert len(embedded_images(html)) == 4


def test_a_run_where_every_label_is_confirmed(tmp_path):
    agree = answering(lambda sid: NOISY.get(sid, GOLD[sid]))
    result, _ = make_run(tmp_path, replies={"base": agree, "reasoning": agree})
    rep = build_report(result.out_dir, write_gold(tmp_path / "gold.csv"))
    assert rep.data["counts"]["clean"] == 12
    d = rep.data["gold_metrics"]["detection"]
    assert d["precision"] is None and d["recall"] == 0.0
    assert "precision n/a  recall 0.0%" in rep.text
    assert "Example relabels" not in rep.html_path.read_text()


def test_report_errors_are_user_errors(tmp_path, run_dir):
    with pytest.raises(UserError, match="not a robustft run directory"):
        build_report(tmp_path)
    assert main(["report", str(run_dir), "--gold", str(tmp_path / "missing.csv")]) == 2


def page_text(fragment: str) -> str:
    """What a reader sees of an HTML fragment: line breaks and cell ends as spaces, other tags dropped,
    entities decoded, spaces folded."""
    import html as html_lib

    text = re.sub(r"<[^>]+>", "", re.sub(r"<br>|</t[dh]>", " ", fragment))
    return " ".join(html_lib.unescape(text).split())


def test_the_page_says_what_the_run_did_section_by_section(run_dir, tmp_path):
    """The sections of report.html (from templates/report.html.jinja) and what they say, word for word."""
    html = build_report(run_dir, write_gold(tmp_path / "gold.csv")).html_path.read_text(encoding="utf-8")
    assert re.findall(r"<h2>(.*?)</h2>", html) == [
        "How robustft decides", "Outcome", "Checked against gold labels", "How the samples ended",
        "Where the wrong and the right labels ended up", "Selection scores and the β threshold",
        "Given label versus final label", "Agreement per agent", "Example relabels", "Files"]
    lead = re.search(r"<div class=lead>(.*?)</div>", html, re.S).group(1)
    assert page_text(lead) == (
        "Of the 12 samples, the agents agreed with the given label for 8, which are kept as they are. They disagreed "
        "on 4 (flagged noisy): 2 got a new label confident enough to keep, 2 were left out because the new label was "
        "too uncertain. The fine-tuning set (denoised.jsonl) has 10 samples. Checked against the gold labels: label "
        "accuracy went from 66.7% in the input to 80.0% in the fine-tuning set; the noise detector found 3 of the 4 "
        "wrong labels (recall 75.0%) at precision 75.0%.")
    outcome = re.search(r"<h2>Outcome</h2>\s*<table>(.*?)</table>", html, re.S).group(1)
    assert [page_text(row) for row in re.findall(r"<tr>(.*?)</tr>", outcome, re.S)] == [
        "what happened samples share",
        "clean: the experts agreed with the given label; kept as it is 8 66.7%",
        "relabeled: flagged noisy, given a new label confident enough to keep 2 16.7%",
        "confirmed: flagged noisy, but relabeled to its given label; kept unchanged 0 0.0%",
        "dropped: flagged noisy, and either the new label was too uncertain (selection) or no answer could be read "
        "from the replies (unreadable); left out 2 16.7%",
        "failed: a model or embedding call kept failing; left out (running again retries it) 0 0.0%",
        "fine-tuning set (clean + relabeled + confirmed) 10 83.3%"]
    examples = re.search(r"<h2>Example relabels</h2>.*?<table>(.*?)</table>", html, re.S).group(1)
    assert [page_text(row) for row in re.findall(r"<tr>(.*?)</tr>", examples, re.S)][1:] == [
        "q1 Question number 1: which option is right for item 1? A alpha B beta B B B not asked 0.050 kept B beta ✓",
        "q2 Question number 2: which option is right for item 2? A alpha D delta C C D D 0.200 kept C gamma ✗",
        "q5 Question number 5: which option is right for item 5? C gamma B beta B B B not asked 1.500 dropped B beta ✓",
        "q3 Question number 3: which option is right for item 3? D delta D delta (confirmed) A D D not asked 0.900 "
        "dropped D delta ✓"]
    assert "<script" not in html and "{{" not in html and "{%" not in html


def test_text_from_the_run_is_escaped_in_the_page(tmp_path):
    result, _ = make_run(tmp_path)
    samples = result.out_dir / "samples.jsonl"
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    for row in rows:
        if row["id"] == "q1":
            row["question"] = "<script>alert(1)</script> & more"
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    html = build_report(result.out_dir).html_path.read_text(encoding="utf-8")
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in html


def test_a_label_in_latex_dollars_is_drawn_as_plain_text(tmp_path):
    """Maths data labels such as $\\boxed{5}$ crashed the report in matplotlib's mathtext parser."""
    from robustft.inspect.figures import fig_labels, save_png

    labels = ["$\\boxed{5}$", "$x^{2", "$$", "50 $ and $"]
    fig = fig_labels((labels, labels + ["dropped", "failed"], [[1, 0, 0, 0, 0, 0]] * 4))
    fig.axes[0].set_title("given $\\boxed{5}$")
    assert len(save_png(fig, tmp_path / "labels.png")) > 1000
