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


class EmbeddingDimensionError(UserError):
    """One embedding model identity gave vectors of two dimensions (the server changed models)."""

    retryable = False  # sending the request again gives the same vectors

    def __init__(self, model: str, before: int, now: int, *, before_where: str, now_where: str):
        self.model, self.before, self.now = model, before, now
        super().__init__(
            f"the embedding model {model!r} gave vectors of {now} dimensions ({now_where}) and of {before} "
            f"dimensions ({before_where}): one embedding model has one dimension.\n  fix: if the server now "
            f"serves another model, name it in denoise.embedding_model: the vectors kept "
            f"for {model!r} stay in the run directory for that name, and nothing else is lost. Otherwise serve "
            f"the model that gives {before} dimensions again, then run the same command again.")


class ServiceDown(RobustFTError):
    """Every call to a server has failed for `give_up_after_s`: stop the run, keep progress (exit 1)."""
