"""One shape per sample (`run.records.SampleRecord`, `agents.state.NodeRecord`): the records a real
run writes read back against it, rebuild the graph state they were made from, and write again to
the same bytes.

Two real runs against the simulated experts (`robustft.sim`, over HTTP, in this process) supply
the records: multiple choice with injected server errors and unreadable replies (failed and
dropped samples), a reflection round, and the reviewer skipped where the answers agree (and once
switched off); and an
open-ended chat file with trust scores, trust-based selection and a system prompt per sample.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import orjson
import pytest

from robustft.config import load_config
from robustft.data import read_jsonl, write_jsonl
from robustft.run.journal import dump_line
from robustft.run.outputs import final_record
from robustft.run.records import CARRIED, DECIDED, FIELDS, RECORD, SampleRecord, sample_record, state_of
from robustft.run.rundir import load_run
from robustft.run.runner import denoise
from robustft.sim import SimServer
from robustft.sim.open_data import make_open_data

WORDS = ["river", "stone", "cloud", "magnet", "engine", "forest", "salt", "copper", "glacier", "spring",
         "lamp", "mirror", "wheel", "seed", "storm", "bridge"]


def multiple_choice(folder: Path, rows: int) -> tuple[Path, Path]:
    """A gold file for the server and a noisy one (a third of the labels another option)."""
    rng = random.Random(7)
    gold, noisy = folder / "gold.csv", folder / "noisy.csv"
    with gold.open("w", newline="") as g, noisy.open("w", newline="") as n:
        writers = csv.writer(g), csv.writer(n)
        for w in writers:
            w.writerow(["id", "question", "options", "answer"])
        for i in range(rows):
            a, b, c = rng.sample(WORDS, 3)
            options = json.dumps([f"the {a} gets {how} than the {c}" for how in ("warmer", "colder", "heavier", "older")])
            answer = rng.choice("ABCD")
            label = answer if rng.random() > 0.34 else rng.choice([x for x in "ABCD" if x != answer])
            writers[0].writerow([f"m{i}", f"Question {i}: what happens when the {a} meets the {b}?", options, answer])
            writers[1].writerow([f"m{i}", f"Question {i}: what happens when the {a} meets the {b}?", options, label])
    return gold, noisy


def run(out: Path, data: Path, base_url: str, **sections) -> Path:
    config = load_config(None, {"model": {"provider": "openai", "name": "sim", "base_url": base_url, **sections.pop("model", {})},
                                "data": {"path": str(data)}, "out": str(out), **sections})
    denoise(config, progress=False, preflight=False, log=lambda message: None)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("records")
    gold, noisy = multiple_choice(tmp, 40)
    found = {}
    # Server errors with no retry: failed samples; replies without an answer, never re-asked: unreadable.
    with SimServer(gold, accuracy=0.75, seed=3, faults="500,no_answer", fault_rate=0.08) as sim:
        found["multiple_choice"] = run(tmp / "mc", noisy, sim.base_url,
                                       model={"max_retries": 0, "give_up_after_s": 600},
                                       denoise={"parse_retries": 0, "reflection_rounds": 1, "concurrency": 8,
                                                "embedding_base_url": sim.base_url, "embedding_model": "sim-embed"})
    # With the reviewer switched off an unreadable context answer is an unreadable relabel: dropped.
    with SimServer(gold, accuracy=0.75, seed=4, faults="no_answer", fault_rate=0.3) as sim:
        found["no_reviewer"] = run(tmp / "no-reviewer", noisy, sim.base_url,
                                   denoise={"parse_retries": 0, "ablate": ["reviewer"], "concurrency": 8,
                                            "embedding_base_url": sim.base_url, "embedding_model": "sim-embed"})
    folder = tmp / "open"
    make_open_data(gold, folder, noise=0.5, limit=24, seed=3)
    chat = tmp / "chat.messages.jsonl"
    write_jsonl(chat, [{**r, "messages": [{"role": "system", "content": "Answer in one short paragraph."},
                                           *r["messages"]]} for r in read_jsonl(folder / "noisy.messages.jsonl")])
    with SimServer(folder / "gold.csv", accuracy=0.8, seed=1) as sim:
        found["open"] = run(tmp / "open-run", chat, sim.base_url,
                            denoise={"checker": "trust", "trust_selection": True, "review": "always",
                                     "concurrency": 8, "embedding_base_url": sim.base_url,
                                     "embedding_model": "sim-embed"})
    return found


def test_the_runs_cover_every_kind_of_record(runs):
    mc = [r for kind in ("multiple_choice", "no_reviewer") for r in read_jsonl(runs[kind] / "samples.jsonl")]
    statuses = {r["status"] for r in mc}
    assert {"clean", "failed", "dropped"} <= statuses and statuses & {"relabeled", "confirmed"}, statuses
    assert any(r["reason"] == "unreadable" for r in mc)
    assert any(node.get("skipped") for r in mc for node in r["nodes"].values())
    assert any(node.get("rounds") for r in mc for node in r["nodes"].values())
    assert any(set(node) == {"error"} for r in mc for node in r["nodes"].values())  # a node whose model kept failing
    assert any(node.get("examples") for r in mc for node in r["nodes"].values())
    assert all("conversation" not in r and "trust" not in r for r in mc)  # a table's records as they were
    open_ = read_jsonl(runs["open"] / "samples.jsonl")
    assert all(r["conversation"][0]["role"] == "system" for r in open_)
    assert all(r["trust_signals"] is not None for r in open_ if r["status"] != "failed")
    assert any("relabel_trust" in r for r in open_)


@pytest.mark.parametrize("kind", ["multiple_choice", "no_reviewer", "open"])
def test_write_read_rebuild_write_gives_the_same_bytes(runs, kind):
    out = runs[kind]
    lines = (out / "samples.jsonl").read_bytes().splitlines(keepends=True)
    tolerance = load_run(out).tolerance  # read: load_run checks every record against SampleRecord
    for line in lines:
        record: SampleRecord = orjson.loads(line)
        RECORD.validate_python(record)
        assert list(record) == [f for f in FIELDS if f in record]  # written in the declared order
        state = state_of(record)  # rebuild
        again = sample_record(state, record["task"], record["fingerprint"])  # write, as it left the graph
        again = final_record(again, record["status"] in ("relabeled", "confirmed"), tolerance)  # then selected
        assert dump_line(again) == line, record["id"]


def test_a_record_rebuilds_the_state_the_graph_gave_it(runs):
    for record in read_jsonl(runs["multiple_choice"] / "samples.jsonl"):
        state = state_of(record)
        assert state["label"] == record["original_label"] and state["nodes"] == record["nodes"]
        assert state["examples"] is None
        expected = {"relabeled": "candidate", "confirmed": "candidate"}.get(record["status"], record["status"])
        if record["status"] == "dropped":
            expected = "unreadable" if record["reason"] == "unreadable" else "candidate"
        assert state["status"] == expected


def test_every_field_is_carried_from_the_state_or_decided_by_the_runner():
    """A field added to `SampleRecord` says where it comes from, or writing a record fails here."""
    assert set(FIELDS) == set(CARRIED) | set(DECIDED)
    assert set(CARRIED) & set(DECIDED) == {"error"}  # the state's error, or the runner's "did not finish"


def test_a_record_the_reader_refuses_names_the_field():
    from pydantic import ValidationError

    good = {"id": "a", "original_label": "A", "status": "clean", "nodes": {"base": {"answer": "A", "score": 0.1}}}
    RECORD.validate_python(good)
    for bad, where in (({**good, "score": "0.5"}, ("score",)),
                       ({**good, "nodes": {"base": {"attempts": "2"}}}, ("nodes", "base", "attempts")),
                       ({**good, "status": "done"}, ("status",)),
                       ({k: v for k, v in good.items() if k != "original_label"}, ("original_label",))):
        with pytest.raises(ValidationError) as caught:
            RECORD.validate_python(bad)
        assert caught.value.errors()[0]["loc"] == where


def test_a_finished_runs_record_must_have_a_final_status(runs, tmp_path):
    """noisy and candidate are records of a run still going: in a finished run's samples.jsonl the
    message names the statuses a finished run has."""
    import shutil

    from robustft.errors import UserError

    run_dir = shutil.copytree(runs["multiple_choice"], tmp_path / "run")
    records = read_jsonl(run_dir / "samples.jsonl")
    records[2]["status"] = "noisy"
    write_jsonl(run_dir / "samples.jsonl", records)
    with pytest.raises(UserError) as caught:
        load_run(run_dir)
    message = str(caught.value)
    assert "record 3" in message and "field 'status'" in message and "'noisy'" in message
    assert "'clean', 'relabeled', 'confirmed', 'dropped' or 'failed'" in message
