"""Exceptions raised by airflow-osds.

Every error carries structured fields so callers branch on attributes, never on
``str(exc)``; messages name the thing, the value and what to do.
"""

from __future__ import annotations

__all__ = [
    "OsdsError",
    "EmbeddedPostgresError",
    "LocalExtraMissing",
    "PipelineError",
    "PipelineFolderError",
    "PipelineSpecError",
    "SpecProblem",
]


class OsdsError(Exception):
    """Base class of every airflow-osds error."""


class EmbeddedPostgresError(OsdsError):
    """The embedded PostgreSQL server could not be set up, started or stopped."""

    def __init__(self, message: str, *, log_tail: str = "") -> None:
        self.log_tail = log_tail
        super().__init__(f"{message}\n--- postgres log (tail) ---\n{log_tail}" if log_tail else message)


class LocalExtraMissing(OsdsError):
    """A local-only command (``osds demo | run | up | down``) runs where the ``[local]`` extra is not installed."""

    def __init__(self, command: str, missing: list[str]) -> None:
        self.command = command
        self.missing = missing
        super().__init__(f"osds {command} needs the local extra: pip install 'airflow-osds[local]' "
                         f"(missing: {', '.join(missing)})")


class PipelineError(OsdsError):
    """A pipeline file cannot be turned into a DAG."""


class PipelineSpecError(PipelineError):
    """A pipeline YAML file is invalid; ``problems`` lists each one with its position."""

    def __init__(self, path: str, problems: list["SpecProblem"]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("\n".join(p.render(path) for p in problems))

    def __reduce__(self) -> tuple[object, ...]:  # kept in the compiled cache
        return (type(self), (self.path, self.problems))


class PipelineFolderError(PipelineError):
    """One or more pipeline files in a folder are invalid; ``errors`` holds one error per file."""

    def __init__(self, folder: str, errors: list[PipelineSpecError]) -> None:
        self.folder = folder
        self.errors = errors
        files = "file" if len(errors) == 1 else "files"
        details = "\n".join(str(e) for e in errors)
        super().__init__(f"{len(errors)} invalid pipeline {files} in {folder}:\n{details}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.folder, self.errors))


class SpecProblem:
    """One problem in a pipeline file, located by line and column (1-based)."""

    __slots__ = ("line", "column", "location", "message")

    def __init__(self, message: str, *, line: int | None, column: int | None, location: str = "") -> None:
        self.message = message
        self.line = line
        self.column = column
        self.location = location

    def render(self, path: str) -> str:
        where = f"{path}:{self.line}:{self.column}" if self.line else path
        at = f" ({self.location})" if self.location else ""
        return f"{where}: {self.message}{at}"

    def as_dict(self, path: str) -> dict[str, object]:
        return {"file": path, "line": self.line, "column": self.column, "location": self.location, "message": self.message}

    def __repr__(self) -> str:
        return f"SpecProblem({self.render('<file>')!r})"
