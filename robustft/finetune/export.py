"""The fine-tuning set in the formats other training tools read.

    export(config, data=..., out=..., fmt=None) -> ExportResult

Every format holds the same pairs `robustft train` trains on: the base expert's question prompt
(`PromptLibrary.question_prompt`) and the completion `Answer: X`.

- ``messages``: JSON Lines, one ``{"id", "messages": [{"role": "user", ...}, {"role": "assistant",
  ...}]}`` per sample (OpenAI fine-tuning, Axolotl ``chat_template``, TRL language modeling).
- ``alpaca``: one JSON list of ``{"instruction", "input": "", "output"}`` (LLaMA-Factory, Alpaca).
- ``hf``: a Hugging Face dataset written with ``save_to_disk``, columns ``id``, ``prompt`` and
  ``completion`` as lists of messages: TRL's conversational prompt-completion type, ready for
  ``SFTTrainer(train_dataset=load_from_disk(DIR))`` (loss on the completion only by default).

`load_export(path)` reads any of the three back as (prompt, completion) pairs.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..config import RobustFTConfig
from ..data import read_jsonl, write_jsonl
from ..errors import ConfigError, InputError
from ..prompts import PromptLibrary

__all__ = ["FORMATS", "ExportResult", "export", "infer_format", "load_export", "to_alpaca", "to_hf_dataset",
           "to_messages"]

Format = Literal["messages", "alpaca", "hf"]
FORMATS: tuple[str, ...] = ("messages", "alpaca", "hf")


@dataclass
class ExportResult:
    path: Path
    format: str
    count: int


def to_messages(examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"id": e["id"], "messages": [*e["prompt"], *e["completion"]]} for e in examples]


def to_alpaca(examples: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"instruction": e["prompt"][0]["content"], "input": "", "output": e["completion"][0]["content"]}
            for e in examples]


def to_hf_dataset(examples: list[dict[str, Any]]) -> Any:
    from datasets import Dataset

    return Dataset.from_list([{"id": e["id"], "prompt": e["prompt"], "completion": e["completion"]}
                              for e in examples])


def infer_format(out: str | Path) -> str:
    """``.jsonl`` -> messages, ``.json`` -> alpaca, anything else (a folder) -> hf."""
    suffix = Path(out).suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "messages"
    if suffix == ".json":
        return "alpaca"
    return "hf"


def export(config: RobustFTConfig, *, data: str | Path | None = None, out: str | Path | None = None,
           fmt: str | None = None) -> ExportResult:
    """Write the fine-tuning set from `data` (denoised.jsonl or any input file) to `out` as `fmt`
    (default: from `out`'s name, see `infer_format`)."""
    from .train import load_training_set, sft_examples

    data_path = data if data is not None else config.data.path
    if data_path is None:
        raise ConfigError("no data: pass --data FILE (denoised.jsonl, or a CSV/JSONL/dataset folder)")
    if out is None:
        raise ConfigError("no output: pass --out PATH (file.jsonl, file.json or a folder)")
    fmt = fmt or infer_format(out)
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; use one of: {', '.join(FORMATS)}")
    out_path = Path(out)
    dataset = load_training_set(config.data, data_path)
    examples = sft_examples(dataset, PromptLibrary(config.denoise.prompts_dir), config.data.instruction)
    if fmt == "messages":
        write_jsonl(out_path, to_messages(examples))
    elif fmt == "alpaca":
        _write_json_atomic(out_path, to_alpaca(examples))
    else:
        if out_path.exists() and (not out_path.is_dir() or any(out_path.iterdir())):
            if not (out_path / "dataset_info.json").is_file():
                raise InputError("exists and is not a dataset folder this command wrote", path=out_path,
                                 fix="pass --out with a new or empty folder")
        to_hf_dataset(examples).save_to_disk(str(out_path))
    return ExportResult(path=out_path, format=fmt, count=len(examples))


def _write_json_atomic(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(value, fh, ensure_ascii=False, indent=1)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_export(path: str | Path, fmt: str | None = None) -> list[dict[str, str]]:
    """The (prompt, completion) text pairs of an export, as ``{"prompt", "completion"}`` dicts."""
    path = Path(path)
    fmt = fmt or infer_format(path)
    if fmt == "messages":
        return [{"prompt": r["messages"][0]["content"], "completion": r["messages"][-1]["content"]}
                for r in read_jsonl(path)]
    if fmt == "alpaca":
        return [{"prompt": r["instruction"] + (f"\n\n{r['input']}" if r.get("input") else ""),
                 "completion": r["output"]} for r in json.loads(path.read_text(encoding="utf-8"))]
    if fmt == "hf":
        from datasets import load_from_disk

        return [{"prompt": r["prompt"][0]["content"], "completion": r["completion"][0]["content"]}
                for r in load_from_disk(str(path))]
    raise ConfigError(f"unknown export format {fmt!r}; use one of: {', '.join(FORMATS)}")
