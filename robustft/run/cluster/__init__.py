"""The runner on a Ray cluster (`run.executor: ray`, `robustft denoise --executor ray`).

Modules: `executor` (the driver's side: actors, batches, lost workers), `worker` (the graph on a
Ray worker), `store` (the response store actor and the calls that use it), `engines` (in-process
models as actors, and the proxy backend the workers call them through). Where each piece lives
and why, and how a run survives a worker, node or driver dying: docs/ray.md.
"""

from .executor import RayExecutor

__all__ = ["RayExecutor"]
