"""Errors raised by the dbt engine (``airflow_osds.dbt``).

They live here rather than in :mod:`airflow_osds.exceptions` so the dbt engine stays one
self-contained package; both subclass :class:`~airflow_osds.exceptions.OsdsError`.
"""

from __future__ import annotations

from airflow_osds.exceptions import OsdsError

__all__ = ["DbtArtifactError", "DbtGraphError", "DbtSelectionError"]


class DbtArtifactError(OsdsError):
    """A dbt artifact (``manifest.json``, ``run_results.json``) is missing, unreadable or malformed.

    :param path: the artifact file, or ``"<dict>"`` when parsed from memory.
    :param reason: what is wrong and, where possible, what to do about it.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class DbtSelectionError(OsdsError):
    """A dbt selector is not supported by, or cannot be resolved against, the manifest.

    :param selector: the selector exactly as written by the user.
    :param reason: what is wrong, naming the supported syntax when that is the problem.
    """

    def __init__(self, selector: str, reason: str) -> None:
        self.selector = selector
        self.reason = reason
        super().__init__(f"dbt selector {selector!r}: {reason}")


class DbtGraphError(OsdsError):
    """Selected nodes cannot be ordered: a dependency cycle, e.g. between folder groups."""
