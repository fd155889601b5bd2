"""The names a config gives that something must be registered under, checked when a run starts.

The config validates shapes only (it scans no plugins); here `data.task`, `data.format` and
`denoise.score` are looked up in their registries (`robustft.plugins`), so a task type, layout or
score that is not installed fails before any data is read, with a message naming the setting and
every registered name. (Backends: `backends.registry.check_providers`.)
"""

from __future__ import annotations

from ..config import RobustFTConfig
from ..data.shapes import check_format
from ..entropy import REGISTRY as SCORES
from ..tasks import check_task

__all__ = ["check_registered"]


def check_registered(config: RobustFTConfig) -> None:
    """ConfigError naming the setting when a task type, layout or score of `config` is not registered."""
    check_task(config.data.task)
    check_format(config.data.format)
    SCORES.check(config.denoise.score)
