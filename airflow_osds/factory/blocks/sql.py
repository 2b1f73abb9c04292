"""``sql``: run SQL on the warehouse (inline or from a file), reads/writes derived from the SQL."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from airflow_osds.factory.blocks import BlockType, BuildEnv, DataIO, StepEnv
from airflow_osds.factory.sqlscan import scan_sql
from airflow_osds.factory.types import Strict


class SqlBlock(Strict):
    """Run SQL on the warehouse: inline ``query`` or a ``file`` relative to the pipeline file.

    The SQL is a Jinja template rendered at run time (``{{ ds }}``, ``{{ params.x }}``).
    Statements run in one transaction unless ``autocommit`` is set.
    """

    query: str | None = Field(None, description="SQL to run (templated).", examples=["SELECT 1"])
    file: str | None = Field(
        None, description="Path of a .sql file, relative to the pipeline file.", examples=["sql/orders_daily.sql"]
    )
    warehouse: str | None = Field(None, description="Connection id; overrides defaults.warehouse.")
    parameters: dict[str, Any] | None = Field(None, description="Bind parameters (`%(name)s` in the SQL).")
    autocommit: bool = Field(False, description="Commit after each statement instead of once at the end.")

    @model_validator(mode="after")
    def _exactly_one_source(self) -> SqlBlock:
        if (self.query is None) == (self.file is None):
            raise ValueError("give exactly one of `query` or `file`")
        if self.file is not None and not self.file.endswith(".sql"):
            raise ValueError(f"`file` must name a .sql file, got {self.file!r}")
        return self


def sql_text(block: SqlBlock, env: StepEnv) -> str:
    return block.query if block.query is not None else env.read_file(block.file or "")


def derive_io(block: SqlBlock, env: StepEnv) -> DataIO:
    io = scan_sql(sql_text(block, env))
    return DataIO(reads=frozenset(io.reads), writes=frozenset(io.writes))


def build(block: SqlBlock, env: BuildEnv) -> Any:
    from airflow_osds.operators.sql import WarehouseSqlOperator

    return WarehouseSqlOperator(
        task_id=env.task_id,
        conn_id=env.warehouse,
        sql=block.file or block.query,
        parameters=block.parameters,
        autocommit=block.autocommit,
        **env.task_kwargs,
    )


def _expand_shorthand(value: Any) -> Any:
    # `sql: "SELECT …"` is the common case; it means `sql: {query: "SELECT …"}`.
    return {"query": value} if isinstance(value, str) else value


BLOCK = BlockType(
    name="sql",
    model=SqlBlock,
    description="Run SQL on the warehouse: a string (the query) or a mapping.",
    build=build,
    derive_io=derive_io,
    shorthand_type=str,
    expand_shorthand=_expand_shorthand,
)
