"""Hostile run directories: symbolic links planted where robustft writes, other people's files in
--out, and commands killed at every write. Each case runs the real command line and asserts that
nothing outside the run directory is created, changed or deleted, and that nothing is lost."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from robustft.cli import main
from robustft.run.rundir import PLOT_NAMES, PLOTS, RUN_NAMES
from robustft.sim import SimServer

from conftest import write_toy_mc_csv
from recorded import make_run, read_jsonl

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    result, _ = make_run(tmp_path_factory.mktemp("hostile-files"))
    return result.out_dir


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toy_mc_csv(tmp_path_factory.mktemp("toy") / "toy.csv")


@pytest.fixture(scope="module")
def sim(toy):
    with SimServer(toy, accuracy=1.0, seed=0) as server:
        yield server


def state(d: Path) -> dict[str, tuple]:
    """Everything about a folder a command could change: each entry's kind, bytes, mode and time."""
    out = {}
    for p in sorted(d.rglob("*")):
        st = p.lstat()
        kind = "link" if p.is_symlink() else "dir" if p.is_dir() else "file"
        data = os.readlink(p) if kind == "link" else p.read_bytes() if kind == "file" else None
        out[str(p.relative_to(d))] = (kind, data, st.st_mode, st.st_mtime_ns)
    return out


def outside_victims(outside: Path) -> dict[str, Path]:
    """Where each planted link points: an existing file (to be overwritten, cut or appended to), an
    existing folder (to be written into), or nothing yet (to be created)."""
    outside.mkdir()
    targets = {}
    for i, name in enumerate(RUN_NAMES):
        target = outside / f"victim-{name.strip('.')}"
        if i % 3 == 0:
            target.write_text(f"precious file behind {name}\n")
        elif i % 3 == 1:
            target.mkdir()
            (target / "keep.txt").write_text("precious\n")
        targets[name] = target  # i % 3 == 2: dangling, must not be created
    for name in PLOT_NAMES:
        (outside / f"victim-{name}.png").write_bytes(b"\x89PNG precious")
    return targets


COMMANDS = {
    "trace": ["trace", "{run}", "q1"],
    "report": ["report", "{run}"],
    "review export": ["review", "export", "{run}"],
    "review import": ["review", "import", "{run}", "{tmp}/decisions.csv"],
    "export": ["export", "{run}", "--format", "messages"],
    "doctor": ["doctor", "{run}", "--repair"],
}


def run_cli(argv, capsys):
    code = main(argv)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_link_at_any_name_robustft_writes_is_refused_and_nothing_outside_changes(command, pristine, tmp_path,
                                                                                   capsys):
    """One link at a time, for every name robustft writes in a run directory (and each figure in
    plots/): the command stops with exit 2 naming the link, before it writes anything anywhere."""
    outside = tmp_path / "outside"
    targets = outside_victims(outside)
    (tmp_path / "decisions.csv").write_text("id,decision\nq1,keep\nq2,B\n")
    argv = [a.replace("{run}", str(tmp_path / "run")).replace("{tmp}", str(tmp_path)) for a in COMMANDS[command]]
    before = state(outside)
    links = [(name, targets[name]) for name in RUN_NAMES]
    links += [(f"{PLOTS}/{name}.png", outside / f"victim-{name}.png") for name in PLOT_NAMES]
    for name, target in links:
        run = shutil.copytree(pristine, tmp_path / "run")
        if "/" in name:
            (run / PLOTS).mkdir(exist_ok=True)
        if (run / name).exists():
            (run / name).unlink()
        (run / name).symlink_to(target)
        inside = state(run)
        code, err = run_cli(argv, capsys)
        assert code == 2, (name, err)
        assert f"{run / name}: is a symbolic link" in err and "never writes through a symbolic link" in err, err
        assert "Traceback" not in err
        assert state(outside) == before, f"{command} changed something outside the run directory via {name}"
        assert state(run) == inside, f"{command} wrote in the run directory before refusing {name}"
        shutil.rmtree(run)


def test_denoise_into_a_folder_of_links_writes_nothing_outside(toy, sim, tmp_path, capsys):
    """--out is a folder where every name robustft would write is a link out of it: all at once, then
    each alone. Nothing outside changes, no model is called, and the message names the link."""
    outside = tmp_path / "outside"
    targets = outside_victims(outside)
    before = state(outside)
    out = tmp_path / "out"
    served = sim.requests
    for names in [list(RUN_NAMES)] + [[n] for n in RUN_NAMES]:
        out.mkdir()
        for name in names:
            (out / name).symlink_to(targets[name])
        code, err = run_cli(["denoise", "--data", str(toy), "--out", str(out), "--model", "sim", "--base-url",
                             sim.base_url, "--quiet"], capsys)
        assert code == 2, (names, err)
        assert "is a symbolic link" in err and (len(names) > 1 or f"{out / names[0]}:" in err), err
        assert state(outside) == before, f"denoise changed something outside --out via {names}"
        assert sorted(os.listdir(out)) == sorted(names), "denoise wrote into --out before refusing"
        shutil.rmtree(out)
    assert sim.requests == served


def test_denoise_removes_only_its_own_temporaries(toy, sim, tmp_path, capsys):
    """--out is an existing folder with an editor's swap file, a user's build folder and a stale
    temporary a killed run left: only the last goes."""
    out = tmp_path / "out"
    out.mkdir()
    theirs = [".notes.txt.swp", ".build.tmp", ".samples.jsonl.tmp", ".summary.json.mine.tmp", ".cache.abcdefgh.tmp"]
    for name in theirs[:3]:
        (out / name).write_text("someone's work\n")
    for name in theirs[3:]:
        (out / name).mkdir()
        (out / name / "inside.txt").write_text("someone's work\n")
    (out / ".samples.jsonl.k3x_9zqa.tmp").write_text('{"id": "half a rec')  # a killed run's
    (out / ".denoised.jsonl.next.tmp").write_text("staged by a killed run\n")
    code, err = run_cli(["denoise", "--data", str(toy), "--out", str(out), "--model", "sim", "--base-url",
                         sim.base_url, "--quiet"], capsys)
    assert code == 0, err
    names = set(os.listdir(out))
    assert set(theirs) <= names
    assert ".samples.jsonl.k3x_9zqa.tmp" not in names and ".denoised.jsonl.next.tmp" not in names
    assert (out / ".build.tmp").read_text() == "someone's work\n"
    assert (out / ".cache.abcdefgh.tmp" / "inside.txt").is_file()


def test_the_next_export_removes_a_killed_exports_temporary(pristine, tmp_path, capsys):
    """An export killed mid-write leaves `.NAME.XXXXXXXX.tmp` beside its output (killed here for real,
    at its rename, by tests/killpoint.py); the next export of that file removes it, and only it."""
    run = shutil.copytree(pristine, tmp_path / "run")
    out = tmp_path / "exports"
    out.mkdir()
    (out / ".other.jsonl.abcdefgh.tmp").write_text("another file's temporary: not ours to remove\n")
    target = out / "set.jsonl"
    for n in range(1, 10):  # the first write that leaves a temporary behind when killed
        proc = subprocess.run([sys.executable, str(TESTS / "killpoint.py"), str(n), str(out), "export", str(run),
                               "--format", "messages", "--out", str(target)], capture_output=True, text=True,
                              timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert proc.returncode in (-9, 0), proc.stderr
        if any(p.name.startswith(".set.jsonl.") for p in out.iterdir()):
            break
    else:
        pytest.fail("no kill left a temporary")
    assert not target.exists()
    code, err = run_cli(["export", str(run), "--format", "messages", "--out", str(target)], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == [".other.jsonl.abcdefgh.tmp", "set.jsonl"]


# --- review import killed at every write ------------------------------------------------------------

def reviewed(run: Path) -> list[dict]:
    return read_jsonl(run / "denoised.jsonl")


def test_review_import_killed_at_every_write_loses_no_decision(pristine, tmp_path):
    """The real `robustft review import`, SIGKILLed at its 1st, 2nd, ... write in the run directory
    (tests/killpoint.py, an audit hook: deterministic). After each kill the run directory reads as
    either no decision or all of them (never some), and importing again, or resuming `denoise`,
    ends with exactly the fine-tuning set of an import that was never interrupted."""
    decisions = tmp_path / "decisions.csv"
    decisions.write_text("id,decision,note\nq1,drop,\nq2,B,fixed by hand\nq5,accept,\nq3,keep,\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def import_(run: Path, kill_at: int) -> int:
        return subprocess.run([sys.executable, str(TESTS / "killpoint.py"), str(kill_at), str(run), "review",
                               "import", str(run), str(decisions)], capture_output=True, text=True, timeout=120,
                              env={**env, "KILLPOINT_COUNT": str(tmp_path / "count")}).returncode

    clean = shutil.copytree(pristine, tmp_path / "clean")
    assert import_(clean, 10 ** 6) == 0
    writes = int((tmp_path / "count").read_text())
    expected = reviewed(clean)
    tool_set = read_jsonl(pristine / "denoised.jsonl")
    assert writes >= 3 and expected != tool_set
    assert {d["id"] for d in expected} == {"q0", "q2", "q3", "q4", "q5", "q6", "q7", "q8", "q9", "q10", "q11"}

    for n in range(1, writes + 1):
        run = shutil.copytree(pristine, tmp_path / f"killed-{n}")
        assert import_(run, n) == -9
        # What every reading command sees now: all decisions or none.
        code = subprocess.run([sys.executable, "-m", "robustft", "review", "export", str(run), "--out",
                               str(tmp_path / f"seen-{n}.jsonl")], capture_output=True, text=True, timeout=120,
                              env=env).returncode
        assert code == 0
        seen = {r["id"]: r["current_label"] for r in read_jsonl(tmp_path / f"seen-{n}.jsonl")}
        assert seen in ({"q1": "B", "q2": "D", "q3": None, "q5": None},
                        {"q1": None, "q2": "B", "q3": "D", "q5": "B"}), (n, seen)
        assert import_(run, 10 ** 6) == 0, n
        assert reviewed(run) == expected, n
        log = read_jsonl(run / "review_log.jsonl")
        assert {e["id"] for e in log} == {"q1", "q2", "q3", "q5"}, n


def test_a_resumed_denoise_after_a_killed_import_keeps_the_logged_decisions(pristine, tmp_path):
    """Killed just before denoised.jsonl is replaced (the log already written): `denoise` on the run
    directory (resumed: no model is called) rebuilds the fine-tuning set with every decision."""
    decisions = tmp_path / "decisions.csv"
    decisions.write_text("id,decision\nq1,drop\nq2,B\n", encoding="utf-8")
    shutil.copytree(pristine, tmp_path / "run")
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KILLPOINT_COUNT": str(tmp_path / "count")}
    argv = [sys.executable, str(TESTS / "killpoint.py"), "{n}", str(run), "review", "import", str(run), str(decisions)]
    probe = shutil.copytree(pristine, tmp_path / "probe")
    subprocess.run([a.replace("{n}", "1000000").replace(str(run), str(probe)) for a in argv], env=env, check=True,
                   capture_output=True, timeout=120)
    last = int((tmp_path / "count").read_text())  # the last write is denoised.jsonl's rename
    proc = subprocess.run([a.replace("{n}", str(last)) for a in argv], env=env, capture_output=True, timeout=120)
    assert proc.returncode == -9
    assert len(read_jsonl(run / "review_log.jsonl")) == 2
    assert read_jsonl(run / "denoised.jsonl") == read_jsonl(pristine / "denoised.jsonl")  # not yet replaced
    again, fakes = make_run(tmp_path)
    assert all(not f.calls for f in fakes.values())
    by_id = {d["id"]: d for d in read_jsonl(run / "denoised.jsonl")}
    assert "q1" not in by_id and by_id["q2"]["label"] == "B" and by_id["q2"]["source"] == "human"


def test_a_torn_last_line_of_the_review_log_is_left_out_and_cut_by_the_next_import(pristine, tmp_path, capsys):
    """A power cut in the middle of the log's one write: the torn line was never reported imported."""
    run = shutil.copytree(pristine, tmp_path / "run")
    (run / "review_log.jsonl").write_bytes(b'{"id": "q1", "after": null, "decis')
    code, err = run_cli(["trace", str(run), "q1"], capsys)
    assert code == 0, err
    decisions = tmp_path / "decisions.csv"
    decisions.write_text("id,decision\nq2,B\n", encoding="utf-8")
    code, err = run_cli(["review", "import", str(run), str(decisions)], capsys)
    assert code == 0, err
    log = (run / "review_log.jsonl").read_text().splitlines()
    assert len(log) == 1 and json.loads(log[0])["id"] == "q2"


# --- a damaged response store -----------------------------------------------------------------------

class Messages(list):
    """What the robustft logger says, while the context lasts."""

    def __enter__(self):
        import logging

        class Keep(logging.Handler):
            def emit(handler, record):
                self.append(record.getMessage())

        self._handler = Keep()
        logging.getLogger("robustft").addHandler(self._handler)
        return self

    def __exit__(self, *exc):
        import logging

        logging.getLogger("robustft").removeHandler(self._handler)


def sql(path: Path, *statements, args=()):
    import sqlite3

    db = sqlite3.connect(str(path), isolation_level=None)
    for statement in statements:
        db.execute(statement, args) if args and "?" in statement else db.execute(statement)
    db.close()


def rerun_everything(tmp_path: Path):
    """The run again with samples.jsonl moved away: every sample is answered from the store."""
    (tmp_path / "run" / "samples.jsonl").unlink()
    return make_run(tmp_path)


def calls(fakes) -> int:
    return sum(len(f.calls) for f in fakes.values())


def test_damaged_rows_in_the_store_are_asked_again_not_failed_for_ever(tmp_path, capsys):
    import ormsgpack

    result, _ = make_run(tmp_path)
    store = result.out_dir / "responses.sqlite"
    sql(store, "UPDATE responses SET value = ? WHERE key IN (SELECT key FROM responses ORDER BY key LIMIT 4)",
        args=(ormsgpack.packb(None),))
    sql(store, "UPDATE responses SET value = ? WHERE key IN (SELECT key FROM responses ORDER BY key DESC LIMIT 3)",
        args=(b"\xff\x00garbage",))
    assert main(["doctor", str(result.out_dir)]) == 2
    assert f"{store}: 7 rows cannot be read" in capsys.readouterr().out
    with Messages() as said:
        again, fakes = rerun_everything(tmp_path)
    assert again.summary["failed"] == 0 and calls(fakes) == 7  # exactly the damaged rows, asked again
    assert any(f"{store}: a stored response cannot be read" in m for m in said), said
    assert read_jsonl(again.out_dir / "denoised.jsonl") == read_jsonl(result.out_dir / "denoised.jsonl")


def test_doctor_names_the_damage_and_repairs_it(tmp_path, capsys):
    import ormsgpack

    result, _ = make_run(tmp_path)
    run = result.out_dir
    store = run / "responses.sqlite"
    sql(store, "UPDATE responses SET value = ? WHERE key IN (SELECT key FROM responses ORDER BY key LIMIT 2)",
        args=(ormsgpack.packb(None),))
    sql(store, "INSERT INTO embeddings VALUES (X'00', X'0102030405')")  # a vector of the wrong size
    (run / ".summary.json.ab12cd34.tmp").write_text("{")  # a killed writer's
    (run / ".notes.swp").write_text("an editor's")
    before = state(run)
    assert main(["doctor", str(run)]) == 2
    out = capsys.readouterr().out
    assert f"{store}: 3 rows cannot be read" in out and "a repair would: rebuild it" in out
    assert "1 temporary files left by a killed command (.summary.json.ab12cd34.tmp)" in out
    assert state(run) == before  # checking changes nothing
    assert main(["doctor", str(run), "--repair"]) == 0
    out = capsys.readouterr().out
    assert "repaired:" in out and "kept 27 responses and 12 embeddings" in out, out
    assert main(["doctor", str(run)]) == 0 and "no problem found" in capsys.readouterr().out
    assert (run / ".notes.swp").exists() and not (run / ".summary.json.ab12cd34.tmp").exists()
    again, fakes = rerun_everything(tmp_path)
    assert again.summary["failed"] == 0 and calls(fakes) == 2


@pytest.mark.parametrize("damage", ["replaced table", "not a database", "dropped table"])
def test_a_store_with_a_replaced_table_or_no_database_is_named_and_rebuilt(damage, tmp_path, capsys):
    result, _ = make_run(tmp_path)
    run = result.out_dir
    store = run / "responses.sqlite"
    if damage == "replaced table":
        sql(store, "DROP TABLE responses", "CREATE TABLE responses (text TEXT)")
    elif damage == "dropped table":
        sql(store, "DROP TABLE embeddings")
    else:
        for end in ("-wal", "-shm"):
            Path(f"{store}{end}").unlink(missing_ok=True)
        store.write_bytes(b"this is no database" * 100)
    if damage != "dropped table":  # a missing table is made again by the run itself
        code, err = run_cli(["denoise", "--data", str(TESTS / "hostile" / "data" / "injection.csv"), "--out",
                             str(run), "--model", "sim", "--base-url", "http://127.0.0.1:9/v1", "--quiet"], capsys)
        assert code == 2 and str(store) in err and f"robustft doctor {run} --repair" in err, err
        assert "Traceback" not in err
    code, _ = run_cli(["doctor", str(run)], capsys)
    assert code == 2
    assert main(["doctor", str(run), "--repair"]) == 0, capsys.readouterr()
    capsys.readouterr()
    again, fakes = rerun_everything(tmp_path)
    assert again.summary["failed"] == 0
    assert (calls(fakes) == 0) == (damage == "dropped table")  # only the lost responses are asked again


# --- full and read-only disks -----------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A real 2 MB tmpfs mounted for the test (we run as root here, where chmod does not stop a
    write, so read-only and full are made by the file system itself). Skipped where mount is not
    permitted."""
    where = tmp_path / "disk"
    where.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({made.stderr.decode().strip()})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError:
            pass
    return filler


DISK_COMMANDS = {
    "report": ["report", "{run}"],
    "export": ["export", "{run}", "--format", "messages"],
    "review export": ["review", "export", "{run}"],
    "review import": ["review", "import", "{run}", "{tmp}/decisions.csv"],
}


@pytest.mark.parametrize("trouble", ["full", "read-only"])
def test_a_full_or_read_only_disk_gives_the_path_and_the_fix_and_nothing_half_written(trouble, small_disk, pristine,
                                                                                      tmp_path, capsys):
    run = shutil.copytree(pristine, small_disk / "run")
    (tmp_path / "decisions.csv").write_text("id,decision\nq1,keep\nq2,B\n")
    if trouble == "full":
        filler = fill(small_disk)
    else:
        subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    before = state(run)
    for command, args in DISK_COMMANDS.items():
        argv = [a.replace("{run}", str(run)).replace("{tmp}", str(tmp_path)) for a in args]
        code, err = run_cli(argv, capsys)
        assert code == 1, (command, err)
        assert "Traceback" not in err and "cannot write " + str(run) in err, (command, err)
        assert ("the disk is full" if trouble == "full" else "read-only") in err, err
        assert "Nothing was half-written" in err
        assert state(run) == before, f"{command} left something behind"
    if trouble == "full":
        filler.unlink()
    else:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    for command, args in DISK_COMMANDS.items():
        argv = [a.replace("{run}", str(run)).replace("{tmp}", str(tmp_path)) for a in args]
        code, err = run_cli(argv, capsys)
        assert code == 0, (command, err)


# --- review files: any text round-trips ---------------------------------------------------------

def test_any_text_round_trips_through_a_review_cell():
    """NUL, the escape's own prefix, formulas, quotes, surrogate-free Unicode: seeded random texts."""
    import random

    from robustft.inspect.review import neutralise_cell, restore_cell

    rng = random.Random(18)
    alphabet = ["\x00", "json:", "'", "=", "+", "-", "@", "\t", "\r", "\n", '"', ",", "\\u0000", "é", "\u202e", "a", "1"]
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 8)))
        cell = neutralise_cell(text)
        assert "\x00" not in cell and restore_cell(cell) == text, repr(text)


def test_review_export_of_text_with_nul_imports_back(pristine, tmp_path, capsys):
    """A run whose question and note hold a NUL (an older run, or text from a library call): the
    exported CSV holds no NUL byte, and importing it back works."""
    import csv

    from robustft.inspect.review import restore_cell

    run = shutil.copytree(pristine, tmp_path / "run")
    for name in ("samples.jsonl", "denoised.jsonl"):
        rows = read_jsonl(run / name)
        for r in rows:
            if r["id"] == "q1":
                r["question"] = "What is \x00 here?"
        (run / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["review", "export", str(run)]) == 0
    data = (run / "review.csv").read_bytes()
    assert b"\x00" not in data
    rows = list(csv.DictReader(data.decode("utf-8-sig").splitlines(True)))
    q1 = next(r for r in rows if r["id"] == "q1")
    assert restore_cell(q1["question"]) == "What is \x00 here?"
    for r in rows:
        r["decision"] = "keep" if r["id"] == "q1" else ""
        r["note"] = "checked \x00 by hand" if r["id"] == "q1" else ""
    from robustft.inspect.review import neutralise_cell

    with open(run / "review.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows({k: neutralise_cell(v) if k == "note" else v for k, v in r.items()} for r in rows)
    capsys.readouterr()
    assert main(["review", "import", str(run), str(run / "review.csv")]) == 0, capsys.readouterr().err
    log = read_jsonl(run / "review_log.jsonl")
    assert log[-1]["id"] == "q1" and log[-1]["note"] == "checked \x00 by hand"


def test_a_rebuilt_store_keeps_what_was_kept_beside_the_responses(tmp_path, capsys):
    """The meta table (the money a run spent, `--max-cost`) survives a rebuild."""
    from robustft.backends.store import ResponseStore

    result, _ = make_run(tmp_path)
    store = result.out_dir / "responses.sqlite"
    db = ResponseStore(store)
    db.write_meta("spent_usd", "1.25")
    db.close()
    sql(store, "UPDATE responses SET value = X'c0' WHERE key IN (SELECT key FROM responses LIMIT 1)")
    assert main(["doctor", str(result.out_dir), "--repair"]) == 0
    db = ResponseStore(store)
    assert db.read_meta("spent_usd") == "1.25" and len(db) == 28
    db.close()


def test_a_stored_vector_of_the_wrong_size_is_embedded_again(tmp_path):
    """An embedding row cut short or replaced by another model's: treated as missing, not a traceback."""
    result, _ = make_run(tmp_path)
    store = result.out_dir / "responses.sqlite"
    sql(store, "UPDATE embeddings SET vector = X'0102030405060708' WHERE key IN (SELECT key FROM embeddings LIMIT 2)")
    sql(store, "UPDATE embeddings SET vector = X'01' WHERE key IN (SELECT key FROM embeddings ORDER BY key DESC LIMIT 1)")
    with Messages() as said:
        again, fakes = rerun_everything(tmp_path)
    assert again.summary["failed"] == 0
    assert any(f"{store}: " in m and "stored embeddings are not of the run's size" in m for m in said), said
    assert read_jsonl(again.out_dir / "denoised.jsonl") == read_jsonl(result.out_dir / "denoised.jsonl")


@pytest.mark.parametrize("room", [0, 60_000])
def test_denoise_on_a_full_disk_names_the_path_then_finishes_once_space_is_freed(room, small_disk, toy, sim, capsys):
    """--out on a disk with no room at all, or with room for the start of the run only: exit 1, the
    path and the fix, no traceback; after the filler is deleted the same command finishes."""
    filler = small_disk / "filler"
    with open(filler, "wb", buffering=0) as fh:
        try:
            while os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize > room:
                fh.write(b"\0" * 4096)
        except OSError:
            pass
    out = small_disk / "run"
    argv = ["denoise", "--data", str(toy), "--out", str(out), "--model", "sim", "--base-url", sim.base_url, "--quiet"]
    code, err = run_cli(argv, capsys)
    assert code == 1, err
    assert "Traceback" not in err and f"{out}" in err and ("disk is full" in err or "Free space" in err), err
    filler.unlink()
    code, err = run_cli(argv, capsys)
    assert code == 0, err
    assert len(read_jsonl(out / "samples.jsonl")) == 24  # the toy set: every sample, once


def test_doctor_applies_decisions_a_killed_import_logged(pristine, tmp_path, capsys):
    """Killed after the log write, before denoised.jsonl: doctor names it and --repair applies them."""
    run = shutil.copytree(pristine, tmp_path / "run")
    decisions = tmp_path / "decisions.csv"
    decisions.write_text("id,decision\nq1,drop\nq2,B\n", encoding="utf-8")
    probe = shutil.copytree(pristine, tmp_path / "probe")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KILLPOINT_COUNT": str(tmp_path / "count")}
    subprocess.run([sys.executable, str(TESTS / "killpoint.py"), "1000000", str(probe), "review", "import", str(probe),
                    str(decisions)], env=env, check=True, capture_output=True, timeout=120)
    last = (tmp_path / "count").read_text()
    proc = subprocess.run([sys.executable, str(TESTS / "killpoint.py"), last, str(run), "review", "import", str(run),
                           str(decisions)], env=env, capture_output=True, timeout=120)
    assert proc.returncode == -9
    assert main(["doctor", str(run)]) == 2
    assert "lacks decisions logged in review_log.jsonl" in capsys.readouterr().out
    assert main(["doctor", str(run), "--repair"]) == 0
    capsys.readouterr()
    assert read_jsonl(run / "denoised.jsonl") == read_jsonl(probe / "denoised.jsonl")
    assert main(["doctor", str(run)]) == 0


def test_a_link_planted_after_the_check_is_refused_by_the_open_itself(tmp_path):
    """The check of the names comes first, but each open is O_NOFOLLOW too: a link planted in
    between (a race) is refused by the open, and atomic writes refuse to replace a link."""
    from robustft.errors import UserError
    from robustft.files import atomic_write, open_nofollow
    from robustft.run.journal import Journal

    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    link = tmp_path / "samples.jsonl"
    link.symlink_to(victim)
    for attempt in (lambda: open_nofollow(link, os.O_WRONLY | os.O_APPEND), lambda: Journal(link).open(),
                    lambda: atomic_write(link).__enter__()):
        with pytest.raises(UserError, match="samples.jsonl: is a symbolic link"):
            attempt()
    assert victim.read_text() == "precious\n" and link.is_symlink()
    assert sorted(os.listdir(tmp_path)) == ["samples.jsonl", "victim.txt"]
