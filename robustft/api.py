"""The library API: `robustft.denoise(...)` and `await robustft.adenoise(...)`.

    import robustft
    result = robustft.denoise("noisy.csv", model="meta-llama/Llama-3.1-8B-Instruct",
                              base_url="http://127.0.0.1:8000/v1", out="runs/noisy", beta=0.5)
    result.summary["relabeled"], result.fine_tuning_set[:3], result.records[0]["nodes"]

- `data`: a path (CSV, TSV, JSONL, JSON, Parquet, a `save_to_disk` folder), a Hugging Face Hub
  name, a list of dicts, a pandas DataFrame or a Hugging Face `Dataset`.
- `config`: a `RobustFTConfig`, a YAML path or a dict of the same shape; keyword settings
  override it. Keywords are the settings the command line offers as flags, by the same names
  (`model`, `base_url`, `concurrency`, `max_cost`, `limit`, `beta`, `k`, ...; one table,
  `robustft.settings`), a few more (`provider`, `temperature`, `score`, `instruction`, `ablate`),
  or any dotted config key through `settings={"denoise.k": 5}`.
- `out`: the run directory; without one, a new temporary directory (its path is in the result).
  Running again with the same `out` resumes, exactly as on the command line.

`denoise` works inside a running event loop (Jupyter): the run then goes on a thread of its own.
Messages go through `logging` (logger `robustft`); `logging.basicConfig(level=logging.INFO)`
shows them. Errors are `robustft.errors` exceptions whose messages name settings (`denoise.concurrency`),
not flags.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import tempfile
from pathlib import Path
from typing import Any

from . import settings as settings_table
from .config import RobustFTConfig, load_config
from .errors import UserError
from .run.rundir import DenoiseResult as Result

log = logging.getLogger("robustft")


def resolve_config(data: Any = None, *, config: RobustFTConfig | str | Path | dict | None = None,
                   out: str | Path | None = None, settings: dict[str, Any] | None = None,
                   **keywords: Any) -> tuple[RobustFTConfig, Any]:
    """The config a call asks for, and the data in memory (None when the config names a source)."""
    known = settings_table.keywords()
    unknown = sorted(set(keywords) - set(known))
    if unknown:
        raise UserError(f"unknown setting {', '.join(repr(u) for u in unknown)}; settings: {', '.join(sorted(known))}, "
                        "or any config key as settings={'denoise.k': 5}")
    overrides: dict[str, Any] = {known[k].key: v for k, v in keywords.items()}
    overrides.update(settings or {})
    if keywords.get("base_url") is not None and "provider" not in keywords:
        overrides["model.provider"] = "openai"
    in_memory = None
    if isinstance(data, (str, Path)):
        overrides["data.path"] = str(data)
    elif data is not None:
        in_memory = data
    if out is not None:
        overrides["out"] = str(out)
    if isinstance(config, RobustFTConfig):
        merged = config.model_dump(mode="json")
        for dotted, value in overrides.items():
            if value is not None:
                node = merged
                *parents, leaf = dotted.split(".")
                for key in parents:
                    node = node.setdefault(key, {})
                node[leaf] = value
        resolved = load_config(None, {k: v for k, v in merged.items()})
    elif isinstance(config, dict):
        resolved = load_config(None, {**config, **{k: v for k, v in overrides.items()}})
    else:
        resolved = load_config(config, overrides)
    if resolved.out is None:
        resolved = resolved.model_copy(update={"out": Path(tempfile.mkdtemp(prefix="robustft-run-"))})
        log.info(f"no out given: the run goes to {resolved.out}")
    return resolved, in_memory


async def adenoise(data: Any = None, *, config: RobustFTConfig | str | Path | dict | None = None,
                   out: str | Path | None = None, progress: bool = True, settings: dict[str, Any] | None = None,
                   **keywords: Any) -> Result:
    """Run the whole method (see the module docstring) in the running event loop."""
    from .data import load_dataset
    from .run.runner import DenoiseRun

    cfg, in_memory = resolve_config(data, config=config, out=out, settings=settings, **keywords)
    dataset = load_dataset(cfg.data, in_memory) if in_memory is not None else None
    return await DenoiseRun(cfg, dataset=dataset, progress=progress).run()


def denoise(data: Any = None, **kwargs: Any) -> Result:
    """`adenoise`, for code that is not async. Inside a running event loop (a notebook) the run goes
    on a thread of its own with its own loop, and this call waits for it."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(adenoise(data, **kwargs))
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="robustft-run") as pool:
        return pool.submit(asyncio.run, adenoise(data, **kwargs)).result()
