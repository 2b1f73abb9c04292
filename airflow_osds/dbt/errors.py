"""Errors raised by the dbt engine (``airflow_osds.dbt``).

They live here rather than in :mod:`airflow_osds.exceptions` so the dbt engine stays one
self-contained package; all subclass :class:`~airflow_osds.exceptions.OsdsError`.

Two families matter to whoever runs dbt, because they decide whether a retry can help:

* :class:`DbtRunError`: dbt ran and reported failures, or could not finish (a database that
  went away, a killed process). Another try may succeed, so operators let Airflow retry.
* :class:`DbtConfigurationError` (a :class:`DbtRunError`): the same inputs fail the same way on
  every try: an unsupported command, a profile that cannot be built, dbt not installed, no
  ``dbt_project.yml``, a selection that matches nothing, a secret where it would leak. Operators
  fail the task at once (``AirflowFailException``) instead of burning retries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_osds.exceptions import OsdsError

if TYPE_CHECKING:
    from airflow_osds.dbt.runner import DbtRunResult

__all__ = [
    "DbtArtifactError",
    "DbtCommandError",
    "DbtConfigurationError",
    "DbtGraphError",
    "DbtNotInstalledError",
    "DbtNothingSelectedError",
    "DbtProjectError",
    "DbtRunError",
    "DbtSecretExposureError",
    "DbtSelectionError",
    "ProfileError",
]


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


class DbtRunError(OsdsError):
    """dbt could not run, or ran and reported failures (see ``result``); another try may succeed.

    :param message: what failed, naming the failed nodes and dbt's messages where known.
    :param result: what the invocation did, when it got as far as running dbt.
    """

    def __init__(self, message: str, *, result: DbtRunResult | None = None) -> None:
        self.result = result
        super().__init__(message)


class DbtConfigurationError(DbtRunError):
    """The invocation is misconfigured: it fails the same way on every try, so retrying is pointless.

    Operators turn it into ``AirflowFailException``. The message says what to change.
    """


class DbtCommandError(DbtConfigurationError):
    """The requested dbt command, or one of its options, is not supported."""


class DbtNotInstalledError(DbtConfigurationError):
    """dbt cannot be started: not importable in this interpreter, or the executable is missing.

    :param executable: the ``dbt_executable`` asked for, or ``None`` for in-process mode.
    """

    def __init__(self, message: str, *, executable: str | None = None) -> None:
        self.executable = executable
        super().__init__(message)


class DbtProjectError(DbtConfigurationError):
    """The project directory is not a dbt project (it has no ``dbt_project.yml``).

    :param project_dir: the directory given.
    """

    def __init__(self, project_dir: str) -> None:
        self.project_dir = project_dir
        super().__init__(
            f"{project_dir} is not a dbt project (no dbt_project.yml); "
            "point project_dir at the folder holding dbt_project.yml."
        )


class DbtNothingSelectedError(DbtConfigurationError):
    """dbt ran and selected no node, so it did nothing: the selection names nothing in the project.

    Without this error the task would succeed and its outlets would announce tables that
    nothing rebuilt.

    :param command: the dbt command, e.g. ``"build"``.
    :param selection: the selection as passed to dbt (``--select … --exclude …``), or
        ``"(no selection)"``.
    """

    def __init__(self, command: str, selection: str, *, result: DbtRunResult | None = None) -> None:
        self.command = command
        self.selection = selection
        super().__init__(
            f"dbt {command} selected no nodes with {selection}, so it ran nothing. Check the names, "
            "tags and paths in the selection against the project (`dbt ls` with the same selection "
            "shows what it matches), and that the nodes are enabled.",
            result=result,
        )


class DbtSecretExposureError(DbtConfigurationError):
    """A value would leak a secret: a secret-looking var on dbt's command line, or Airflow's own
    environment (``AIRFLOW_*``: connections, the Fernet key) handed to dbt.

    :param name: the var or environment variable.
    :param reason: why it is refused and how to pass the value instead.
    """

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"{name!r}: {reason}")


class ProfileError(DbtConfigurationError):
    """A dbt profile cannot be rendered from the given connection fields.

    :param reason: what is wrong and what to set.
    :param field: the profile field at fault, when there is one (``"host"``, ``"options"`` …).
    :param conn_id: the Airflow connection the fields came from, when known.
    """

    def __init__(self, reason: str, *, field: str | None = None, conn_id: str | None = None) -> None:
        self.reason = reason
        self.field = field
        self.conn_id = conn_id
        prefix = f"dbt profile from connection {conn_id!r}: " if conn_id else ""
        super().__init__(prefix + reason)

    def for_connection(self, conn_id: str) -> ProfileError:
        """The same error, naming the Airflow connection the fields came from."""
        return ProfileError(self.reason, field=self.field, conn_id=conn_id)
