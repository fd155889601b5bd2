"""Named extensions found through entry points: task types, input layouts, selection scores.

One `Registry` per kind. robustft's own entries are listed in its pyproject.toml exactly as a
third-party package lists its own, and repeated in `builtin` so that a source tree whose package
metadata is not installed (or is stale) still finds them:

    [project.entry-points."robustft.tasks"]
    yes_no = "my_package.tasks:YesNo"

A lookup is a dict read once an entry is loaded (answers are read in the hot path); the installed
entry points are scanned once, on the first name that is not built in. A name nobody registered is
a `ConfigError` naming the setting and every registered name: the config checks only shapes, a
run checks names when it starts (`robustft.run.registered`).
"""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Callable, Generic, TypeVar

from .errors import ConfigError

T = TypeVar("T")

__all__ = ["Registry", "UnknownName", "instance_of"]


class UnknownName(ConfigError, ValueError):
    """A setting names no registered extension (a ValueError too: `answers` raised one before)."""


def instance_of(base: type[T], public_name: str) -> Callable[[Any, str], T]:
    """A registry's ``make`` for entries that are ``base`` instances: a loaded class is instantiated,
    anything else must already be one (TypeError naming ``public_name`` otherwise), and the entry
    learns the name it is registered under."""
    def make(loaded: Any, name: str) -> T:
        entry = loaded() if isinstance(loaded, type) else loaded
        if not isinstance(entry, base):
            raise TypeError(f"{type(entry).__name__} is not a {public_name}")
        entry.name = name  # type: ignore[attr-defined]
        return entry
    return make


class Registry(Generic[T]):
    """``group``: the entry-point group; ``setting``: the config key that names an entry (for
    messages); ``what``: what an entry is; ``builtin``: name -> "module:attribute"; ``make``: the
    loaded object -> the entry (e.g. a class -> an instance; raise TypeError when it does not fit)."""

    def __init__(self, group: str, setting: str, what: str, builtin: dict[str, str],
                 make: Callable[[Any, str], T]):
        self.group, self.setting, self.what = group, setting, what
        self.builtin = dict(builtin)
        self._make = make
        self._loaded: dict[str, T] = {}
        self._scan = lru_cache(maxsize=1)(self._scan_now)

    def _scan_now(self) -> tuple[dict[str, EntryPoint], dict[str, list[str]]]:
        """(name -> entry point, name -> conflicting targets) for every entry installed."""
        found = {name: EntryPoint(name, value, self.group) for name, value in self.builtin.items()}
        conflicts: dict[str, list[str]] = {}
        for ep in entry_points(group=self.group):
            known = found.get(ep.name)
            if known is not None and known.value != ep.value:
                conflicts.setdefault(ep.name, [known.value]).append(ep.value)
            found.setdefault(ep.name, ep)
        return found, conflicts

    def refresh(self) -> None:
        """Forget what was found and loaded (after installing a package in a running process)."""
        self._scan.cache_clear()
        self._loaded.clear()

    def names(self) -> list[str]:
        return sorted(self._scan()[0])

    def __contains__(self, name: object) -> bool:
        return name in self._loaded or (isinstance(name, str) and name in self._scan()[0])

    def get(self, name: str) -> T:
        """The entry registered as ``name``; `UnknownName` (a ConfigError) listing the registered ones."""
        entry = self._loaded.get(name)
        if entry is None:
            entry = self._load(name)
        return entry

    def find(self, name: Any) -> T | None:
        """The entry registered as ``name``, or None (a name that is not registered, or not a string)."""
        entry = self._loaded.get(name) if isinstance(name, str) else None
        if entry is None and isinstance(name, str) and name in self:
            entry = self._load(name)
        return entry

    def check(self, name: str, where: str | None = None) -> str:
        """``name`` when it is registered (and loads), else the ConfigError; ``where`` names the setting."""
        self._load(name, where)
        return name

    def _load(self, name: str, where: str | None = None) -> T:
        where = where or self.setting
        found, conflicts = self._scan()
        if name not in found:
            raise UnknownName(f"{where}: unknown {self.what} {name!r}; registered: {', '.join(self.names())} "
                              f"(a package registers one in the entry-point group {self.group!r})")
        if name in conflicts:
            raise ConfigError(f"{where}: the {self.what} {name!r} is registered by several packages "
                              f"({', '.join(conflicts[name])}); uninstall all but one")
        ep = found[name]
        try:
            entry = self._make(ep.load(), name)
        except Exception as exc:  # noqa: BLE001 - a broken plugin is a configuration problem
            raise ConfigError(f"{where}: the {self.what} {name!r} ({ep.value}) could not be loaded: "
                              f"{type(exc).__name__}: {exc}") from None
        self._loaded[name] = entry
        return entry
