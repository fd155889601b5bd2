"""Gold files: the correct answers of a dataset's samples, read like any dataset.

    read_gold(path, columns=None) -> Dataset

`robustft report --gold` and `robustft ablate --gold` measure a run against one
(`robustft.inspect.metrics.match_gold`); the simulated experts answer from one
(`robustft.sim.load_gold`). A gold file is read with the run's column settings when it has the
run's columns, else with the default ones (question, answer, options, id).
"""

from __future__ import annotations

from pathlib import Path

from ..config import DataConfig
from ..errors import InputError
from .samples import Dataset, load_dataset

__all__ = ["read_gold"]


def read_gold(path: str | Path, columns: DataConfig | None = None) -> Dataset:
    """The samples of the gold file `path`; `InputError` naming the file, row and field when it
    cannot be read with `columns` nor with the default columns (the error says why for `columns`)."""
    path = Path(path)
    default = DataConfig()
    columns = columns if columns is not None else default
    try:
        dataset = load_dataset(columns, path)
    except InputError as first:
        if columns == default:
            raise
        try:
            dataset = load_dataset(default, path)
        except InputError:
            raise first from None
    if not dataset.samples:
        raise InputError("no rows", path=path, fix="give a file with at least one question")
    return dataset
