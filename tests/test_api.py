"""The library API: robustft.denoise / adenoise on every kind of data, inside a running event loop."""

from __future__ import annotations

import asyncio
import json
import runpy
from pathlib import Path

import pandas as pd
import pytest

import robustft
from robustft.demo import DEMO_DATA, DEMO_GOLD
from robustft.errors import ConfigError, UserError
from robustft.sim import SimServer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sim():
    with SimServer(DEMO_GOLD, accuracy=0.8, seed=0) as server:
        yield server


def settings(sim, out):
    return dict(model="sim", base_url=sim.base_url, embedding_base_url=sim.base_url, embedding_model="e",
                out=out, concurrency=8, progress=False)


def rows(n=16):
    return pd.read_csv(DEMO_DATA).head(n)


def test_import_robustft_is_light_and_names_the_api():
    import subprocess
    import sys

    code = ("import sys, robustft; assert callable(robustft.denoise) and robustft.Generation and robustft.ChatBackend;"
            "heavy = [m for m in ('torch', 'chromadb', 'transformers', 'langgraph') if m in sys.modules];"
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_dataframe_a_list_of_dicts_and_a_path_give_the_same_run(sim, tmp_path):
    frame = rows()
    by_frame = robustft.denoise(frame, **settings(sim, tmp_path / "frame"))
    by_list = robustft.denoise(frame.to_dict("records"), **settings(sim, tmp_path / "list"))
    by_path = robustft.denoise(DEMO_DATA, limit=16, **settings(sim, tmp_path / "path"))
    labels = [[(r["id"], r["status"], r["label"]) for r in result.records] for result in (by_frame, by_list, by_path)]
    assert labels[0] == labels[1] == labels[2] and len(labels[0]) == 16
    assert by_frame.summary["total"] == 16
    # In memory and on disk, the same fine-tuning set.
    on_disk = [json.loads(x) for x in (tmp_path / "frame" / "denoised.jsonl").read_text().splitlines()]
    assert by_frame.fine_tuning_set == on_disk and len(by_frame.to_pandas()) == len(on_disk)


def test_a_hugging_face_dataset(sim, tmp_path):
    from datasets import Dataset

    result = robustft.denoise(Dataset.from_pandas(rows(12)), **settings(sim, tmp_path / "ds"))
    assert result.summary["total"] == 12 and result.summary["failed"] == 0


def test_the_synchronous_call_works_inside_a_running_event_loop(sim, tmp_path):
    async def cell():
        assert asyncio.get_running_loop()
        return robustft.denoise(rows(8), **settings(sim, tmp_path / "loop"))

    assert asyncio.run(cell()).summary["total"] == 8


def test_adenoise_in_the_callers_loop(sim, tmp_path):
    result = asyncio.run(robustft.adenoise(rows(8), **settings(sim, tmp_path / "async")))
    assert result.summary["total"] == 8


def test_a_config_object_with_keyword_overrides(sim, tmp_path):
    config = robustft.load_config(None, {"denoise": {"beta": 1.0}})
    result = robustft.denoise(rows(16), config=config, **settings(sim, tmp_path / "cfg"))
    assert result.summary["selection"]["beta"] == 1.0 and result.summary["dropped"] == 0


def test_errors_name_settings_not_flags(tmp_path):
    with pytest.raises(UserError, match="unknown setting 'bta'"):
        robustft.denoise(rows(4), bta=0.3, out=tmp_path / "x")
    with pytest.raises(ConfigError) as found:
        robustft.denoise(rows(4), model="m", out=tmp_path / "y", progress=False)  # no server, no local model
    assert "--" not in str(found.value)


def test_without_out_the_run_goes_to_a_new_directory(sim):
    s = settings(sim, None)
    del s["out"]
    result = robustft.denoise(rows(4), **s)
    assert (result.out_dir / "samples.jsonl").is_file()


def test_the_notebook_example_runs(capsys):
    runpy.run_path(str(ROOT / "examples" / "library_quickstart.py"), run_name="__main__")
    assert "'total': 24" in capsys.readouterr().out
