"""``osds demo``: run the project's pipelines end to end on the embedded PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from airflow_osds.assets import ASSET_SCHEME, DestinationRef, TableRef, table_ref_from_uri
from airflow_osds.demo_superset import (
    DEMO_CONNECTION,
    dashboard_url,
    publish_demo_dashboard,
    refresh_report,
    refresh_table,
    superset_state_dir,
)
from airflow_osds.localrun import CRM_SOURCE_DB, DagRunResult, LocalStack, apply_environ, migrate_metadata_db, run_dag
from airflow_osds.postgres import relation_exists
from airflow_osds.superset import LocalSuperset
from airflow_osds.superset.client import SupersetApiError, SupersetClient

__all__ = ["LocalSession", "local_session", "run_demo", "run_pipeline", "seed_crm_source", "tasks_for_step"]


NOT_RUN = "not run"  # a task `osds run --step` left out (Airflow has it marked success)


@dataclass(frozen=True)
class TableCount:
    table: TableRef
    rows: int | None


@dataclass
class LocalSession:
    """What the demo and ``osds run`` work in: the project's embedded PostgreSQL (and Superset, once started),
    Airflow's environment and metadata, the dbt manifests written, and the DAG files parsed."""

    console: Console
    project_dir: Path
    stack: LocalStack
    bag: Any = None
    bi: LocalSuperset | None = None
    keep_running: bool = False

    def start_superset(self) -> LocalSuperset:
        if self.bi is None:
            self.console.print("starting Superset 6.1 on 127.0.0.1 (its virtualenv is built on the first run: a few "
                               "minutes; skip it with --no-superset) …")
            self.bi = LocalSuperset(superset_state_dir(self.project_dir), die_with_parent=not self.keep_running).start()
            self.console.print(f"Superset at {self.bi.base_url} (login {self.bi.admin[0]} / {self.bi.admin[1]}), "
                               f"ready in {self.bi.timings['total']:.0f} s")
            # Read at task run time: setting it now reaches every task dag.test() runs in this process.
            os.environ[f"AIRFLOW_CONN_{DEMO_CONNECTION.upper()}"] = json.dumps(self.bi.airflow_connection())
        return self.bi

    def publish_dashboard(self, dag_id: str) -> bool:
        """The demo dashboard, before a pipeline refreshing Superset runs; False (said why) when it cannot be."""
        bi = self.start_superset()
        try:
            with SupersetClient(bi.base_url, *bi.admin) as client:
                publish_demo_dashboard(client, self.stack.postgres.uri(self.stack.warehouse_db, driver="psycopg2"))
        except SupersetApiError as exc:  # e.g. the marts are missing because their pipeline failed
            self.console.print(f"[red]not running pipeline {dag_id}[/]: the demo dashboard could not be published: {exc}")
            return False
        return True


@contextmanager
def local_session(project_dir: Path, *, title: str, keep_running: bool = False, verbose: bool = False) -> Iterator[LocalSession]:
    """Start the project's embedded stack, prepare Airflow and parse ``dags/``; stop it all afterwards
    (unless ``keep_running``). Raises :class:`DagImportErrors` when a DAG file does not import."""
    # Messages hold paths and names that must stay greppable (logs, CI output): never wrapped; tables still fit.
    console = Console(soft_wrap=True)
    # dag.test() talks to an in-process execution API through starlette's TestClient,
    # which warns about its own httpx use: noise for a demo user.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    stack = LocalStack(state_dir=project_dir / ".osds", dags_folder=project_dir / "dags")
    console.print(f"[bold]{title}[/]: embedded PostgreSQL in {stack.postgres.state_dir}")
    stack.start()
    session = LocalSession(console, project_dir, stack, keep_running=keep_running)
    try:
        crm_script = project_dir / "include" / "data" / "crm" / "crm_source.sql"
        if crm_script.exists():
            seed_crm_source(stack, crm_script)
        apply_environ(stack.environ(extra={"AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO" if verbose else "WARNING"}))
        migrate_metadata_db()
        session.bag = _parse_dags(console, stack)
        yield session
    finally:
        bi = session.bi
        if keep_running:
            # Never the password in the terminal: it stays in its 0600 file.
            console.print(f"PostgreSQL keeps running: {stack.postgres.uri(stack.warehouse_db, with_password=False)} "
                          f"(password in {stack.postgres.password_file})")
            if bi is not None:
                console.print(f"Superset keeps running: {dashboard_url(bi.base_url)} (login {bi.admin[0]} / "
                              f"{bi.admin[1]}; stop it with kill {bi.pid})")
        else:
            if bi is not None:
                bi.stop()
            stack.postgres.stop()


class DagImportErrors(Exception):
    """A DAG file of the project does not import (printed already)."""


def _parse_dags(console: Console, stack: LocalStack) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    from airflow_osds.dbt.manifest_build import parse_stale_projects
    from airflow_osds.hooks.dbt import DbtHook

    # Parsed for the demo's warehouse, so every dbt task reuses the parse (dbt partial parsing).
    warehouse = DbtHook("warehouse", target_schema="public").get_conn()
    for project in parse_stale_projects(stack.dags_folder.parent / "include" / "dbt", connection=warehouse):
        console.print(f"dbt parse {project.name}: manifest written")
    bag = DagBag(dag_folder=str(stack.dags_folder))
    for path, error in bag.import_errors.items():
        console.print(f"[red]import error[/] in {path}:\n{error}")
    if bag.import_errors:
        raise DagImportErrors(sorted(bag.import_errors))
    return bag


def run_demo(project_dir: Path, *, keep_running: bool = False, verbose: bool = False, superset: bool = True) -> int:
    """Run every pipeline of ``project_dir``; return the process exit code.

    :param superset: start a local Superset for the pipelines that refresh one (else they are not run).
    """
    try:
        with local_session(project_dir, title="osds demo", keep_running=keep_running, verbose=verbose) as session:
            return _run_pipelines(session, superset=superset)
    except DagImportErrors:
        return 1


def run_pipeline(project_dir: Path, pipeline: str, *, step: str | None = None, superset: bool = True,
                 keep_running: bool = False, verbose: bool = False, retries: bool = False) -> int:
    """``osds run``: one pipeline of ``project_dir`` on the embedded stack, or one ``step`` of it (a task or a
    group) with the steps it runs after; the same summary as the demo. Returns the process exit code.

    :param retries: keep the tasks' retries; by default each task runs once, so that an author sees a
        failure at once instead of after the pipeline's ``retry_delay``.
    """
    try:
        with local_session(project_dir, title=f"osds run {pipeline}", keep_running=keep_running,
                           verbose=verbose) as session:
            return _run_one(session, pipeline, step, superset=superset, retries=retries)
    except DagImportErrors:
        return 1


def _run_one(session: LocalSession, pipeline: str, step: str | None, *, superset: bool, retries: bool) -> int:
    console, bag = session.console, session.bag
    dag = bag.dags.get(pipeline)
    if dag is None:
        console.print(f"[red]no pipeline {pipeline!r}[/] in {session.stack.dags_folder}; pipelines: "
                      f"{', '.join(sorted(bag.dags)) or 'none'}")
        return 2
    try:
        wanted = tasks_for_step(dag, step) if step else set(dag.task_dict)
    except LookupError as exc:
        console.print(f"[red]{exc}[/]")
        return 2
    refresh_tasks = {t for t in wanted if _is_refresh(dag.task_dict[t])}
    if refresh_tasks and not superset:
        wanted -= refresh_tasks
        console.print(f"not running {', '.join(sorted(refresh_tasks))}: it refreshes Superset (--no-superset)")
    if not wanted:
        console.print("[red]nothing to run[/]")
        return 2
    if refresh_tasks and superset and not session.publish_dashboard(pipeline):
        return 1
    retried = sorted(t for t in wanted if dag.task_dict[t].retries)
    if retried and not retries:
        for task_id in retried:
            dag.task_dict[task_id].retries = 0
        console.print(f"retries off for this run ({', '.join(retried)}): a failing task fails it at once "
                      "(--retries keeps the pipeline's)")
    others = sorted(set(dag.task_dict) - wanted)
    if others:
        console.print(f"running {', '.join(sorted(wanted))} of pipeline [bold]{pipeline}[/]; the other steps are "
                      f"marked success without running: {', '.join(others)}")
    else:
        console.print(f"running pipeline [bold]{pipeline}[/] …")
    result = _run_locally(session, dag, skip=set(others))
    result.task_states.update({t: NOT_RUN for t in others})
    syncs = [("1", result)] if pipeline in _syncs(bag) else []
    _print_summary(session, [result], syncs)
    if not result.succeeded:
        console.print(f"[red]pipeline {pipeline} {result.state}[/]")
        return 1
    console.print(f"[green]pipeline {pipeline} succeeded[/]")
    return 0


def _run_locally(session: LocalSession, dag: Any, *, skip: frozenset[str] | set[str] = frozenset()) -> DagRunResult:
    """One run of ``dag`` through Airflow's task runner, the tasks in ``skip`` marked success without running.

    A sensor waiting for new enriched files that are not there is marked too: under the scheduler it would
    wait in the triggerer for the next batch; here nobody is going to drop one. The load after it then
    says that it had nothing new."""
    idle = {task.task_id for task in dag.tasks if task.task_id not in skip and _waits_for_nothing(task)}
    for task_id in sorted(idle):
        task = dag.task_dict[task_id]
        session.console.print(f"{dag.dag_id}.{task_id}: no enriched files at {task._source()} that are not loaded "
                              "yet; not waiting for more (marked success)")
    marked = skip | idle
    # dag.test() runs the DAG as the bundle holds it; the marked tasks are set to success, not run.
    pattern = "^(" + "|".join(re.escape(t) for t in sorted(marked)) + ")$" if marked else None
    return run_dag(dag, mark_success_pattern=pattern)


def _waits_for_nothing(task: Any) -> bool:
    from airflow_osds.sensors.snowplow import SnowplowNewFilesSensor

    return isinstance(task, SnowplowNewFilesSensor) and "{{" not in task.source and not task.pending_files()


def tasks_for_step(dag: Any, step: str) -> set[str]:
    """The tasks of ``step`` (a task id, a group id, or a task's own id inside its group) and every task they
    run after; ``LookupError`` naming the steps when it matches none."""
    ids = set(dag.task_dict)
    if step in ids:
        matched = {step}
    else:
        matched = {t for t in ids if t.startswith(f"{step}.")}  # a group: all its tasks
        if not matched:
            matched = {t for t in ids if t.endswith(f".{step}")}  # a task inside its group
            if len(matched) > 1:
                raise LookupError(f"step {step!r} is ambiguous in {dag.dag_id}: {', '.join(sorted(matched))}; "
                                  "give its full id")
    if not matched:
        raise LookupError(f"pipeline {dag.dag_id} has no step {step!r}; its tasks: {', '.join(sorted(ids))}")
    wanted = set(matched)
    for task_id in matched:
        wanted |= dag.task_dict[task_id].get_flat_relative_ids(upstream=True)
    return wanted


def seed_crm_source(stack: LocalStack, script: Path) -> None:
    """The demo's CRM database, which the web_analytics pipeline replicates into raw_crm (recreated each run)."""
    stack.postgres.create_database(CRM_SOURCE_DB)
    with stack.postgres.connect(CRM_SOURCE_DB, autocommit=True) as conn:
        conn.execute(script.read_text())


def _run_pipelines(session: LocalSession, *, superset: bool) -> int:
    console, stack, bag = session.console, session.stack, session.bag
    order = _run_order(stack.dags_folder.parent / "include" / "pipelines", sorted(bag.dags))
    syncs = _syncs(bag)
    _forget_syncs_into(stack, syncs, CRM_SOURCE_DB)
    _forget_replications_of(stack, bag, CRM_SOURCE_DB)
    refreshes = _refreshes(bag)
    results: list[DagRunResult] = []
    not_run: list[str] = []
    unpublished: list[str] = []
    for dag_id, upstream in order:
        why = f" (its data comes from {', '.join(sorted(upstream))})" if upstream else ""
        if dag_id in refreshes:
            if not superset:
                console.print(f"not running pipeline [bold]{dag_id}[/]: it refreshes Superset (--no-superset)")
                not_run.append(dag_id)
                continue
            if not session.publish_dashboard(dag_id):
                unpublished.append(dag_id)
                continue
        console.print(f"running pipeline [bold]{dag_id}[/]{why} …")
        results.append(_run_locally(session, bag.dags[dag_id]))
    sync_runs = [("1", r) for r in results if r.dag_id in syncs]
    if syncs and all(r.succeeded for r in results):
        sync_runs += [("2", r) for r in _second_round(session, order, set(syncs), results)]
    _print_summary(session, results, sync_runs)
    failed = [r.dag_id for r in results if not r.succeeded] + unpublished
    if failed:
        console.print(f"[red]failed pipelines:[/] {', '.join(failed)}")
        return 1
    skipped = f"; not run: {', '.join(not_run)} (--no-superset)" if not_run else ""
    console.print(f"[green]{len({r.dag_id for r in results})} pipeline(s) succeeded[/] ({len(results)} runs){skipped}")
    return 0


def _print_summary(session: LocalSession, results: list[DagRunResult],
                   sync_runs: list[tuple[str, DagRunResult]]) -> None:
    """What ran, the rows of the tables the run pipelines write, the syncs' counts and the charts warmed."""
    console, bag = session.console, session.bag
    written = sorted({ref for r in results for ref in _written_tables(
        bag.dags[r.dag_id], {t for t, state in r.task_states.items() if state != NOT_RUN})})
    console.print(_runs_table(results))
    console.print(_tables_table(_count_rows(session.stack, written)))
    if sync_runs:
        console.print(_syncs_table(sync_runs))
    refreshes = _refreshes(bag)
    refresh_runs = [(r.dag_id, refresh_report(r.dag_id, r.run_id)) for r in results if r.dag_id in refreshes]
    if refresh_runs:
        console.print(refresh_table(refresh_runs))


def _syncs(bag: object) -> dict[str, list[tuple[str, dict]]]:
    """dag id → (sync id, destination settings) of its reverse-ETL tasks."""
    from airflow_osds.operators.reverse_etl import ReverseEtlSyncOperator

    found: dict[str, list[tuple[str, dict]]] = {}
    for dag_id, dag in bag.dags.items():  # type: ignore[attr-defined]
        for task in dag.tasks:
            if isinstance(task, ReverseEtlSyncOperator):
                found.setdefault(dag_id, []).append((task.sync_id or f"{dag_id}.{task.task_id}", task.destination))
    return found


def _is_refresh(task: Any) -> bool:
    from airflow_osds.operators.superset import SupersetRefreshOperator

    return isinstance(task, SupersetRefreshOperator)


def _refreshes(bag: object) -> set[str]:
    """The dag ids with a Superset refresh task."""
    return {dag_id for dag_id, dag in bag.dags.items()  # type: ignore[attr-defined]
            if any(_is_refresh(task) for task in dag.tasks)}


def _forget_syncs_into(stack: LocalStack, syncs: dict[str, list[tuple[str, dict]]], conn_id: str) -> None:
    """The demo recreates the CRM database, so what was delivered there before is gone: its syncs start over."""
    from airflow_osds.reverse_etl.diff import forget

    with stack.postgres.connect(stack.warehouse_db, autocommit=True) as conn:
        for entries in syncs.values():
            for sync_id, destination in entries:
                if destination.get("connection") == conn_id:
                    forget(conn, sync_id)


def _forget_replications_of(stack: LocalStack, bag: object, conn_id: str) -> None:
    """The demo recreates the CRM database with its original rows, so the Singer steps reading it start over
    too: a bookmark left by a previous demo's second round would skip the reset rows (and the upserting target
    adds no duplicates)."""
    from airflow_osds.operators.singer import SingerOperator
    from airflow_osds.singer import state

    prefixes = [f"{dag_id}:{task.task_id}:" for dag_id, dag in bag.dags.items()  # type: ignore[attr-defined]
                for task in dag.tasks if isinstance(task, SingerOperator) and task.tap.get("connection") == conn_id]
    if not prefixes:
        return
    with stack.postgres.connect(stack.warehouse_db, autocommit=True) as conn:
        for stored in state.list_states(conn):
            if stored.state_id.startswith(tuple(prefixes)):
                state.clear(conn, stored.state_id)


#: The second round's change in the demo's CRM: a high-value user upgrades (one record to update).
_UPGRADE = ("UPDATE contacts SET plan = 'enterprise', lifetime_value = lifetime_value + 5000, updated_at = now() "
            "WHERE user_id = (SELECT user_id FROM vip_customers WHERE plan <> 'enterprise' ORDER BY user_id LIMIT 1) "
            "RETURNING full_name")


def _second_round(session: LocalSession, order: list[tuple[str, set[str]]], sync_dags: set[str],
                  results: list[DagRunResult]) -> list[DagRunResult]:
    """Change one CRM contact, then run again the sync pipelines and the pipelines they read from: each sync
    sends that one change, not every record again."""
    console, stack, bag = session.console, session.stack, session.bag
    with stack.postgres.connect(CRM_SOURCE_DB, autocommit=True) as conn:
        changed = conn.execute(_UPGRADE).fetchone()
    if changed is None:
        return []
    upstream = dict(order)
    again: set[str] = set()
    todo = list(sync_dags)
    while todo:
        dag_id = todo.pop()
        if dag_id not in again:
            again.add(dag_id)
            todo.extend(upstream.get(dag_id, ()))
    console.print(f"second round: {changed[0]} upgrades to enterprise in the CRM; running "
                  f"{', '.join(d for d, _ in order if d in again)} again …")
    rerun = []
    for dag_id, _ in order:
        if dag_id in again:
            result = _run_locally(session, bag.dags[dag_id])  # type: ignore[attr-defined]
            results.append(result)
            if dag_id in sync_dags:
                rerun.append(result)
    return rerun


def _sync_counts(run_id: str) -> dict | None:
    """The counts the run's sync put in its destination's Asset event (None: it had nothing to send)."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (session.query(AssetEvent.extra).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
               .filter(AssetEvent.source_run_id == run_id, AssetModel.uri.like(f"{ASSET_SCHEME}+{DestinationRef.kind}://%"))
               .first())
    return dict(row[0]) if row is not None else None


def _syncs_table(runs: list[tuple[str, DagRunResult]]) -> Table:
    table = Table(title="Reverse-ETL syncs (sent only what changed)")
    for column in ("round", "pipeline", "created", "updated", "deleted", "rejected", "unchanged"):
        table.add_column(column, justify="left" if column in ("round", "pipeline") else "right")
    for round_, result in runs:
        counts = _sync_counts(result.run_id)
        if counts is None:
            table.add_row(round_, result.dag_id, "nothing to send", "", "", "", "")
        else:
            table.add_row(round_, result.dag_id, *(str(counts.get(k, 0)) for k in
                                                   ("created", "updated", "deleted", "rejected", "unchanged")))
    return table


def _run_order(pipelines_dir: Path, dag_ids: list[str]) -> list[tuple[str, set[str]]]:
    """Producers before the pipelines scheduled on their data (what the scheduler would do)."""
    import graphlib

    from airflow_osds.factory.project import load_project

    project = load_project(pipelines_dir)
    upstream = {d: project.upstream_pipelines(project.plans[d]) if d in project.plans else set() for d in dag_ids}
    ordered = graphlib.TopologicalSorter({d: deps & set(dag_ids) for d, deps in upstream.items()}).static_order()
    return [(d, upstream[d]) for d in ordered]


def _written_tables(dag: object, ran: set[str] | None = None) -> list[TableRef]:
    """The tables the DAG's tasks (those in ``ran``, when given) write."""
    refs = []
    for task in dag.tasks:  # type: ignore[attr-defined]
        if ran is not None and task.task_id not in ran:
            continue
        for outlet in task.outlets:
            ref = table_ref_from_uri(getattr(outlet, "uri", ""))
            if ref is not None:
                refs.append(ref)
    return refs


def _count_rows(stack: LocalStack, tables: list[TableRef]) -> list[TableCount]:
    from psycopg import sql

    counts = []
    with stack.postgres.connect(stack.warehouse_db) as conn:
        for ref in tables:
            if ref.conn_id != "warehouse":
                counts.append(TableCount(ref, None))
                continue
            if not relation_exists(conn, ref.qualified):  # its task failed or was not run
                counts.append(TableCount(ref, None))
                continue
            query = sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(ref.schema), sql.Identifier(ref.table))
            counts.append(TableCount(ref, conn.execute(query).fetchone()[0]))
    return counts


def _runs_table(results: list[DagRunResult]) -> Table:
    table = Table(title="What ran")
    for column in ("pipeline", "state", "tasks", "seconds"):
        table.add_column(column)
    for r in results:
        tasks = ", ".join(f"{task}={state}" for task, state in r.task_states.items())
        colour = "green" if r.succeeded else "red"
        table.add_row(r.dag_id, f"[{colour}]{r.state}[/]", tasks, f"{r.duration_s:.1f}")
    return table


def _tables_table(counts: list[TableCount]) -> Table:
    table = Table(title="Tables written")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for c in counts:
        table.add_row(f"{c.table.conn_id}:{c.table.qualified}", "missing" if c.rows is None else str(c.rows))
    return table
