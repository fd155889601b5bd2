# %% [markdown]
# # robustft from Python (runs as a notebook or a script)
#
# Clean a small multiple-choice set whose labels are partly wrong, from inside a running event loop
# as Jupyter has one. The experts are robustft's simulated OpenAI-compatible server, so this runs
# offline; point `base_url` at `vllm serve` (or any OpenAI-compatible API) for real models.
# `tests/test_api.py` executes this file.

# %%
import asyncio
import logging
import tempfile
from pathlib import Path

import pandas as pd

import robustft
from robustft.demo import DEMO_DATA, DEMO_GOLD
from robustft.sim import SimServer

logging.basicConfig(level=logging.INFO, format="%(message)s")  # robustft speaks through `logging`
out = Path(tempfile.mkdtemp()) / "run"

# %% Data can be a path, a list of dicts, a DataFrame or a Hugging Face Dataset.
frame = pd.read_csv(DEMO_DATA).head(24)
frame.head()

# %%
async def notebook_cell():
    # A notebook cell runs inside an event loop: the synchronous call still works.
    with SimServer(DEMO_GOLD, accuracy=0.8, seed=0) as sim:
        return robustft.denoise(frame, model="sim-expert", base_url=sim.base_url, out=out,
                                embedding_base_url=sim.base_url, embedding_model="sim-embed",
                                concurrency=8, progress=False)


result = asyncio.run(notebook_cell())
print({k: result.summary[k] for k in ("total", "clean", "noisy", "relabeled", "confirmed", "dropped", "failed")})

# %% Every sample's path through the agents, and the fine-tuning set, in memory and on disk.
first_relabel = next(r for r in result.records if r["status"] == "relabeled")
print(first_relabel["id"], first_relabel["original_label"], "->", first_relabel["label"],
      "| reviewer:", first_relabel["nodes"]["reviewer"].get("skipped") or first_relabel["nodes"]["reviewer"]["answer"])
result.to_pandas().head()
