"""``superset``: warm the Superset charts over the tables this pipeline just rebuilt."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from airflow_osds.assets import DashboardRef, TableRef
from airflow_osds.factory.blocks import BlockType, DataIO, ProviderModules, StepContext
from airflow_osds.factory.compiled import TaskNode
from airflow_osds.factory.types import Strict


class SupersetBlock(Strict):
    """Force-refresh the cached data of Apache Superset charts, `concurrency` at a time, with a result per
    chart; a chart whose query fails fails the step (or warns). By default it refreshes every chart whose
    dataset reads a table the pipeline's other steps write, and runs after them.
    """

    connection: str = Field("superset_default", description="The `superset` Airflow connection.")
    dashboards: list[int | str] = Field(default_factory=list, description="Dashboards (id, slug or title): all "
                                        "their charts, in the dashboard's context. Each is an outlet Asset.",
                                        examples=[["web-analytics"]])
    charts: list[int | str] = Field(default_factory=list, description="Charts by id or name.")
    tables: list[str] | None = Field(None, description="`schema.table` names: the charts on datasets over them. "
                                     "Default: the tables this pipeline's other steps write, unless `dashboards` "
                                     "or `charts` are given (the step still runs after those steps).",
                                     examples=[["marts.sessions"]])
    database: str | None = Field(None, description="Only datasets of this Superset database (its name in Superset).")
    concurrency: int = Field(8, ge=1, le=64, description="Warm-ups in flight at once.")
    on_chart_error: Literal["fail", "warn"] = Field("fail", description="What a broken chart does to the step.")
    refresh_columns: bool = Field(False, description="First re-read the datasets' columns from the warehouse "
                                  "(when dbt added or dropped columns).")


def data(block: SupersetBlock, ctx: StepContext) -> DataIO:
    writes = frozenset(DashboardRef(block.connection, str(d)) for d in block.dashboards)
    if block.tables is not None:
        return DataIO(reads=frozenset(block.tables), writes=writes)
    return DataIO(writes=writes, reads_pipeline_tables=True)


def compile_task(block: SupersetBlock, ctx: StepContext) -> TaskNode:
    if block.tables is not None:
        tables = list(block.tables)
    elif block.dashboards or block.charts:
        tables = []
    else:
        tables = sorted(f"{r.schema}.{r.table}" for r in ctx.reads if isinstance(r, TableRef))
        if not tables:
            raise ValueError("`superset` refreshes the charts over the tables this pipeline's other steps write, and "
                             "none writes one: name `tables`, `dashboards` or `charts`")
    kwargs: dict[str, Any] = {"superset_conn_id": block.connection, "concurrency": block.concurrency,
                              "on_chart_error": block.on_chart_error}
    for name, value in (("dashboards", block.dashboards), ("charts", block.charts), ("tables", tables),
                        ("database", block.database), ("refresh_columns", block.refresh_columns)):
        if value:
            kwargs[name] = value
    return ctx.task("airflow_osds.operators.superset.SupersetRefreshOperator", kwargs)


BLOCK = BlockType(
    name="superset",
    model=SupersetBlock,
    description="Warm the Superset charts over the tables the pipeline rebuilt; fail on broken charts.",
    compile=compile_task,
    data=data,
    provides=ProviderModules(
        integration="Apache Superset",
        operators=("airflow_osds.operators.superset",),
        hooks=("airflow_osds.hooks.superset",),
        external_doc_url="https://superset.apache.org/docs/api",
    ),
)
