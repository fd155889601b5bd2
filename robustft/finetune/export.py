"""The fine-tuning set as files other training tools read.

    export_run(run_dir, out=None, fmt="input") -> ExportResult     from a `robustft denoise` run
    export(config, data=..., out=..., fmt=None) -> ExportResult     training pairs from a file

From a run directory, the default (``input``) writes the fine-tuning set in the input's own
format: the records the run read, in input order, without the dropped ones, each with its answer
replaced by the label to train on and everything else as it was (`robustft.data.writeback`). A
`messages` file comes back as a `messages` file with only the corrected assistant turns changed,
ShareGPT as ShareGPT, Alpaca as Alpaca (LLaMA-Factory reads both), a table with the same columns.
The input is read again from where the run read it (its resolved configuration in summary.json),
and each kept record's question is checked against the run's, so a changed input is an error,
not a silently wrong file.

The other formats hold the pairs `robustft train` trains on: the base expert's question prompt
(`PromptLibrary.question_prompt`) and the completion `Answer: X`, after a chat sample's earlier
turns; for open-ended responses, the conversation as written and the response itself.

- ``messages``: JSON Lines, one ``{"id", "messages": [{"role": "user", ...}, {"role": "assistant",
  ...}]}`` per sample (OpenAI fine-tuning, Axolotl ``chat_template``, TRL language modeling).
- ``alpaca``: one JSON list of ``{"instruction", "input": "", "output"}`` (LLaMA-Factory, Alpaca).
- ``hf``: a Hugging Face dataset written with ``save_to_disk``, columns ``id``, ``prompt`` and
  ``completion`` as lists of messages: TRL's conversational prompt-completion type, ready for
  ``SFTTrainer(train_dataset=load_from_disk(DIR))`` (loss on the completion only by default).

`load_export(path)` reads any of the three back as (last prompt message, completion) pairs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import RobustFTConfig
from ..data import load_source, read_json_records, read_jsonl
from ..data.records import JSONL_SUFFIXES
from ..data.sources import looks_like_hub_name
from ..data.writeback import write_back
from ..errors import ConfigError, InputError, UserError
from ..files import atomic_folder, remove_stale_temporaries, write_json, write_jsonl
from ..prompts import PromptLibrary
from ..run.rundir import DENOISED, read_summary, refuse_links, run_config

__all__ = ["FORMATS", "PAIR_FORMATS", "ExportResult", "export", "export_run", "infer_format", "load_export",
           "to_alpaca", "to_hf_dataset", "to_messages"]

PAIR_FORMATS: tuple[str, ...] = ("messages", "alpaca", "hf")
FORMATS: tuple[str, ...] = ("input", *PAIR_FORMATS)
_PAIR_FILES = {"messages": "fine_tuning_set.jsonl", "alpaca": "fine_tuning_set.json", "hf": "fine_tuning_set_hf"}


@dataclass
class ExportResult:
    path: Path
    format: str
    count: int
    changed: int | None = None  # input format: records whose answer was replaced
    by_source: dict[str, int] | None = None  # how many came clean, relabeled, confirmed, from a person

    def describe(self) -> str:
        sources = ", ".join(f"{n} {source}" for source, n in (self.by_source or {}).items() if n)
        changed = f"{self.changed} with a corrected answer" if self.changed is not None else ""
        shown = "; ".join(p for p in (sources, changed) if p)
        shown = f" ({shown})" if shown else ""
        return f"wrote {self.count} samples{shown} as {self.format} to {self.path}"


def to_messages(examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"id": e["id"], "messages": [*e["prompt"], *e["completion"]]} for e in examples]


def to_alpaca(examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Alpaca records; a chat sample's system prompt goes to `system` and its earlier exchanges to
    `history` ([[user, assistant], ...]), as LLaMA-Factory reads them."""
    records = []
    for e in examples:
        *earlier, last = e["prompt"]
        record: dict[str, Any] = {"instruction": last["content"], "input": "", "output": e["completion"][0]["content"]}
        system = "\n\n".join(t["content"] for t in earlier if t["role"] == "system")
        if system:
            record["system"] = system
        history, asked = [], None
        for turn in earlier:
            if turn["role"] == "user":
                asked = turn["content"]
            elif turn["role"] == "assistant":
                history.append([asked or "", turn["content"]])
                asked = None
        if history:
            record["history"] = history
        records.append(record)
    return records


def to_hf_dataset(examples: list[dict[str, Any]]) -> Any:
    from datasets import Dataset

    return Dataset.from_list([{"id": e["id"], "prompt": e["prompt"], "completion": e["completion"]}
                              for e in examples])


def infer_format(out: str | Path) -> str:
    """``.jsonl`` -> messages, ``.json`` -> alpaca, anything else (a folder) -> hf."""
    suffix = Path(out).suffix.lower()
    if suffix in JSONL_SUFFIXES:
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
        raise ConfigError("no data: give `data` (denoised.jsonl, or a CSV/JSONL/dataset folder), or set data.path")
    if out is None:
        raise ConfigError("no output: give `out` (file.jsonl, file.json or a folder)")
    fmt = fmt or infer_format(out)
    if fmt == "input":
        raise ConfigError("the format 'input' (the input's own format) needs the run directory: "
                          "`robustft export RUN_DIR` (export_run)")
    if fmt not in PAIR_FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; use one of: {', '.join(PAIR_FORMATS)}")
    out_path = Path(out)
    # An export killed while writing left its temporary beside `out`: this one replaces it.
    remove_stale_temporaries(out_path.parent, [out_path.name])
    dataset = load_training_set(config.data, data_path)
    examples = sft_examples(dataset, PromptLibrary(config.denoise.prompts_dir), config.data.instruction)
    if fmt == "messages":
        write_jsonl(out_path, to_messages(examples))
    elif fmt == "alpaca":
        write_json(out_path, to_alpaca(examples), indent=1)
    else:
        if out_path.exists() and (not out_path.is_dir() or any(out_path.iterdir())):
            if not (out_path / "dataset_info.json").is_file():
                raise InputError("exists and is not a dataset folder this command wrote", path=out_path,
                                 fix="give `out` a new or empty folder")
        with atomic_folder(out_path) as folder:
            to_hf_dataset(examples).save_to_disk(str(folder))
    return ExportResult(path=out_path, format=fmt, count=len(examples))


# --- from a run directory, in the input's own format -----------------------------------------


def _input_of(run_dir: Path, summary: dict[str, Any], config: RobustFTConfig) -> Any:
    """Where the run's input is now: summary["data"] (absolute), the configured path, or a hub name."""
    recorded = [summary.get("data"), config.data.path]
    for candidate in recorded:
        if candidate and Path(candidate).exists():
            return candidate
    name = str(config.data.path or "")
    if name and looks_like_hub_name(name):
        return name
    raise InputError(f"the input this run read is not there any more (recorded as {recorded[0] or name})",
                     path=run_dir, fix="give `data`: the file (or hub name) the run read")


def _default_out(run_dir: Path, dataset: Any) -> Path:
    src = dataset.source
    if src.kind == "hub":
        name = src.location.replace("/", "__") + ".jsonl"
    elif src.kind == "records":
        name = "fine_tuning_set.jsonl"
    else:
        name = Path(src.location).name
    return run_dir / "export" / name


def export_run(run_dir: str | Path, *, out: str | Path | None = None, fmt: str | None = None,
               data: str | Path | None = None, data_overrides: dict[str, Any] | None = None) -> ExportResult:
    """Write the fine-tuning set of the run in `run_dir` to `out` (default RUN_DIR/export/<input's
    name>) in `fmt`: "input" (default: the input's own format) or a training-pair format."""
    run_dir = Path(run_dir)
    if run_dir.is_dir():
        refuse_links(run_dir)
    summary = read_summary(run_dir)
    config = run_config(summary)
    if data_overrides:
        config = config.model_copy(update={"data": config.data.model_copy(
            update={k: v for k, v in data_overrides.items() if v is not None})})
    fmt = fmt or "input"
    denoised_path = run_dir / DENOISED
    if not denoised_path.is_file():
        raise UserError(f"{run_dir}: no {DENOISED}; run `robustft denoise --out {run_dir}` to finish the run")
    if fmt != "input":
        return export(config, data=denoised_path, out=out if out is not None else run_dir / "export" /
                      _PAIR_FILES.get(fmt, "fine_tuning_set"), fmt=fmt)
    source = data if data is not None else _input_of(run_dir, summary, config)
    table, dataset = load_source(config.data, source)
    kept = read_jsonl(denoised_path)
    by_id = {s.id: s for s in dataset.samples}
    for record in kept:
        sample = by_id.get(str(record.get("id")))
        if sample is None or " ".join(str(record.get("question", "")).split()) != " ".join(sample.question.split()):
            what = "is not in it" if sample is None else "has a different question there"
            raise InputError(f"sample '{record.get('id')}' of {denoised_path} {what}: the input changed since the run",
                             path=dataset.path, fix="give `data`: the input the run read (or run denoise "
                                                    "again on the changed input)")
    out_path = Path(out) if out is not None else _default_out(run_dir, dataset)
    if dataset.source.kind not in ("hub", "records") and out_path.resolve() == Path(dataset.source.location):
        raise ConfigError(f"`out` {out_path} is the input itself; give another path (the input stays as it is)")
    remove_stale_temporaries(out_path.parent, [out_path.name])
    result = write_back(table, dataset, {str(r["id"]): r["label"] for r in kept}, out_path)
    by_source = Counter(str(r.get("source") or "clean") for r in kept)
    return ExportResult(path=result.path, format=f"{dataset.source.shape} ({result.kind})", count=result.count,
                        changed=result.changed, by_source=dict(sorted(by_source.items())))


def load_export(path: str | Path, fmt: str | None = None) -> list[dict[str, str]]:
    """The (prompt, completion) text pairs of an export, as ``{"prompt", "completion"}`` dicts."""
    path = Path(path)
    fmt = fmt or infer_format(path)
    if fmt == "messages":
        return [{"prompt": r["messages"][-2]["content"], "completion": r["messages"][-1]["content"]}
                for r in read_jsonl(path)]
    if fmt == "alpaca":
        return [{"prompt": r["instruction"] + (f"\n\n{r['input']}" if r.get("input") else ""),
                 "completion": r["output"]} for r in read_json_records(path)]
    if fmt == "hf":
        from datasets import load_from_disk

        return [{"prompt": r["prompt"][-1]["content"], "completion": r["completion"][0]["content"]}
                for r in load_from_disk(str(path))]
    raise ConfigError(f"unknown export format {fmt!r}; use one of: {', '.join(PAIR_FORMATS)}")
