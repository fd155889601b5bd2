"""Reading datasets from every usual source and shape, and writing records.

- `records`: CSV / TSV / JSON Lines / JSON files to rows, and JSON Lines back (the one record
  reader: `read_records`, `read_jsonl`, `read_csv`, `write_jsonl`, `write_json`).
- `sources`: where data comes from (files, Parquet, save_to_disk folders, hub names, memory).
- `shapes`: which fields hold the question and the answer (tables, OpenAI messages, ShareGPT, Alpaca).
- `samples`: `Sample`s with normalised labels and a task type, with row-precise errors.
- `writeback`: the fine-tuning set written back in the input's own format (`robustft export`).
"""

from .records import read_csv, read_json_records, read_jsonl, read_records, write_json, write_jsonl
from .samples import (OPEN_MEDIAN_WORDS, Dataset, DataSource, Sample, build_dataset, infer_task, load_dataset,
                      load_source)
from .shapes import render_conversation

__all__ = ["Dataset", "DataSource", "OPEN_MEDIAN_WORDS", "Sample", "build_dataset", "infer_task", "load_dataset",
           "load_source", "read_csv", "read_json_records", "read_jsonl", "read_records", "render_conversation",
           "write_json", "write_jsonl"]
