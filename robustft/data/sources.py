"""Readers per source: every place data can come from, read into a `Table` of rows.

    open_source(source, limit=None, split=None) -> Table

`source` is

- a path: ``.csv``, ``.tsv``, ``.jsonl`` / ``.ndjson``, ``.json`` (a list of objects, or an object
  holding the list under "data" or another usual key), ``.parquet``; a folder written by
  ``save_to_disk`` (a ``Dataset``, or a ``DatasetDict`` whose split is chosen); any other folder is
  read with ``datasets.load_dataset(folder)`` (a folder of data files, a clone of a hub dataset);
- a Hugging Face Hub name (``org/name``) that is not a path here: ``datasets.load_dataset(name)``,
  which also finds it in the local cache (``HF_DATASETS_CACHE``) or through a mirror (``HF_ENDPOINT``);
- records in memory: a list of dicts, a pandas ``DataFrame`` or a ``datasets.Dataset``.

Splits (``split``, `data.split`): a DatasetDict or hub dataset gives the named split, else
"train", else its only split; a JSON object with several lists gives the list under that key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import InputError
from ..formats import PARQUET_SUFFIXES, TEXT_SUFFIXES, looks_like_hub_name
from ..hub import CONNECT_TIMEOUT_S, hub_offline, hub_reachable
from .records import Row, Table, columns_of, read_table

__all__ = ["open_source", "looks_like_hub_name", "PARQUET_SUFFIXES", "SOURCE_HINT"]

_DISK_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
SOURCE_HINT = ("use a .csv, .tsv, .jsonl, .json or .parquet file, a folder written by Hugging Face datasets' "
               "save_to_disk, or a Hugging Face Hub name (org/name)")


def _close_files(path: Path) -> list[str]:
    """Existing files whose names are close to a missing one ("mc.cvs" -> "mc.csv"), as written."""
    import difflib

    folder = path.expanduser().parent
    try:
        names = [p.name for p in folder.iterdir() if p.is_file() or p.is_dir()][:5000]
    except OSError:
        return []
    close = difflib.get_close_matches(path.name, names, n=3, cutoff=0.6)
    prefix = "" if str(path.parent) in ("", ".") else str(path.parent) + "/"
    return [prefix + name for name in close]


def open_source(source: Any, limit: int | None = None, split: str | None = None) -> Table:
    if not isinstance(source, (str, Path)):
        return _in_memory(source, limit, split)
    p = Path(source)
    if p.is_dir():
        if any((p / m).is_file() for m in _DISK_MARKERS):
            return _read_disk(p, limit, split)
        return _read_with_datasets(str(p), p, limit, split, folder=True)
    if p.exists():
        suffix = p.suffix.lower()
        if suffix in TEXT_SUFFIXES:
            return read_table(p, TEXT_SUFFIXES[suffix], limit, json_key=split)
        if suffix in PARQUET_SUFFIXES:
            return _read_parquet(p, limit)
        raise InputError(f"unsupported file type '{p.suffix or '(none)'}'", path=p, fix=SOURCE_HINT)
    if looks_like_hub_name(str(source)):
        if not hub_offline() and not hub_reachable():
            raise InputError(f"no such file or folder here, and the Hugging Face Hub is unreachable (no connection "
                             f"within {CONNECT_TIMEOUT_S:g} s) to look for a dataset of that name", path=p,
                             fix="check the path; a hub dataset already in the local cache loads with "
                                 "HF_HUB_OFFLINE=1; " + SOURCE_HINT)
        return _read_with_datasets(str(source), str(source), limit, split, folder=False)
    close = _close_files(p)
    raise InputError("file not found" + (f"; did you mean {' or '.join(close)}?" if close else ""), path=p,
                     fix="check the path (a relative data.path is relative to the config file or the current "
                         "directory); " + SOURCE_HINT)


# --- Parquet ---------------------------------------------------------------------------------


def _read_parquet(path: Path, limit: int | None) -> Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pfile = pq.ParquetFile(path)
        records: list[dict[str, Any]] = []
        for batch in pfile.iter_batches(batch_size=1024):
            records.extend(batch.to_pylist())
            if limit is not None and len(records) >= limit:
                records = records[:limit]
                break
        schema = pfile.schema_arrow
    except (pa.ArrowException, OSError) as e:
        raise InputError(f"cannot be read as Parquet: {e}", path=path,
                         fix="check that the file is a complete Parquet file (re-export it), or use .jsonl") from None
    rows = [Row(i, None, r) for i, r in enumerate(records, 1)]
    if not rows:
        raise InputError("the file has no rows", path=path, fix="write at least one row")
    return Table(path, list(schema.names), rows, kind="parquet", schema=schema)


# --- Hugging Face datasets -------------------------------------------------------------------


def _choose_split(loaded: Any, where: Any, split: str | None, folder_hint: Path | None = None) -> tuple[Any, str]:
    splits = list(loaded)
    if split is not None:
        if split in loaded:
            return loaded[split], split
        raise InputError(f"has no split '{split}' (splits: {', '.join(splits) or 'none'})", path=where,
                         fix="set data.split to one of those")
    if "train" in loaded:
        return loaded["train"], "train"
    if len(splits) == 1:
        return loaded[splits[0]], splits[0]
    shown = ", ".join(splits) if splits else "none"
    fix = ("set data.split to one of them"
           + (f", or point data.path at one split's folder, e.g. {folder_hint / splits[0]}"
              if folder_hint is not None and splits else ""))
    raise InputError(f"holds several splits ({shown}) and none is named 'train'", path=where, fix=fix)


def _table_from_dataset(ds: Any, where: Any, kind: str, limit: int | None, split: str | None) -> Table:
    if limit is not None and limit < len(ds):
        ds = ds.select(range(limit))
    rows = [Row(i, None, dict(record)) for i, record in enumerate(ds, 1)]
    if not rows:
        raise InputError("the dataset has no rows", path=where, fix="give a dataset with at least one row")
    return Table(where, list(ds.column_names), rows, kind=kind, schema=ds.features, split=split)


def _read_disk(path: Path, limit: int | None, split: str | None) -> Table:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as e:  # noqa: BLE001 - any failure here is a bad input folder
        raise InputError(f"cannot be loaded as a Hugging Face dataset: {e}", path=path,
                         fix="re-create it with Dataset.save_to_disk, or export it as .jsonl") from None
    chosen = None
    if isinstance(loaded, datasets.DatasetDict):
        loaded, chosen = _choose_split(loaded, path, split, folder_hint=path)
    return _table_from_dataset(loaded, path, "disk", limit, chosen)


def _offline_fix() -> str:
    return ("connect to the internet once (the dataset is then kept in the local cache, ~/.cache/huggingface/"
            "datasets or $HF_DATASETS_CACHE), or set HF_DATASETS_CACHE to a cache that holds it (or HF_ENDPOINT "
            "to a mirror), or download its data files and set data.path to their file or folder; "
            "if HF_HUB_OFFLINE=1 is set only the cache is searched")


def _read_with_datasets(name: str, where: Any, limit: int | None, split: str | None, folder: bool) -> Table:
    import datasets

    try:
        loaded = datasets.load_dataset(name)
    except FileNotFoundError as e:
        if folder:
            raise InputError(f"is a folder without data files datasets can read ({e})", path=where,
                             fix="pass a data file, a folder of .csv/.jsonl/.json/.parquet files, or a folder "
                                 "written by save_to_disk") from None
        raise _hub_missing(name, e) from None
    except ConnectionError as e:
        raise InputError(f"is not a file or folder here, and as a Hugging Face Hub name it cannot be loaded: "
                         f"the hub is unreachable and the dataset is not in the local cache ({e})",
                         path=where, fix=_offline_fix()) from None
    except Exception as e:  # noqa: BLE001 - datasets raises many types; all mean this source cannot be read
        if type(e).__name__ in ("DatasetNotFoundError", "RepositoryNotFoundError"):
            raise _hub_missing(name, e) from None
        raise InputError(f"cannot be loaded with datasets.load_dataset: {type(e).__name__}: {e}", path=where,
                         fix="check the name (org/name) or folder, or pass the data file itself") from None
    chosen = None
    if isinstance(loaded, (datasets.DatasetDict, dict)):
        loaded, chosen = _choose_split(loaded, where, split)
    return _table_from_dataset(loaded, where, "hub", limit, chosen)


def _hub_missing(name: str, e: Exception) -> InputError:
    return InputError(f"no such file or folder here, and no Hugging Face Hub dataset of that name ({e})", path=name,
                      fix="check the path or the hub name (org/name); a private or gated dataset needs "
                          "`huggingface-cli login`")


# --- records in memory -----------------------------------------------------------------------


def _in_memory(source: Any, limit: int | None, split: str | None) -> Table:
    where = f"<{type(source).__name__}>"
    try:
        import datasets
    except ImportError:  # pragma: no cover - a dependency of the package
        datasets = None
    if datasets is not None and isinstance(source, datasets.DatasetDict):
        source, split = _choose_split(source, where, split)
    if datasets is not None and isinstance(source, datasets.Dataset):
        return _table_from_dataset(source, where, "records", limit, split)
    if hasattr(source, "to_dict") and hasattr(source, "columns"):  # a pandas DataFrame
        source = source.to_dict(orient="records")
    if not isinstance(source, (list, tuple)):
        raise InputError(f"cannot read data from {type(source).__name__}", path=where,
                         fix="give a path, a hub name, a list of dicts, a pandas DataFrame or a datasets.Dataset")
    records = list(source)[:limit] if limit is not None else list(source)
    rows = []
    for i, record in enumerate(records, 1):
        if not isinstance(record, dict):
            raise InputError(f"item {i} is a {type(record).__name__}, not a dict", path=where, row=i,
                             fix="give one dict per sample, e.g. {'question': ..., 'answer': ...}")
        rows.append(Row(i, None, dict(record)))
    if not rows:
        raise InputError("no records", path=where, fix="give at least one record")
    return Table(where, columns_of(rows), rows, kind="records", noun="fields")
