import json
import os
from pathlib import Path

import pytest

from robustft.config import DataConfig
from robustft.data import Dataset, Sample, load_dataset, read_jsonl, write_jsonl
from robustft.errors import InputError, UserError

from shared_data import ARC_ROWS, FPB_ROWS, SHARED_DATA as SHARED, needs_full_data

OPTS = '"[""red"", ""green"", ""blue""]"'


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text, encoding="utf-8")
    return p


def load(path, **cfg):
    return load_dataset(DataConfig(**cfg), path)


def error_of(path, **cfg) -> str:
    with pytest.raises(InputError) as info:
        load(path, **cfg)
    assert isinstance(info.value, UserError)
    return str(info.value)


# --- the real benchmark files ----------------------------------------------------------------


def test_load_arc_noisy30():
    ds = load(SHARED / "arc" / "noisy30.csv")
    assert isinstance(ds, Dataset)
    assert len(ds.samples) == ARC_ROWS
    assert ds.task == "multiple_choice"
    first = ds.samples[0]
    assert first.id == "NCEOGA_2013_5_33"
    assert first.question.startswith("Which characteristic do single-celled organisms")
    assert first.label == "A"
    assert first.options[0] == "Both have cells with specialized functions for each life process."
    assert len(first.options) == 4
    assert first.row == 0 and first.extra == {}
    assert ds.samples[-1].row == ARC_ROWS - 1
    assert len({s.id for s in ds.samples}) == ARC_ROWS
    assert all(s.label in "ABCDE" and ord(s.label) - 65 < len(s.options) for s in ds.samples)
    assert ds.path.resolve() == (SHARED / "arc" / "noisy30.csv").resolve()


def test_load_fpb_noisy50_ids_are_row_numbers():
    ds = load(SHARED / "fpb" / "noisy50.csv")
    assert len(ds.samples) == FPB_ROWS
    assert ds.task == "multiple_choice"
    assert [s.id for s in ds.samples] == [str(i) for i in range(FPB_ROWS)]
    first = ds.samples[0]
    assert first.options == ["negative", "neutral", "positive"]
    assert first.label == "C"
    assert "\n" in first.question  # multi-line quoted field
    assert first.question.endswith("EUR 305.6 mn .")


def test_load_fpb_labeled_keeps_extra_column_and_limit():
    ds = load(SHARED / "fpb" / "labeled.csv", limit=5)
    assert len(ds.samples) == 5
    assert ds.samples[0].extra == {"gt": "negative"}
    assert ds.samples[0].label == "A"


@needs_full_data("the published noisy70.csv's out-of-range label is at row 893, past the carried rows")
def test_arc_noisy70_out_of_range_label():
    path = SHARED / "arc" / "noisy70.csv"
    msg = error_of(path)
    assert "noisy70.csv" in msg and "row 893" in msg and "field 'answer'" in msg
    assert "NYSEDREGENTS_2008_4_15" in msg and "A, B, C" in msg
    ds = load_dataset(DataConfig(), path, out_of_range_labels="keep")
    assert ds.samples[892].label == "D" and len(ds.samples[892].options) == 3


# --- formats -------------------------------------------------------------------------------


def test_csv_bom_multiline_and_label_forms(tmp_path):
    text = (
        "\ufeffid,question,answer,options,source\n"
        f'q1,"Which colour\nis grass?",b,{OPTS},web\n'
        f"q2,Sky colour?,blue,{OPTS},book\n"
        f"q3,Blood colour?, A ,{OPTS},\n"
    )
    ds = load(write(tmp_path, "mc.csv", text))
    assert ds.task == "multiple_choice"
    assert [s.label for s in ds.samples] == ["B", "C", "A"]
    assert ds.samples[0].question == "Which colour\nis grass?"
    assert ds.samples[0].options == ["red", "green", "blue"]
    assert [s.extra for s in ds.samples] == [{"source": "web"}, {"source": "book"}, {"source": ""}]
    assert [s.row for s in ds.samples] == [0, 1, 2]


def test_csv_crlf_and_blank_lines(tmp_path):
    p = write(tmp_path, "crlf.csv", b"question,answer\r\nWhat is 2+2?,4\r\n\r\nWhat is 3+3?,6\r\n")
    ds = load(p)
    assert [(s.id, s.question, s.label) for s in ds.samples] == [("0", "What is 2+2?", "4"), ("1", "What is 3+3?", "6")]
    assert ds.task == "numeric"


def test_tsv(tmp_path):
    ds = load(write(tmp_path, "d.tsv", "question\tanswer\nCapital of France?\tParis\n"))
    assert ds.task == "text" and ds.samples[0].label == "Paris"


@pytest.mark.parametrize(
    "labels, task, expected",
    [
        (["4", "1,234", "-3.5", "50%"], "numeric", ["4", "1234", "-3.5", "50"]),
        (["$12", "3/4"], "numeric", ["12", "0.75"]),
        (["Paris", "42"], "text", ["Paris", "42"]),
        (["2+2", "4"], "text", ["2+2", "4"]),  # never evaluated
    ],
)
def test_task_inference(tmp_path, labels, task, expected):
    rows = "".join(f'"Q{i}?","{label}"\n' for i, label in enumerate(labels))
    ds = load(write(tmp_path, "t.csv", "question,answer\n" + rows))
    assert ds.task == task
    assert [s.label for s in ds.samples] == expected
    assert all(s.options is None for s in ds.samples)


def test_explicit_task_and_custom_columns(tmp_path):
    p = write(tmp_path, "c.csv", f"key,prompt,target,choices\nk1,Q?,12,{OPTS}\n")
    ds = load(p, id_column="key", question_column="prompt", answer_column="target",
              options_column="choices", task="text")
    s = ds.samples[0]
    assert ds.task == "text"
    assert (s.id, s.question, s.label, s.options) == ("k1", "Q?", "12", None)
    assert s.extra == {"choices": '["red", "green", "blue"]'}


def test_empty_options_column_is_not_multiple_choice(tmp_path):
    ds = load(write(tmp_path, "e.csv", "question,answer,options\nQ?,7,\nR?,8,[]\n"))
    assert ds.task == "numeric"
    assert ds.samples[0].options is None


def test_cfg_path_and_limit(tmp_path):
    p = write(tmp_path, "l.csv", "question,answer\n" + "".join(f"Q{i},{i}\n" for i in range(10)))
    ds = load_dataset(DataConfig(path=p, limit=3))
    assert [s.id for s in ds.samples] == ["0", "1", "2"]
    assert ds.path == p


def test_jsonl(tmp_path):
    lines = [
        {"id": 7, "question": "Sky?", "answer": "c", "options": ["red", "green", "blue"], "meta": {"k": 1}},
        {"id": 8, "question": "Grass?", "answer": "green", "options": '["red", "green", "blue"]', "meta": None},
    ]
    p = write(tmp_path, "d.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n\n")
    ds = load(p)
    assert ds.task == "multiple_choice"
    assert [(s.id, s.label) for s in ds.samples] == [("7", "C"), ("8", "B")]
    assert ds.samples[0].extra == {"meta": {"k": 1}}
    assert ds.samples[1].options == ["red", "green", "blue"]


def test_json_array(tmp_path):
    p = write(tmp_path, "d.json", json.dumps([{"question": "1+1?", "answer": 2}, {"question": "2+2?", "answer": 4.0}]))
    ds = load(p)
    assert ds.task == "numeric"
    assert [s.label for s in ds.samples] == ["2", "4"]


def test_hf_dataset_and_dataset_dict(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = {"question": ["Sky?", "Grass?", "Blood?"], "answer": ["C", "b", "red"],
            "options": [["red", "green", "blue"]] * 3, "difficulty": [1, 2, 3]}
    ds_dir = tmp_path / "single"
    datasets.Dataset.from_dict(rows).save_to_disk(str(ds_dir))
    ds = load(ds_dir)
    assert ds.task == "multiple_choice"
    assert [s.label for s in ds.samples] == ["C", "B", "A"]
    assert [s.id for s in ds.samples] == ["0", "1", "2"]
    assert ds.samples[2].extra == {"difficulty": 3}
    assert len(load(ds_dir, limit=2).samples) == 2

    train = datasets.Dataset.from_dict({"question": ["Q?"], "answer": ["Paris"]})
    dd_dir = tmp_path / "dict"
    datasets.DatasetDict({"train": train, "test": train}).save_to_disk(str(dd_dir))
    assert load(dd_dir).samples[0].label == "Paris"

    only_dir = tmp_path / "only"
    datasets.DatasetDict({"validation": train}).save_to_disk(str(only_dir))
    assert load(only_dir).task == "text"

    many_dir = tmp_path / "many"
    datasets.DatasetDict({"validation": train, "test": train}).save_to_disk(str(many_dir))
    msg = error_of(many_dir)
    assert "many" in msg and "validation, test" in msg and "train" in msg
    assert str(many_dir / "validation") in msg


def test_folder_that_is_not_a_dataset(tmp_path):
    (tmp_path / "folder").mkdir()
    msg = error_of(tmp_path / "folder")
    assert "folder" in msg and "save_to_disk" in msg


# --- errors ----------------------------------------------------------------------------------


def test_no_path_and_missing_file(tmp_path):
    with pytest.raises(InputError, match="data.path"):
        load_dataset(DataConfig())
    msg = error_of(tmp_path / "nope.csv")
    assert "nope.csv" in msg and "not found" in msg


@pytest.mark.parametrize("content, needle", [("", "empty"), ("\n\n", "empty"), ("question,answer\n", "only a header")])
def test_empty_and_header_only(tmp_path, content, needle):
    msg = error_of(write(tmp_path, "e.csv", content))
    assert "e.csv" in msg and needle in msg


def test_missing_column_lists_columns_and_config_key(tmp_path):
    msg = error_of(write(tmp_path, "m.csv", "id,prompt,answer\n1,Q,A\n"))
    assert "m.csv" in msg and "missing column 'question'" in msg
    assert "'id', 'prompt', 'answer'" in msg and "data.question_column" in msg
    msg = error_of(write(tmp_path, "m2.csv", "Question,answer\nQ,A\n"))
    assert "data.question_column: Question" in msg
    msg = error_of(write(tmp_path, "semi.csv", "question;answer\nQ;A\n"))
    assert "comma" in msg
    msg = error_of(write(tmp_path, "mc.csv", "question,answer\nQ,A\n"), task="multiple_choice")
    assert "missing column 'options'" in msg and "data.options_column" in msg


@pytest.mark.parametrize(
    "options_field, needle",
    [
        ("\"['red', 'green']\"", "Python list"),
        ("not a list", "not a JSON list"),
        ('"{""a"": 1}"', "not an object"),
        ('"[""red"", 3]"', "option 2 is a number"),
        ('"[""red"", "" ""]"', "option 2 is empty"),
    ],
)
def test_bad_options(tmp_path, options_field, needle):
    """Each bad options field names file, row and field, and says how to write options."""
    p = write(tmp_path, "o.csv", f"question,answer,options\nQ1,A,{OPTS}\nQ2,A,{options_field}\n")
    msg = error_of(p)
    assert "o.csv" in msg and "row 2" in msg and "field 'options'" in msg
    assert needle in msg and "fix:" in msg
    if "empty" not in needle:
        assert '["first option", "second option"]' in msg


def test_empty_question_and_label(tmp_path):
    msg = error_of(write(tmp_path, "q.csv", "id,question,answer\na,Q1,x\nb,  ,y\n"))
    assert "q.csv" in msg and "row 2" in msg and "field 'question'" in msg and "empty" in msg and "id 'b'" in msg
    msg = error_of(write(tmp_path, "l.csv", "question,answer\nQ1,x\nQ2,x\nQ3,\n"))
    assert "l.csv" in msg and "row 3" in msg and "field 'answer'" in msg and "empty" in msg


def test_label_not_an_option(tmp_path):
    p = write(tmp_path, "lab.csv", f"question,answer,options\nQ1,A,{OPTS}\nQ2,D,{OPTS}\n")
    msg = error_of(p)
    assert "lab.csv" in msg and "row 2" in msg and "field 'answer'" in msg
    assert "'D'" in msg and "A, B, C" in msg and "fix:" in msg
    msg = error_of(write(tmp_path, "lab2.csv", f"question,answer,options\nQ1,purple,{OPTS}\n"),
                   )
    assert "row 1" in msg and "'purple'" in msg
    with pytest.raises(InputError, match="purple"):
        load_dataset(DataConfig(), tmp_path / "lab2.csv", out_of_range_labels="keep")


def test_row_number_counts_data_rows_and_reports_line(tmp_path):
    text = f'question,answer,options\n"multi\nline\nquestion",A,{OPTS}\nQ2,Z,{OPTS}\n'
    msg = error_of(write(tmp_path, "ml.csv", text))
    assert "row 2" in msg and "starts on line 5" in msg


def test_mixed_options(tmp_path):
    msg = error_of(write(tmp_path, "mix.csv", f"question,answer,options\nQ1,A,{OPTS}\nQ2,A,\n"))
    assert "mix.csv" in msg and "row 2" in msg and "field 'options'" in msg and "row 1" in msg


def test_numeric_task_with_text_label(tmp_path):
    msg = error_of(write(tmp_path, "n.csv", "question,answer\nQ1,3\nQ2,three\n"), task="numeric")
    assert "n.csv" in msg and "row 2" in msg and "field 'answer'" in msg and "not a number" in msg
    assert "data.task" in msg


def test_duplicate_ids_name_both_rows(tmp_path):
    msg = error_of(write(tmp_path, "dup.csv", "id,question,answer\nx,Q1,a\ny,Q2,b\nx,Q3,c\n"))
    assert "dup.csv" in msg and "row 3" in msg and "row 1" in msg and "field 'id'" in msg and "'x'" in msg


def test_ragged_row(tmp_path):
    msg = error_of(write(tmp_path, "r.csv", "question,answer\nQ1,a\nHello, world,b\n"))
    assert "r.csv" in msg and "row 2" in msg and "3 fields" in msg and "quote" in msg


def test_duplicate_header(tmp_path):
    msg = error_of(write(tmp_path, "h.csv", "question,answer,answer\nQ,a,b\n"))
    assert "appears twice" in msg


def test_not_utf8(tmp_path):
    data = "question,answer\nQ1,a\nQ2,b\n".encode() + "Caf\u00e9?,c\n".encode("latin-1")
    msg = error_of(write(tmp_path, "enc.csv", data))
    assert "enc.csv" in msg and "row 3" in msg and "UTF-8" in msg and "0xE9" in msg
    assert "offset 29" in msg and "line 4" in msg
    msg = error_of(write(tmp_path, "u16.csv", "question,answer\n".encode("utf-16")))
    assert "UTF-16" in msg


def test_jsonl_errors(tmp_path):
    good = json.dumps({"question": "Q", "answer": "a"})
    msg = error_of(write(tmp_path, "bad.jsonl", f"{good}\n\n{{not json}}\n{good}\n"))
    assert "bad.jsonl" in msg and "line 3" in msg and "row 2" in msg and "not valid JSON" in msg
    msg = error_of(write(tmp_path, "trunc.jsonl", f'{good}\n{{"question": "Q2", "ans'))
    assert "line 2" in msg and "truncated" in msg
    msg = error_of(write(tmp_path, "list.jsonl", f"{good}\n[1, 2]\n"))
    assert "line 2" in msg and "not an object" in msg
    msg = error_of(write(tmp_path, "nokey.jsonl", f'{good}\n{{"question": "Q2"}}\n'))
    assert "row 2" in msg and "field 'answer'" in msg


def test_unsupported_extension(tmp_path):
    msg = error_of(write(tmp_path, "d.xlsx", "x"))
    assert "d.xlsx" in msg and ".xlsx" in msg and ".csv" in msg


# --- JSON Lines helpers ----------------------------------------------------------------------


def test_write_and_read_jsonl_roundtrip(tmp_path):
    path = tmp_path / "sub" / "out.jsonl"
    records = [{"id": "1", "text": "caf\u00e9\nnewline", "score": None}, {"id": "2", "p": Path("/x")},
               Sample(id="3", question="Q", label="A", options=None, row=2, extra={})]
    write_jsonl(path, records)
    assert path.read_text(encoding="utf-8").count("\n") == 3
    back = read_jsonl(path)
    assert back[0] == {"id": "1", "text": "caf\u00e9\nnewline", "score": None}
    assert back[1] == {"id": "2", "p": "/x"}
    assert back[2]["question"] == "Q" and back[2]["row"] == 2
    assert os.listdir(path.parent) == ["out.jsonl"]


def test_write_jsonl_is_atomic(tmp_path):
    path = tmp_path / "out.jsonl"
    write_jsonl(path, [{"a": 1}])
    with pytest.raises(TypeError):
        write_jsonl(path, [{"a": 2}, {"bad": object()}])
    assert read_jsonl(path) == [{"a": 1}]
    assert os.listdir(tmp_path) == ["out.jsonl"]
    write_jsonl(path, [])
    assert read_jsonl(path) == []


def test_read_jsonl_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_jsonl(tmp_path / "missing.jsonl")
    p = write(tmp_path, "x.jsonl", '{"a": 1}\n"just a string"\n')
    with pytest.raises(InputError, match=r"line 2 holds a string, not an object"):
        read_jsonl(p)
    p = write(tmp_path, "y.jsonl", '{"a": 1}\n{"a": \n')
    with pytest.raises(InputError, match=r"y\.jsonl.*line 2 is not valid JSON"):
        read_jsonl(p)


# --- more sources: Parquet, JSON holding a list, local datasets by name, hub names ------------


def test_parquet_with_real_lists_and_limit(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"id": ["p1", "p2", "p3"], "question": ["Sky?", "Grass?", "Blood?"],
                      "answer": ["C", "green", "a"], "options": [["red", "green", "blue"]] * 3,
                      "difficulty": [1, 2, 3]})
    pq.write_table(table, tmp_path / "d.parquet", row_group_size=1)
    ds = load(tmp_path / "d.parquet")
    assert ds.task == "multiple_choice" and [s.label for s in ds.samples] == ["C", "B", "A"]
    assert ds.samples[0].options == ["red", "green", "blue"] and ds.samples[2].extra == {"difficulty": 3}
    assert ds.source.kind == "parquet" and ds.source.columns == ["id", "question", "answer", "options", "difficulty"]
    assert [s.id for s in load(tmp_path / "d.parquet", limit=2).samples] == ["p1", "p2"]
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    msg = error_of(tmp_path / "bad.parquet")
    assert "bad.parquet" in msg and "Parquet" in msg and "fix:" in msg


@pytest.mark.parametrize("document, split, expected", [
    ({"data": [{"question": "Q1?", "answer": "a"}], "version": 2}, None, ["Q1?"]),
    ({"train": [{"question": "T?", "answer": "a"}], "test": [{"question": "E?", "answer": "b"}]}, None, ["T?"]),
    ({"train": [{"question": "T?", "answer": "a"}], "test": [{"question": "E?", "answer": "b"}]}, "test", ["E?"]),
    ({"questions": [{"question": "Only?", "answer": "a"}]}, None, ["Only?"]),
    ({"question": "One record?", "answer": "a", "tags": ["x"]}, None, ["One record?"]),
])
def test_json_object_holding_the_list(tmp_path, document, split, expected):
    p = write(tmp_path, "d.json", json.dumps(document, indent=2))
    ds = load(p, split=split)
    assert [s.question for s in ds.samples] == expected


def test_json_object_with_several_lists_says_which_to_pick(tmp_path):
    p = write(tmp_path, "d.json", json.dumps({"a": [{"question": "Q", "answer": "x"}], "b": []}))
    msg = error_of(p)
    assert "d.json" in msg and "'a', 'b'" in msg and "data.split" in msg
    msg = error_of(p, split="c")
    assert "no list under 'c'" in msg


def test_jsonl_saved_as_json(tmp_path):
    p = write(tmp_path, "d.json", '{"question": "Q1?", "answer": "a"}\n{"question": "Q2?", "answer": "b"}\n')
    assert [s.question for s in load(p).samples] == ["Q1?", "Q2?"]


def test_a_local_dataset_loaded_by_name_through_datasets(tmp_path, monkeypatch):
    """A folder of data files (as a hub dataset's repository looks) goes through datasets.load_dataset."""
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    repo = tmp_path / "org" / "quiz"
    repo.mkdir(parents=True)
    (repo / "train.jsonl").write_text("".join(json.dumps({"question": f"Q{i}?", "answer": str(i)}) + "\n"
                                              for i in range(5)))
    (repo / "test.jsonl").write_text(json.dumps({"question": "T?", "answer": "9"}) + "\n")
    ds = load(repo)
    assert ds.source.kind == "hub" and ds.source.split == "train" and ds.task == "numeric"
    assert [s.question for s in ds.samples] == [f"Q{i}?" for i in range(5)]
    assert [s.question for s in load(repo, split="test").samples] == ["T?"]
    msg = error_of(repo, split="validation")
    assert "no split 'validation'" in msg and "train, test" in msg
    # The same folder named relative to the working directory, as one would name a hub dataset.
    monkeypatch.chdir(tmp_path)
    assert len(load("org/quiz", limit=2).samples) == 2


def test_hub_name_offline_without_cache_says_so_and_how_to_fix(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    monkeypatch.chdir(tmp_path)
    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # set by conftest: the tests never reach the hub
    msg = error_of("someorg/never-cached-dataset")
    assert "someorg/never-cached-dataset" in msg and "not in the local cache" in msg
    assert "HF_DATASETS_CACHE" in msg and "data.path" in msg and "HF_HUB_OFFLINE" in msg
    msg = error_of(tmp_path / "missing.jsonl")  # a missing file is never taken for a hub name
    assert "file not found" in msg


def test_hub_name_in_a_config_file_is_not_made_relative(tmp_path):
    from robustft.config import load_config

    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: {path: someorg/some-dataset, split: validation}\n")
    config = load_config(cfg)
    assert str(config.data.path) == "someorg/some-dataset" and config.data.split == "validation"
    cfg.write_text("data: {path: missing.csv}\n")
    assert load_config(cfg).data.path == tmp_path / "missing.csv"


def test_in_memory_records_dataframe_and_dataset():
    import pandas as pd

    rows = [{"question": "Q1?", "answer": "a"}, {"question": "Q2?", "answer": "b"}]
    assert [s.label for s in load_dataset(DataConfig(), rows).samples] == ["a", "b"]
    assert [s.label for s in load_dataset(DataConfig(), pd.DataFrame(rows)).samples] == ["a", "b"]
    datasets = pytest.importorskip("datasets")
    assert len(load_dataset(DataConfig(limit=1), datasets.Dataset.from_list(rows)).samples) == 1
    with pytest.raises(InputError, match="item 2 is a str"):
        load_dataset(DataConfig(), [{"question": "Q", "answer": "a"}, "oops"])


# --- large fields ----------------------------------------------------------------------------


def test_csv_fields_larger_than_the_csv_modules_limit_load(tmp_path):
    import csv as _csv

    from robustft.data import read_csv

    context = "long context paragraph. " * 20_000  # ~480 KB, past csv's 128 KiB default limit
    p = tmp_path / "big.csv"
    with p.open("w", newline="", encoding="utf-8") as fh:
        writer = _csv.writer(fh)
        writer.writerow(["question", "answer"])
        writer.writerow([context + "What is it about?", "paragraphs"])
    before = _csv.field_size_limit()
    ds = load(p)
    assert len(ds.samples[0].question) > 400_000 and ds.samples[0].label == "paragraphs"
    assert read_csv(p)[0]["answer"] == "paragraphs"
    assert _csv.field_size_limit() == before  # the module's global limit is left as it was


# --- the shared record readers ---------------------------------------------------------------


def test_read_records_reads_every_text_format_alike(tmp_path):
    from robustft.data import read_csv, read_json_records, read_records

    expected = [{"id": "1", "text": "a, b"}, {"id": "2", "text": "c\nd"}]
    write(tmp_path, "r.csv", 'id,text\n1,"a, b"\n2,"c\nd"\n')
    write(tmp_path, "r.tsv", 'id\ttext\n1\ta, b\n2\t"c\nd"\n')
    write(tmp_path, "r.jsonl", "".join(json.dumps(r) + "\n" for r in expected))
    write(tmp_path, "r.json", json.dumps({"data": expected}))
    for name in ("r.csv", "r.tsv", "r.jsonl", "r.json"):
        assert read_records(tmp_path / name) == expected, name
    assert read_csv(tmp_path / "r.csv") == expected and read_json_records(tmp_path / "r.json") == expected
    assert read_csv(write(tmp_path, "excel.csv", '\ufeffid;text\n1;"a, b"\n2;"c\nd"\n'), delimiter=";") == expected
    with pytest.raises(InputError, match=r"r\.csv.*row 2"):
        read_csv(write(tmp_path, "r.csv", 'id,text\n1,a\n2,b,c\n'))
    with pytest.raises(InputError, match="unsupported"):
        read_records(write(tmp_path, "r.txt", "x"))


def test_the_pieces_other_readers_keep_their_own_messages_with():
    from robustft.data.records import BadJsonLine, NotUTF8, json_lines, utf8_text

    assert utf8_text("\ufeffcafé\n".encode()) == "café\n"
    with pytest.raises(NotUTF8) as bad_bytes:
        utf8_text(b'{"a": 1}\n{"b": "\xff"}\n')
    assert (bad_bytes.value.line, bad_bytes.value.offset, bad_bytes.value.byte) == (2, 16, 0xFF)
    text = '{"a": 1}\n\n  \n{"b": 2}\r\n'
    assert list(json_lines(text)) == [(1, 1, '{"a": 1}', {"a": 1}), (2, 4, '{"b": 2}', {"b": 2})]
    for damaged, line, last in [('{"a": 1}\n{"b": \n\n', 2, True), ('{"a": \n{"b": 2}\n', 1, False)]:
        with pytest.raises(BadJsonLine) as bad_line:
            list(json_lines(damaged))
        assert (bad_line.value.line, bad_line.value.last) == (line, last)


def test_atomic_writes_leave_the_old_file_or_the_new_one(tmp_path):
    from robustft.files import atomic_folder, atomic_write, remove_stale_temporaries, write_text

    target = tmp_path / "f.txt"
    write_text(target, "old\n")
    target.chmod(0o600)
    with pytest.raises(RuntimeError), atomic_write(target) as f:
        f.write("half")
        raise RuntimeError("killed while writing")
    assert target.read_text() == "old\n" and os.listdir(tmp_path) == ["f.txt"]
    with atomic_write(target, newline="") as f:
        f.write("a\r\nb\n")
    assert target.read_bytes() == b"a\r\nb\n" and target.stat().st_mode & 0o777 == 0o600
    folder = tmp_path / "ds"
    with atomic_folder(folder) as tmp:
        tmp.mkdir()
        (tmp / "part").write_text("1")
    with pytest.raises(RuntimeError), atomic_folder(folder) as tmp:
        tmp.mkdir()
        raise RuntimeError
    assert os.listdir(folder) == ["part"] and sorted(os.listdir(tmp_path)) == ["ds", "f.txt"]
    (tmp_path / ".f.txt.abc12_xy.tmp").write_text("left by a killed writer")
    (tmp_path / ".ds.def45678.tmp").mkdir()
    others = [".f.txt.swp.tmp", ".build.tmp", ".ds.tmp", ".other.abcdefgh.tmp"]  # not robustft's: kept
    for name in others:
        (tmp_path / name).mkdir()
    (tmp_path / ".f.txt.zzzzzzzz.tmp").symlink_to(tmp_path / ".build.tmp")  # a link is never followed
    assert remove_stale_temporaries(tmp_path, ["f.txt", "ds"]) == 2
    assert sorted(os.listdir(tmp_path)) == sorted(["ds", "f.txt", ".f.txt.zzzzzzzz.tmp", *others])


# --- splicing one value into JSON text -------------------------------------------------------


def _leaf_paths(value, path=()):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaf_paths(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaf_paths(v, path + (i,))
    else:
        yield list(path)


@pytest.mark.parametrize("indent, separators", [(None, (", ", ": ")), (None, (",", ":")), (2, (",", ": ")),
                                                ("\t", (" ,", " : "))])
def test_replace_value_changes_one_value_and_keeps_every_other_character(indent, separators):
    from robustft.data.jsonspan import replace_value, value_span

    doc = {"id": "x\"}{,", "n": [1, 2.50, -3e2, True, None], "messages": [
        {"role": "user", "content": "caf\u00e9 \\ [\"quoted\"] {braces}"}, {"role": "assistant", "content": ""}],
           "nested": {"a": {"b": [[], {}, "deep"]}}, "k:ey": "v"}
    text = json.dumps(doc, indent=indent, separators=separators, ensure_ascii=True)
    for path in _leaf_paths(doc):
        replaced = replace_value(text, path, "NEW")
        expected = json.loads(text)
        node = expected
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = "NEW"
        assert json.loads(replaced) == expected, path
        s, e = value_span(text, path)
        assert replaced[:s] == text[:s] and replaced[s + len('"NEW"'):] == text[e:]
    with pytest.raises(KeyError):
        value_span(text, ["missing"])
    with pytest.raises(IndexError):
        value_span(text, ["messages", 5])
