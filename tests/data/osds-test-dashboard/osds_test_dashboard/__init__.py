"""A fake BI block, the way another package would add one to airflow-osds.

``dashboard: {connection: bi, key: sales, tables: [marts.orders]}`` reads the tables and
writes the dashboard (a typed data reference), so it runs after the steps that write those
tables, and a pipeline reading the dashboard can be scheduled on it.
"""

from __future__ import annotations

from pydantic import Field

from airflow_osds.assets import DashboardRef
from airflow_osds.factory.blocks import BlockType, DataIO, StepContext
from airflow_osds.factory.compiled import TaskNode
from airflow_osds.factory.types import Strict


class DashboardBlock(Strict):
    """Refresh a dashboard after the tables its charts read."""

    connection: str = Field(description="BI connection id.")
    key: str = Field(description="Dashboard slug.")
    tables: list[str] = Field(default_factory=list, description="Tables its charts read.")


def data(block: DashboardBlock, ctx: StepContext) -> DataIO:
    return DataIO(reads=frozenset(block.tables), writes=frozenset({DashboardRef(block.connection, block.key)}))


def compile_task(block: DashboardBlock, ctx: StepContext) -> TaskNode:
    return ctx.task("airflow.providers.standard.operators.empty.EmptyOperator", {})


BLOCK = BlockType(
    name="dashboard",
    model=DashboardBlock,
    description="Refresh a dashboard (a test block from another package).",
    compile=compile_task,
    data=data,
)
