"""``osds demo``: run the project's pipelines end to end on the embedded PostgreSQL."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from airflow_osds.assets import TableRef, table_ref_from_uri
from airflow_osds.localrun import CRM_SOURCE_DB, DagRunResult, LocalStack, apply_environ, migrate_metadata_db, run_dag

__all__ = ["run_demo", "seed_crm_source"]


@dataclass(frozen=True)
class TableCount:
    table: TableRef
    rows: int | None


def run_demo(project_dir: Path, *, keep_running: bool = False, verbose: bool = False) -> int:
    """Run every pipeline of ``project_dir``; return the process exit code."""
    console = Console()
    # dag.test() talks to an in-process execution API through starlette's TestClient,
    # which warns about its own httpx use: noise for a demo user.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    stack = LocalStack(state_dir=project_dir / ".osds", dags_folder=project_dir / "dags")
    console.print(f"[bold]osds demo[/]: embedded PostgreSQL in {stack.postgres.state_dir}")
    stack.start()
    try:
        seed_crm_source(stack, project_dir / "include" / "data" / "crm" / "crm_source.sql")
        log_level = "INFO" if verbose else "WARNING"
        apply_environ(stack.environ(extra={"AIRFLOW__LOGGING__LOGGING_LEVEL": log_level}))
        migrate_metadata_db()
        return _run_pipelines(console, stack)
    finally:
        if keep_running:
            console.print(f"PostgreSQL keeps running: {stack.postgres.uri(stack.warehouse_db)}")
        else:
            stack.postgres.stop()


def seed_crm_source(stack: LocalStack, script: Path) -> None:
    """The demo's CRM database, which the web_analytics pipeline replicates into raw_crm (recreated each run)."""
    stack.postgres.create_database(CRM_SOURCE_DB)
    with stack.postgres.connect(CRM_SOURCE_DB, autocommit=True) as conn:
        conn.execute(script.read_text())


def _run_pipelines(console: Console, stack: LocalStack) -> int:
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
        return 1
    order = _run_order(stack.dags_folder.parent / "include" / "pipelines", sorted(bag.dags))
    results: list[DagRunResult] = []
    for dag_id, upstream in order:
        why = f" (its data comes from {', '.join(sorted(upstream))})" if upstream else ""
        console.print(f"running pipeline [bold]{dag_id}[/]{why} …")
        results.append(run_dag(bag.dags[dag_id]))
    written = sorted({ref for dag in bag.dags.values() for ref in _written_tables(dag)})
    console.print(_runs_table(results))
    console.print(_tables_table(_count_rows(stack, written)))
    failed = [r.dag_id for r in results if not r.succeeded]
    if failed:
        console.print(f"[red]failed pipelines:[/] {', '.join(failed)}")
        return 1
    console.print(f"[green]{len(results)} pipeline(s) succeeded[/]")
    return 0


def _run_order(pipelines_dir: Path, dag_ids: list[str]) -> list[tuple[str, set[str]]]:
    """Producers before the pipelines scheduled on their data (what the scheduler would do)."""
    import graphlib

    from airflow_osds.factory.project import load_project

    project = load_project(pipelines_dir)
    upstream = {d: project.upstream_pipelines(project.plans[d]) if d in project.plans else set() for d in dag_ids}
    ordered = graphlib.TopologicalSorter({d: deps & set(dag_ids) for d, deps in upstream.items()}).static_order()
    return [(d, upstream[d]) for d in ordered]


def _written_tables(dag: object) -> list[TableRef]:
    refs = []
    for task in dag.tasks:  # type: ignore[attr-defined]
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
        table.add_row(f"{c.table.conn_id}:{c.table.qualified}", "?" if c.rows is None else str(c.rows))
    return table
