"""``PipelineSpec`` → Airflow DAG: one task per step, dependencies from the data and `after:`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

from airflow_osds.assets import TableRef, parse_table, table_asset
from airflow_osds.factory.spec import PipelineSpec, StepSpec

if TYPE_CHECKING:
    from airflow.sdk import DAG, BaseOperator

__all__ = ["build_dag", "step_dependencies"]


def build_dag(spec: PipelineSpec, *, source: Path, default_warehouse: str) -> DAG:
    """Build the DAG of one pipeline; ``source`` is its YAML file (SQL files resolve next to it)."""
    from airflow.sdk import DAG

    default_args = {"owner": "osds", "retries": spec.defaults.retries}
    with DAG(
        dag_id=spec.pipeline,
        description=spec.description or None,
        schedule=spec.schedule,
        start_date=dt.datetime.combine(spec.start_date, dt.time(), tzinfo=dt.timezone.utc),
        catchup=spec.catchup,
        tags=["osds", *spec.tags],
        default_args=default_args,
        template_searchpath=[str(source.parent)],
        doc_md=f"Built by airflow-osds from `{source.name}`.",
    ) as dag:
        tasks = {
            step_id: _sql_task(step_id, step, warehouse=step.sql.warehouse or spec.defaults.warehouse or default_warehouse)
            for step_id, step in spec.steps.items()
        }
        for step_id, upstream_ids in step_dependencies(spec, default_warehouse=default_warehouse).items():
            for upstream_id in upstream_ids:
                tasks[upstream_id] >> tasks[step_id]
    dag.fileloc = str(source)
    return dag


def step_dependencies(spec: PipelineSpec, *, default_warehouse: str) -> dict[str, set[str]]:
    """Upstream step ids of each step: its `after:` plus every step writing a table it reads."""
    writers: dict[TableRef, set[str]] = {}
    for step_id, step in spec.steps.items():
        for ref in _tables(step.writes, step, spec, default_warehouse):
            writers.setdefault(ref, set()).add(step_id)
    upstream: dict[str, set[str]] = {}
    for step_id, step in spec.steps.items():
        deps = set(step.after)
        for ref in _tables(step.reads, step, spec, default_warehouse):
            deps |= writers.get(ref, set())
        upstream[step_id] = deps - {step_id}
    return upstream


def _tables(names: list[str], step: StepSpec, spec: PipelineSpec, default_warehouse: str) -> list[TableRef]:
    conn_id = step.sql.warehouse or spec.defaults.warehouse or default_warehouse
    return [parse_table(name, conn_id=conn_id) for name in names]


def _sql_task(step_id: str, step: StepSpec, *, warehouse: str) -> BaseOperator:
    from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator

    return SQLExecuteQueryOperator(
        task_id=step_id,
        conn_id=warehouse,
        sql=step.sql.file or step.sql.query,
        split_statements=True,
        return_last=False,
        show_return_value_in_logs=False,
        outlets=[table_asset(parse_table(name, conn_id=warehouse)) for name in step.writes],
        inlets=[table_asset(parse_table(name, conn_id=warehouse)) for name in step.reads],
    )
