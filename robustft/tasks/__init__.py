"""Task types: one `Task` class each, registered by name (`data.task`) in the entry-point group
`robustft.tasks` (robustft's own in `builtin.py`); `reading.py` holds the readers they share.
`robustft.answers` is the by-name front the rest of robustft calls."""

from .base import Task
from .registry import TASKS, check_task, find_task, task_names, task_of

__all__ = ["TASKS", "Task", "check_task", "find_task", "task_names", "task_of"]
