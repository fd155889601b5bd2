"""Error types. The CLI turns `UserError` into a message and exit code 2, anything else into 1.

Every message says what is wrong, where (file, row, field) and how to fix it, because the person
reading it has only the terminal.
"""

from __future__ import annotations


class RobustFTError(Exception):
    """Base class of the library's own errors."""

    exit_code = 1


class UserError(RobustFTError):
    """Bad input or configuration: the user can fix it. Exit code 2."""

    exit_code = 2


class InputError(UserError):
    """A data file that cannot be read as a dataset."""

    def __init__(self, message: str, *, path: object = None, row: int | None = None,
                 field: str | None = None, fix: str | None = None):
        self.path, self.row, self.field, self.fix = path, row, field, fix
        where = []
        if path is not None:
            where.append(str(path))
        if row is not None:
            where.append(f"row {row}")
        if field is not None:
            where.append(f"field '{field}'")
        text = (", ".join(where) + ": " if where else "") + message
        if fix:
            text += f"\n  fix: {fix}"
        super().__init__(text)


class ConfigError(UserError):
    """A configuration file or flag that cannot be used."""


class ModelCallError(RobustFTError):
    """A model call that kept failing after its retries; recorded per sample, never fatal to a run."""
