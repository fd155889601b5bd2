"""The hostile-input corpus (tests/hostile/, README.md there): configs, prompt folders, data, review
files and damaged run directories built to break robustft. Each case runs the real command line and
asserts the exit code, a message that names the file (row, field) and the fix, no traceback, and
that nothing was called, written or lost."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from robustft.cli import main
from robustft.sim import SimServer

from conftest import write_toy_mc_csv
from recorded import make_run

HOSTILE = Path(__file__).resolve().parent / "hostile"
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Case:
    name: str
    args: list[str | None]               # the command's own arguments (denoise), or the file (review)
    needles: list[str]                   # all must appear in stderr
    code: int = 2
    damage: Callable[[Path], None] | None = None   # run-directory cases: what to break before the command


def denoise_case(name, args, *needles, code=2):
    return Case(name, args, list(needles), code)


# --- denoise: configs, prompt folders, data ------------------------------------------------------

C, P, D = HOSTILE / "config", HOSTILE / "prompts", HOSTILE / "data"
DENOISE_CASES = [
    denoise_case("billion laughs", ["--config", f"{C}/billion_laughs.yaml"], "billion_laughs.yaml", "expands to more than",
                 "without nested anchors"),
    denoise_case("recursive alias", ["--config", f"{C}/recursive_alias.yaml"], "recursive_alias.yaml", "refers to the anchor"),
    denoise_case("deep nesting", ["--config", f"{C}/deep_nesting.yaml"], "deep_nesting.yaml", "nested too deeply"),
    denoise_case("python tag", ["--config", f"{C}/python_tag.yaml"], "python_tag.yaml", "remove the !!tag"),
    denoise_case("huge value", ["--config", f"{C}/long_value.yaml"], "long_value.yaml", "field 'denoise.beta'", "xxx...xxx"),
    denoise_case("unknown field", ["--config", f"{C}/unknown_field.yaml"], "unknown_field.yaml", "field 'denoise.betta'",
                 "check its spelling"),
    denoise_case("top-level list", ["--config", f"{C}/top_level_list.yaml"], "top_level_list.yaml", "must be a mapping"),
    denoise_case("integer key", ["--config", f"{C}/integer_key.yaml"], "integer_key.yaml", "field '1'"),
    denoise_case("latin-1 config", ["--config", f"{C}/latin1.yaml"], "latin1.yaml", "not UTF-8", "save the config as UTF-8"),
    denoise_case("unknown role", ["--config", f"{C}/unknown_role.yaml"], "unknown_role.yaml", "roles.judgee"),
    denoise_case("wrong types", ["--config", f"{C}/wrong_types.yaml"], "wrong_types.yaml", "field 'denoise.k'",
                 "field 'denoise.beta'"),
    denoise_case("broken yaml", ["--config", f"{C}/broken_yaml.yaml"], "broken_yaml.yaml", "line 1"),
    denoise_case("duplicate key", ["--config", f"{C}/duplicate_keys.yaml"], "duplicate_keys.yaml", "line 5",
                 "found the key 'beta' a second time (first on line 3)", "remove one of them"),
    denoise_case("binary tag", ["--config", f"{C}/binary_tag.yaml"], "binary_tag.yaml", "line 3", "remove the !!tag"),
    denoise_case("set tag", ["--config", f"{C}/set_tag.yaml"], "set_tag.yaml", "line 3", "remove the !!tag"),
    denoise_case("infinite temperature", ["--config", f"{C}/inf_temperature.yaml"], "inf_temperature.yaml",
                 "field 'model.temperature'", "finite number"),
    denoise_case("nan beta", ["--config", f"{C}/nan_beta.yaml"], "nan_beta.yaml", "field 'denoise.beta'",
                 "finite number"),
    denoise_case("escape sequence in a path", ["--config", f"{C}/escape_in_path.yaml", "--data", None],
                 "\\x1b[2J\\x1b[31mmissing.csv", "file not found", "fix:"),
    denoise_case("template runs a shell command", ["--prompts-dir", f"{P}/python_internals"],
                 "python_internals/base.jinja: line 2", "Python internal"),
    denoise_case("template walks the class tree", ["--prompts-dir", f"{P}/mro_walk"],
                 "mro_walk/reasoning.jinja: line 2", "Python internal"),
    denoise_case("template builds the attribute name", ["--prompts-dir", f"{P}/dynamic_attr"],
                 "dynamic_attr/context.jinja", "refused by the template sandbox"),
    denoise_case("typo in the reviewer template", ["--prompts-dir", f"{P}/late_typo"],
                 "late_typo/reviewer.jinja: uses reasoning_anwser", "nothing was called"),
    denoise_case("typo in the judge template", ["--prompts-dir", f"{P}/judge_typo", "--checker", "judge"],
                 "judge_typo/judge.jinja: uses given_label", "it receives"),
    denoise_case("typo in the reflection template", ["--prompts-dir", f"{P}/reflection_typo", "--reflection-rounds", "1"],
                 "reflection_typo/reflection.jinja: uses previous_attempt"),
    denoise_case("typo in a branch the first sample skips", ["--prompts-dir", f"{P}/branch_typo"],
                 "branch_typo/context.jinja: uses free_text_hint"),
    denoise_case("template repeats a string a billion times", ["--prompts-dir", f"{P}/repeat_bomb"],
                 "repeat_bomb/base.jinja", "repeating a value"),
    denoise_case("template pads to 400 million characters", ["--prompts-dir", f"{P}/center_bomb"],
                 "center_bomb/base.jinja", "400,000,000 characters"),
    denoise_case("template joins 100 GB", ["--prompts-dir", f"{P}/join_bomb"], "join_bomb/base.jinja",
                 "characters (a prompt has at most 10,000,000)"),
    denoise_case("template loops 10^10 times", ["--prompts-dir", f"{P}/nested_loops"], "nested_loops/base.jinja",
                 "loops run more than 5,000,000 steps"),
    denoise_case("template formats to 400 million characters", ["--prompts-dir", f"{P}/format_bomb"],
                 "format_bomb/base.jinja", "400,000,000 characters"),
    denoise_case("template includes itself", ["--prompts-dir", f"{P}/include_loop"],
                 "include_loop/base.jinja", "includes itself"),
    denoise_case("template asks for no answer line", ["--prompts-dir", f"{P}/no_answer_line"],
                 "no_answer_line/reviewer.jinja", "Answer: X"),
    denoise_case("template replacing no prompt", ["--prompts-dir", f"{P}/stranger"], "bsae.jinja", "name each file"),
    denoise_case("latin-1 template", ["--prompts-dir", f"{P}/latin1"], "latin1/base.jinja", "not UTF-8"),
    denoise_case("duplicate ids", ["--data", f"{D}/duplicate_ids.csv"], "duplicate_ids.csv, row 2, field 'id'", "fix:"),
    denoise_case("options not a list", ["--data", f"{D}/options_not_list.csv"], "options_not_list.csv, row 1", "fix:"),
    denoise_case("label not an option", ["--data", f"{D}/label_not_option.csv"], "label_not_option.csv, row 2", "fix:"),
    denoise_case("no question column", ["--data", f"{D}/no_question_column.csv"], "no_question_column.csv",
                 "data.question_column"),
    denoise_case("empty file", ["--data", f"{D}/empty.csv"], "empty.csv", "empty", "fix:"),
    denoise_case("truncated jsonl", ["--data", f"{D}/truncated.jsonl"], "truncated.jsonl, row 2", "truncated"),
    denoise_case("latin-1 data", ["--data", f"{D}/latin1.csv"], "latin1.csv", "UTF-8", "iconv"),
    denoise_case("empty label", ["--data", f"{D}/empty_label.csv"], "empty_label.csv, row 1, field 'answer'", "fix:"),
    denoise_case("empty id", ["--data", f"{D}/empty_id.csv"], "empty_id.csv, row 1, field 'id'", "fix:"),
    denoise_case("ragged row", ["--data", f"{D}/ragged.csv"], "ragged.csv, row 1", "fix:"),
    denoise_case("json lines that are not objects", ["--data", f"{D}/not_objects.jsonl"], "not_objects.jsonl, row 1", "fix:"),
    denoise_case("lone surrogate", ["--data", f"{D}/lone_surrogate.jsonl"],
                 "lone_surrogate.jsonl, row 2, field 'question'", "lone surrogate", "fix:"),
    denoise_case("5000-digit integer", ["--data", f"{D}/huge_integer.jsonl"], "huge_integer.jsonl, row 2",
                 "a number too long to read", "write it as a string", "column 48"),
    denoise_case("100000-deep json", ["--data", f"{D}/deep_nesting.jsonl"], "deep_nesting.jsonl, row 2",
                 "nested too deeply"),
    denoise_case("escaped NUL in json", ["--data", f"{D}/nul_escaped.jsonl"], "nul_escaped.jsonl, row 2, field 'question'",
                 "NUL character", "fix:"),
    denoise_case("NUL byte in csv", ["--data", f"{D}/nul_byte.csv"], "nul_byte.csv, row 2, field 'question'",
                 "NUL character", "fix:"),
]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toy_mc_csv(tmp_path_factory.mktemp("toy") / "toy.csv")


@pytest.fixture(scope="module")
def sim(toy):
    with SimServer(toy, accuracy=1.0, seed=0) as server:
        yield server


def run_cli(argv, capsys):
    code = main(argv)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


@pytest.mark.parametrize("case", DENOISE_CASES, ids=[c.name for c in DENOISE_CASES])
def test_hostile_denoise_input_is_refused_before_any_call(case, toy, sim, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # where a template or tag that ran a command would leave its marker
    out = tmp_path / "out"
    args = [a for a in case.args if a is not None]
    if "--data" not in args:
        args += ["--data", str(toy)]
    elif None in case.args:
        args.remove("--data")
    served = sim.requests
    code, stdout, err = run_cli(["denoise", *args, "--out", str(out), "--model", "sim", "--base-url", sim.base_url,
                                 "--quiet"], capsys)
    assert code == case.code, err
    for needle in case.needles:
        assert needle in err, (needle, err)
    assert "Traceback" not in err and "\x1b" not in err
    assert len(err) < 3000  # a value is shown cut short, never in full
    assert sim.requests == served, "a model was called"
    assert not out.exists(), "something was written"
    assert not (tmp_path / "HOSTILE_MARKER").exists(), "a command from the input ran"


def test_the_billion_laughs_config_stops_fast_in_little_memory(tmp_path):
    """The real command in a process capped at 1 GiB of address space: it used to take 8 GB and not finish."""
    def cap_memory():
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    proc = subprocess.run([sys.executable, "-m", "robustft", "denoise", "--dry-run", "--config",
                           str(C / "billion_laughs.yaml"), "--data", str(D / "duplicate_ids.csv")],
                          capture_output=True, text=True, timeout=120, preexec_fn=cap_memory,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "billion_laughs.yaml: the YAML expands to more than" in proc.stderr


@pytest.mark.parametrize("bomb", ["center_bomb", "join_bomb", "nested_loops", "format_bomb"])
def test_a_template_bomb_stops_in_seconds_in_little_memory(bomb, tmp_path):
    """The real command in a process capped at 1 GiB of address space, the pre-run check in full:
    `center(400000000)` reached 422 MB, the join bomb ended in a MemoryError traceback and the
    nested loops never ended. Each render is also cut at prompts.RENDER_TIME_LIMIT_S."""
    import time

    def cap_memory():
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "robustft", "denoise", "--dry-run", "--prompts-dir", str(P / bomb),
                           "--data", str(D / "injection.csv")], capture_output=True, text=True, timeout=120,
                          preexec_fn=cap_memory, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert f"{bomb}/base.jinja" in proc.stderr and "Traceback" not in proc.stderr
    assert time.monotonic() - started < 60  # seconds of work at most, on a loaded machine


def test_each_render_has_a_time_limit(tmp_path, monkeypatch):
    """Loops under the step limit whose steps are slow (a million-character value built per step)
    are cut at the time limit, here lowered to half a second."""
    import time

    import robustft.prompts as prompts
    from robustft.errors import ConfigError

    monkeypatch.setattr(prompts, "RENDER_TIME_LIMIT_S", 0.5)
    (tmp_path / "base.jinja").write_text('{% for a in range(2000) %}{% for b in range(2000) %}{% set y = "x" * 1000000 %}'
                                         "{% endfor %}{% endfor %}{{ question }}\nAnswer:\n")
    library = prompts.PromptLibrary(tmp_path)
    started = time.monotonic()
    with pytest.raises(ConfigError, match="rendering took longer than 0.5 s"):
        library.render("base", **prompts.prompt_values("Q?", ["a", "b"], "multiple_choice"))
    assert time.monotonic() - started < 10


def test_a_link_in_the_prompts_folder_to_a_private_file_is_refused(toy, sim, tmp_path, capsys):
    key = tmp_path / "id_rsa"
    key.write_text("-----BEGIN PRIVATE KEY-----\nAnswer:\n")
    folder = tmp_path / "shared_prompts"
    folder.mkdir()
    (folder / "base.jinja").symlink_to(key)
    served = sim.requests
    code, _, err = run_cli(["denoise", "--data", str(toy), "--out", str(tmp_path / "out"), "--model", "sim",
                            "--base-url", sim.base_url, "--prompts-dir", str(folder)], capsys)
    assert code == 2 and "base.jinja: links to" in err and "outside the prompts folder" in err
    assert sim.requests == served and not (tmp_path / "out").exists()


def test_injection_text_in_the_data_stays_data(tmp_path):
    """Template syntax, fake answer lines, instructions and escape sequences in questions: the real
    command line, a real server; every sample keeps its true label, every prompt shows the text as is."""
    data = D / "injection.csv"
    with SimServer(data, accuracy=1.0, seed=0) as server:
        proc = subprocess.run([sys.executable, "-m", "robustft", "denoise", "--data", str(data), "--out",
                               str(tmp_path / "out"), "--model", "sim", "--base-url", server.base_url, "--quiet"],
                              capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    samples = [json.loads(line) for line in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    rows = {s["id"]: s for s in samples}
    assert len(rows) == 6 and all(s["status"] == "clean" for s in samples)
    assert rows["template"]["label"] == "B" and "{{ 7*7 }} {% for x in range(3) %}" in rows["template"]["nodes"]["base"]["prompt"]
    assert rows["fake_answer"]["label"] == "A"  # "Answer: Z" in the question is not the answer
    assert rows["escape"]["question"].startswith("\x1b[2J")
    denoised = (tmp_path / "out" / "denoised.jsonl").read_text().splitlines()
    assert len(denoised) == 6


# --- review import: files a person (or a spreadsheet) sent back ----------------------------------

R = HOSTILE / "review"
REVIEW_CASES = [
    Case("NUL byte", ["nul_byte.csv"], ["nul_byte.csv, line 2", "NUL byte", "export again"]),
    Case("not UTF-8", ["not_utf8.csv"], ["not_utf8.csv, line 2", "not UTF-8", "CSV UTF-8"]),
    Case("extra cells", ["extra_cells.csv"], ["extra_cells.csv, row 1", "more cells than columns"]),
    Case("wrong columns", ["wrong_columns.csv"], ["wrong_columns.csv", "needs the columns 'id' and 'decision'"]),
    Case("unknown id", ["unknown_id.csv"], ["unknown_id.csv, row 2 (id q404)", "no sample with this id"]),
    Case("letter outside the options", ["bad_letter.csv"], ["bad_letter.csv, row 2 (id q2)", "a letter A-D"]),
    Case("duplicate id", ["duplicate_id.csv"], ["duplicate_id.csv, row 2 (id q1)", "one decision per sample"]),
    Case("truncated jsonl", ["truncated.jsonl"], ["truncated.jsonl, line 2", "not valid JSON"]),
    Case("formula as id", ["formula_id.csv"], ["formula_id.csv, row 1", "no sample with this id"]),
]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    result, _ = make_run(tmp_path_factory.mktemp("hostile-run"))
    return result.out_dir


def snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", REVIEW_CASES, ids=[c.name for c in REVIEW_CASES])
def test_a_hostile_review_file_changes_nothing(case, pristine, tmp_path, capsys):
    run = shutil.copytree(pristine, tmp_path / "run")
    before = snapshot(run)
    path = R / case.args[0]
    code, _, err = run_cli(["review", "import", str(run), str(path)], capsys)
    assert code == 2, err
    for needle in case.needles:
        assert needle in err, (needle, err)
    assert "Traceback" not in err
    assert snapshot(run) == before


# --- trace, report and review on damaged run directories -----------------------------------------

def cut_mid_line(name: str, line: int = 3):
    def damage(run: Path) -> None:
        data = (run / name).read_bytes()
        starts = [0] + [i + 1 for i, b in enumerate(data) if b == ord("\n")]
        (run / name).write_bytes(data[:starts[line - 1] + 40])
    return damage


def keep_lines(name: str, n: int):
    def damage(run: Path) -> None:
        lines = (run / name).read_text().splitlines(keepends=True)
        (run / name).write_text("".join(lines[:n]))
    return damage


def edit_record(name: str, index: int, change: Callable[[dict], None]):
    def damage(run: Path) -> None:
        rows = [json.loads(line) for line in (run / name).read_text().splitlines()]
        change(rows[index])
        (run / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return damage


def write(name: str, data: bytes):
    def damage(run: Path) -> None:
        (run / name).write_bytes(data)
    return damage


def append(name: str, data: bytes):
    def damage(run: Path) -> None:
        with (run / name).open("ab") as fh:
            fh.write(data)
    return damage


def repeat_first_line(run: Path) -> None:
    append("samples.jsonl", (run / "samples.jsonl").read_bytes().splitlines(True)[0])(run)


REWRITE = "run the same `robustft denoise` command again"
DAMAGE_CASES = [
    Case("samples cut mid-record", [], ["samples.jsonl, line 3", "cut short", REWRITE], damage=cut_mid_line("samples.jsonl")),
    Case("samples cut at a line end", [], ["samples.jsonl: 5 records, but", "summary.json counts 12", REWRITE],
         damage=keep_lines("samples.jsonl", 5)),
    Case("samples emptied", [], ["samples.jsonl: holds no records", REWRITE], damage=write("samples.jsonl", b"")),
    Case("samples not UTF-8", [], ["samples.jsonl, line 13", "not UTF-8", REWRITE],
         damage=append("samples.jsonl", b'{"id": "\xff\xfe"}\n')),
    Case("a score that is text", [], ["samples.jsonl, record 2 (id q1)", "field 'score'", REWRITE],
         damage=edit_record("samples.jsonl", 1, lambda r: r.update(score="0.05"))),
    Case("nodes that are a list", [], ["samples.jsonl, record 3 (id q2)", "field 'nodes'"],
         damage=edit_record("samples.jsonl", 2, lambda r: r.update(nodes=["base"]))),
    Case("an unknown status", [], ["record 1 (id q0)", "field 'status'"],
         damage=edit_record("samples.jsonl", 0, lambda r: r.update(status="done"))),
    Case("a similarity that is text", [], ["record 2 (id q1)", "field 'nodes.context.examples.0.similarity'"],
         damage=edit_record("samples.jsonl", 1, lambda r: r["nodes"]["context"]["examples"][0].update(similarity="high"))),
    Case("a repeated record", [], ["samples.jsonl, record 13: id q0 appears again"], damage=repeat_first_line),
    Case("summary cut short", [], ["summary.json: the file is cut short", REWRITE],
         damage=lambda run: (run / "summary.json").write_bytes((run / "summary.json").read_bytes()[:100])),
    Case("summary a list", [], ["summary.json: expected a JSON object", REWRITE], damage=write("summary.json", b"[]\n")),
    Case("summary selection text", [], ["summary.json: field 'selection'"],
         damage=lambda run: (run / "summary.json").write_text(json.dumps(
             {**json.loads((run / "summary.json").read_text()), "selection": "beta=0.5"}))),
    Case("fine-tuning set cut mid-record", [], ["denoised.jsonl, line 3", "cut short", REWRITE],
         damage=cut_mid_line("denoised.jsonl")),
    Case("fine-tuning set missing rows", [], ["denoised.jsonl: 4 samples, but", "keeps 10", REWRITE],
         damage=keep_lines("denoised.jsonl", 4)),
    Case("review log damaged", [], ["review_log.jsonl, line 1", "repair or delete the damaged line"],
         damage=write("review_log.jsonl", b'{"id": "q1", "after": {"label": "A"\n')),
    Case("review log entry without an id", [], ["review_log.jsonl, review decision 1", "field 'id'"],
         damage=write("review_log.jsonl", b'{"decision": "keep", "after": {"label": "A", "source": "human"}}\n')),
]
COMMANDS = {"trace": ["trace", "{run}", "q1"], "report": ["report", "{run}"],
            "review export": ["review", "export", "{run}", "--out", "{tmp}/review.csv"],
            "review import": ["review", "import", "{run}", "{tmp}/decisions.csv"]}
# report reads a run as the other commands do (rundir.load_run), and draws figures slowly: a few cases suffice.
REPORT_CASES = ("samples cut mid-record", "summary a list", "fine-tuning set missing rows", "a score that is text")


def applies(case: Case, command: str) -> bool:
    if case.name.startswith("review log"):  # only trace and import read the review log
        return command in ("trace", "review import")
    return command != "report" or case.name in REPORT_CASES


@pytest.mark.parametrize("case, command", [(c, cmd) for c in DAMAGE_CASES for cmd in COMMANDS if applies(c, cmd)],
                         ids=[f"{c.name}-{cmd}" for c in DAMAGE_CASES for cmd in COMMANDS if applies(c, cmd)])
def test_a_damaged_run_directory_gives_a_message_not_a_traceback(case, command, pristine, tmp_path, capsys):
    run = shutil.copytree(pristine, tmp_path / "run")
    case.damage(run)
    before = snapshot(run)
    (tmp_path / "decisions.csv").write_text("id,decision\nq1,keep\n")
    argv = [a.replace("{run}", str(run)).replace("{tmp}", str(tmp_path)) for a in COMMANDS[command]]
    code, _, err = run_cli(argv, capsys)
    assert code == 2, err
    for needle in case.needles:
        assert needle in err, (needle, err)
    assert "Traceback" not in err
    assert snapshot(run) == before
    assert not (tmp_path / "review.csv").exists()


@pytest.mark.parametrize("name", ["samples.jsonl", "summary.json", "denoised.jsonl"])
def test_random_damage_never_gives_a_traceback(name, pristine, tmp_path, capsys):
    """Cut or overwrite the file at 40 seeded random places: each time a clean answer or a message."""
    import random

    rng = random.Random(name)
    original = (pristine / name).read_bytes()
    run = shutil.copytree(pristine, tmp_path / "run")
    outcomes = set()
    for i in range(40):
        at = rng.randrange(len(original))
        if i % 2:
            damaged = original[:at]
        else:
            damaged = original[:at] + bytes([rng.choice(b'{}[]":,0a\n\xff')]) + original[at + 1:]
        (run / name).write_bytes(damaged)
        for argv in (["trace", str(run), "q2"], ["review", "export", str(run), "--out", str(tmp_path / "r.csv"),
                                                  "--force"]):
            code = main(argv)
            err = capsys.readouterr().err
            assert code in (0, 2) and "Traceback" not in err, (at, damaged[max(0, at - 30):at + 30], err)
            if code == 2:
                assert name in err or "samples.jsonl" in err, err
            outcomes.add(code)
    assert 2 in outcomes
