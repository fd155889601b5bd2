"""Task types by the name `data.task` gives, from the entry-point group `robustft.tasks`.

A package adds one in its pyproject.toml:

    [project.entry-points."robustft.tasks"]
    yes_no = "my_package.tasks:YesNo"

where `YesNo` subclasses `robustft.tasks.Task` (a class is instantiated once, with no arguments).
"""

from __future__ import annotations

from ..plugins import Registry, instance_of
from .base import Task

__all__ = ["BUILTIN", "ENTRY_POINT_GROUP", "TASKS", "check_task", "find_task", "task_names", "task_of"]

ENTRY_POINT_GROUP = "robustft.tasks"
BUILTIN = {
    "multiple_choice": "robustft.tasks.builtin:MultipleChoice",
    "text": "robustft.tasks.builtin:Text",
    "numeric": "robustft.tasks.builtin:Numeric",
    "open": "robustft.tasks.builtin:Open",
}
TASKS: tuple[str, ...] = tuple(BUILTIN)  # robustft's own, in the order the docs list them


REGISTRY: Registry[Task] = Registry(ENTRY_POINT_GROUP, "data.task", "task", BUILTIN,
                                   instance_of(Task, "robustft.tasks.Task"))
task_of = REGISTRY.get        # the Task named so, or UnknownName (a ConfigError and a ValueError)
find_task = REGISTRY.find     # the Task named so, or None
task_names = REGISTRY.names   # every registered name, sorted


def check_task(name: str) -> str:
    """`data.task` when it is `auto` or a registered task type (a run checks this when it starts)."""
    return name if name == "auto" else REGISTRY.check(name)
