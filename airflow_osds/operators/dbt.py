"""Operators running dbt commands; a retried task resumes with ``dbt retry``."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from airflow_osds.assets import parse_table, table_asset_uri
from airflow_osds.dbt.artifacts import RunResults, render_table
from airflow_osds.dbt.errors import DbtConfigurationError, DbtRunError
from airflow_osds.dbt.fingerprint import stale_reason
from airflow_osds.dbt.state import without_state
from airflow_osds.dbt.runner import DbtRunResult
from airflow_osds.hooks.dbt import DbtHook
from airflow_osds.operators._lineage import OpenLineageMixin
from airflow_osds.operators._templated import rendered_flag

if TYPE_CHECKING:
    from airflow.sdk import Context


__all__ = [
    "DbtBuildOperator",
    "DbtOperator",
    "DbtRunOperator",
    "DbtSeedOperator",
    "DbtSnapshotOperator",
    "DbtSourceFreshnessOperator",
    "DbtTestOperator",
]


class DbtOperator(OpenLineageMixin, BaseOperator):
    """
    Run one dbt command on the warehouse connection.

    The task log shows dbt's output and a table per node (status, time, rows, failures).

    **Failures and retries**, as the Apache providers handle them:

    * A configuration error fails the task at once with ``AirflowFailException``, whatever
      ``retries`` says (see :class:`~airflow_osds.dbt.errors.DbtConfigurationError`): an
      unsupported command, a connection that cannot make a profile (no host, login or
      database), dbt not installed, no ``dbt_project.yml``, a selection that matches nothing
      (dbt would run nothing while the outlets announce rebuilt tables), a secret in ``vars``.
    * A failing node, or dbt failing mid-way, fails the try and Airflow retries it. The failed
      invocation's ``run_results.json`` (redacted) is kept in the warehouse
      (``osds_state.dbt_run_results``) and the next try runs ``dbt retry``: only what errored,
      failed or was skipped runs again, on whichever worker picks it up. The row is removed
      after a success and when the failing try is the last one. When it cannot be kept, the
      log says why, the try still fails with dbt's error (which mentions it), and the next try
      reruns the whole command.

    **on_kill** stops dbt. With ``dbt_executable``: dbt's whole process group, with SIGINT
    first (dbt then terminates its open queries), SIGTERM and SIGKILL after grace periods. In
    process, dbt runs inside the task process, which Airflow kills after ``on_kill``; until
    then ``on_kill`` terminates dbt's open queries (the adapter's ``cancel_open_connections``)
    and keeps doing so until dbt returns, so the warehouse is not left running them. Either
    way, the queries still running under the invocation's own ``application_name`` are then
    terminated too, and the log says so (see :mod:`airflow_osds.dbt.backends`).

    :param command: ``build``, ``run``, ``test``, ``seed``, ``snapshot``, ``source freshness`` …
    :param project_dir: the dbt project (may be read-only).
    :param warehouse_conn_id: ``postgres`` connection of the warehouse.
    :param select: dbt selection (templated).
    :param exclude: dbt exclusion (templated).
    :param vars: dbt ``--vars`` (templated). They travel on dbt's command line: a var whose
        name looks secret (``api_token``, ``db_password`` …) is refused; use ``env_vars``.
    :param env_vars: environment variables for the project's ``env_var()`` (templated): a dict
        of values, or a list of names passed on from the worker's environment; never
        ``AIRFLOW_*``. With ``dbt_executable``, dbt sees only these, ``PATH``, ``HOME``, the
        locale, ``TZ``, ``TMPDIR`` and the CA-bundle variables; in process, dbt sees the whole
        task environment, Airflow's included.
    :param full_refresh: ``--full-refresh`` (templated).
    :param target_schema: schema dbt builds into (templated).
    :param threads: dbt threads.
    :param dbt_executable: run dbt from this executable/virtualenv instead of in process.
    :param resume_with_retry: on the task's next try, run ``dbt retry`` instead of the command.
    :param indirect_selection: dbt's ``--indirect-selection`` (``eager``, ``cautious`` …).
    :param populate_cache: ``False``: dbt's ``--no-populate-cache``: do not list, at start, the
        relations of every schema the project builds into (and their dependencies); dbt looks up
        the ones the selected nodes need when it needs them. What a task that builds one model
        wants (~60 ms of a one-model run here); the dbt block sets it for ``model`` and
        ``folder`` tasks.
    :param state: for ``state:`` selectors (``state:modified+``): where the manifest of the last
        successful run is kept — ``warehouse`` (table ``osds_state.dbt_state_manifests``) or a
        folder or object-store URL. dbt compares with it (``--state``); a successful run
        replaces it. With none stored yet, the selection runs without its ``state:`` parts,
        and the log says so. A state run that finds nothing changed succeeds, saying so.
    :param state_key: the name the state is kept under (default ``<dag_id>/<task_id>``).
    :param parse_state: where ``osds dbt-parse`` wrote the manifest (default
        ``<project_dir>/target``): when the run's connection, vars and dbt version are the
        parse's, dbt starts from that parse instead of parsing the project again; the task log
        says whether it did, from dbt's own log, and why not.
    :param create_schemas: schemas the selected models build into, created (when missing) before dbt
        runs, under the lock every airflow-osds DDL takes. dbt creates a missing schema itself, with a
        ``CREATE SCHEMA IF NOT EXISTS`` that PostgreSQL does not serialize: model tasks starting
        together on a fresh warehouse would collide on it and fail. The dbt block passes its tasks'.
    """

    template_fields: Sequence[str] = ("select", "exclude", "vars", "env_vars", "full_refresh", "target_schema")
    template_fields_renderers = {"vars": "json", "env_vars": "json"}
    ui_color = "#ff694b"

    def __init__(
        self,
        *,
        project_dir: str,
        command: str = "build",
        warehouse_conn_id: str = "warehouse",
        select: Sequence[str] | str = (),
        exclude: Sequence[str] | str = (),
        vars: dict[str, Any] | None = None,
        env_vars: Mapping[str, str] | Sequence[str] | None = None,
        full_refresh: bool | str = False,
        target_schema: str | None = None,
        threads: int = 4,
        dbt_executable: str | None = None,
        resume_with_retry: bool = True,
        indirect_selection: str | None = None,
        populate_cache: bool = True,
        parse_state: str | None = None,
        state: str | None = None,
        state_key: str | None = None,
        create_schemas: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.project_dir = project_dir
        self.command = command
        self.warehouse_conn_id = warehouse_conn_id
        self.select = select
        self.exclude = exclude
        self.vars = vars
        self.env_vars = env_vars
        self.full_refresh = full_refresh
        self.target_schema = target_schema
        self.threads = threads
        self.dbt_executable = dbt_executable
        self.resume_with_retry = resume_with_retry
        self.indirect_selection = indirect_selection
        self.populate_cache = populate_cache
        self.parse_state = parse_state
        self.state = state
        self.state_key = state_key
        self.create_schemas = list(create_schemas)

    @cached_property
    def hook(self) -> DbtHook:
        return DbtHook(
            self.warehouse_conn_id,
            target_schema=self.target_schema,
            threads=self.threads,
            dbt_executable=self.dbt_executable,
        )

    def execute(self, context: Context) -> dict[str, Any]:
        try:
            return self._execute(context)
        except DbtConfigurationError as exc:
            # The same inputs fail the same way on every try: fail now, keep no state behind.
            if self.resume_with_retry and context["ti"].try_number > 1:
                self._forget_state(_state_key(context))
            raise AirflowFailException(str(exc)) from exc

    def on_kill(self) -> None:
        """Stop dbt (see the class docstring)."""
        if "hook" in self.__dict__:  # no hook yet: nothing is running
            self.hook.stop()

    def _execute(self, context: Context) -> dict[str, Any]:
        stale = stale_reason(self.project_dir, self._parse_state())
        if stale is not None:  # the DAG was rendered from models dbt would no longer build
            raise DbtConfigurationError(stale)
        key, try_number = _state_key(context), context["ti"].try_number
        if self.create_schemas and self.command in _BUILDING:
            created = self.hook.create_schemas(self.create_schemas)
            if created:
                self.log.info("Created schema(s) %s before dbt runs", ", ".join(created))
        # A state run is not resumed with `dbt retry`: its --state folder is gone by then, and
        # rerunning compares with the same stored state (it is replaced only on success).
        resume = self.resume_with_retry and not self.state
        previous = self.hook.load_run_results(key) if resume and try_number > 1 else None
        with tempfile.TemporaryDirectory(prefix="osds-dbt-target-") as target:
            if self.state:
                return self._run_against_state(target, key, context)
            if previous is not None:
                # dbt retry reads the failed invocation's run_results.json from the target path.
                (Path(target) / "run_results.json").write_text(json.dumps(previous))
                self.log.info("Try %s: resuming the failed dbt %s with `dbt retry`", try_number, self.command)
                result = self.hook.run(
                    "retry", project_dir=self.project_dir, target_path=target, vars=self._vars(), env_vars=self.env_vars,
                    parse_state=self._parse_state(),
                )
            else:
                result = self._run_command(target)
        return self._finish(result, key, context)

    def _run_against_state(self, target: str, key: list[str], context: Context) -> dict[str, Any]:
        """``state:`` selection: compare with the stored manifest, and store this run's on success."""
        assert self.state is not None
        name = self.state_key or f"{context['ti'].dag_id}/{context['ti'].task_id}"
        stored = self.hook.load_state_manifest(self.state, name)
        state_dir = Path(target) / "osds-state"
        if stored is None:
            select = without_state(_as_list(self.select))
            self.log.warning("No stored dbt state `%s` in %s yet: running %s without its state: parts",
                             name, self.state, " ".join(select))
            result = self._run_command(target, select=select, write_manifest=True)
        else:
            state_dir.mkdir()
            (state_dir / "manifest.json").write_bytes(stored)
            result = self._run_command(target, extra_args=["--state", str(state_dir)], write_manifest=True)
        if result.ran_nothing and stored is not None:
            self.log.warning("Nothing changed since the stored state `%s`: dbt %s ran no node", name, result.command)
            return {"command": result.command, "success": True, "nothing_changed": True,
                    "partial_parse": result.partial_parse, "parse_note": result.parse_note}
        summary = self._finish(result, key, context)
        summary["nodes"] = sorted(result.node_statuses())  # what changed, and what depends on it
        summary["compared_with_state"] = stored is not None
        manifest = Path(target) / "manifest.json"
        if manifest.is_file():
            self.hook.save_state_manifest(self.state, name, manifest.read_bytes())
            self.log.info("Stored this run's manifest as dbt state `%s` in %s", name, self.state)
        return summary

    def _run_command(
        self, target: str, *, select: list[str] | None = None, extra_args: Sequence[str] = (), write_manifest: bool = False
    ) -> DbtRunResult:
        kwargs: dict[str, Any] = {
            "vars": self._vars(), "target_path": target, "env_vars": self.env_vars, "parse_state": self._parse_state(),
            "write_manifest": write_manifest,
        }
        if self.command not in ("retry", "parse"):
            kwargs.update(select=_as_list(self.select) if select is None else select, exclude=_as_list(self.exclude))
        if self.command in ("build", "run", "seed") and rendered_flag(self.full_refresh, name="full_refresh"):
            kwargs["full_refresh"] = True
        kwargs["extra_args"] = list(extra_args)
        if self.indirect_selection and self.command in ("build", "test"):
            kwargs["extra_args"] += ["--indirect-selection", self.indirect_selection]
        if not self.populate_cache and self.command not in ("parse", "retry"):
            kwargs["extra_args"].append("--no-populate-cache")
        return self.hook.run(self.command, project_dir=self.project_dir, **kwargs)

    def _parse_state(self) -> str:
        return self.parse_state or str(Path(self.project_dir) / "target")

    def _finish(self, result: DbtRunResult, key: list[str], context: Context) -> dict[str, Any]:
        summary: dict[str, Any] = {"command": result.command, "success": result.success,
                                   "partial_parse": result.partial_parse, "parse_note": result.parse_note}
        parsed = RunResults.from_dict(result.run_results) if result.run_results else None
        if parsed is not None:
            self.log.info("dbt %s results:\n%s", result.command, render_table(parsed))
            summary["status_counts"] = parsed.status_counts()
        failure = result.failure()
        if failure is None:
            if parsed is not None:
                self._record_rows(parsed, context)
            # Only an earlier try of this task instance can have kept state (the key holds the
            # run id; a cleared task gets the next try number): try 1 has nothing to remove.
            if self.resume_with_retry and context["ti"].try_number > 1:
                self._forget_state(key)
            return summary
        if isinstance(failure, DbtConfigurationError) or not self.resume_with_retry:
            raise failure
        problem = self._keep_state_for_next_try(result, key, context)
        if problem is not None:
            raise DbtRunError(f"{failure}\n{problem}", result=result)
        raise failure

    def _keep_state_for_next_try(self, result: DbtRunResult, key: list[str], context: Context) -> str | None:
        """Keep the failed run's results for ``dbt retry``, or drop them on the last try.

        :return: ``None``, or what went wrong, for the task's error (the log has the traceback).
        """
        ti = context["ti"]
        last = _no_retry_left(ti, self.retries)
        try:
            if last:
                self.hook.forget_run_results(key)
            elif result.run_results:
                self.hook.save_run_results(key, result.run_results)
                self.log.info("Kept dbt's run_results.json: try %s will resume with `dbt retry`", ti.try_number + 1)
        except Exception as exc:
            action = "removing the kept run_results.json" if last else "keeping dbt's run_results.json for the next try"
            self.log.error("dbt failed, and %s failed as well", action, exc_info=True)
            rerun = "" if last else f"; the next try reruns the whole dbt {result.command}"
            return f"Also, {action} failed ({type(exc).__name__}: {exc}){rerun}."
        return None

    def _forget_state(self, key: list[str]) -> None:
        """Remove the kept run_results.json, if any; a failure only warns (dbt's outcome stands)."""
        try:
            self.hook.forget_run_results(key)
        except Exception:
            self.log.warning("Could not remove the kept dbt run_results.json for %s", "/".join(key), exc_info=True)

    def _record_rows(self, results: RunResults, context: Context) -> None:
        """Put each model's ``rows_affected`` on the event of its table's Asset."""
        by_uri = {}
        for node in results.results:
            table = _table_of(node.relation_name)
            if table and node.rows_affected is not None:
                by_uri[table_asset_uri(parse_table(table, conn_id=self.warehouse_conn_id))] = node.rows_affected
        for outlet in self.outlets:
            uri = getattr(outlet, "uri", None)
            if uri in by_uri:
                context["outlet_events"][outlet].extra = {"rows_affected": by_uri[uri]}

    def _vars(self) -> dict[str, Any] | None:
        if isinstance(self.vars, str):  # a templated JSON string
            return json.loads(self.vars) if self.vars.strip() else None
        return self.vars


# Commands that create relations, hence schemas.
_BUILDING = frozenset({"build", "run", "seed", "snapshot", "retry"})


def _no_retry_left(ti: Any, retries: int) -> bool:
    """Whether this try is the last one: Airflow's own rule (``max_tries`` grows when a task is
    cleared, ``retries`` does not)."""
    max_tries = getattr(ti, "max_tries", None)
    if max_tries is None:
        max_tries = retries
    return max_tries == 0 or ti.try_number > max_tries


def _table_of(relation_name: str | None) -> str | None:
    """``"db"."schema"."table"`` → ``schema.table``."""
    if not relation_name:
        return None
    parts = [p.strip('"') for p in relation_name.split(".")]
    return ".".join(parts[-2:]) if len(parts) >= 2 else None


def _state_key(context: Context) -> list[str]:
    ti = context["ti"]
    return [ti.dag_id, ti.task_id, ti.run_id, str(ti.map_index)]


def _as_list(value: Sequence[str] | str) -> list[str]:
    return value.split() if isinstance(value, str) else list(value)



class DbtBuildOperator(DbtOperator):
    """``dbt build``: seeds, models, snapshots and tests in dependency order."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(command="build", **kwargs)


class DbtRunOperator(DbtOperator):
    """``dbt run``: models only."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(command="run", **kwargs)


class DbtTestOperator(DbtOperator):
    """``dbt test``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(command="test", **kwargs)


class DbtSeedOperator(DbtOperator):
    """``dbt seed``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(command="seed", **kwargs)


class DbtSnapshotOperator(DbtOperator):
    """``dbt snapshot``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(command="snapshot", **kwargs)


class DbtSourceFreshnessOperator(DbtOperator):
    """``dbt source freshness``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(command="source freshness", **kwargs)
