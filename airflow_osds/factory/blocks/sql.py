"""``sql``: run SQL on the warehouse (inline or from a file), reads/writes derived from the SQL."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from airflow_osds.assets import DEFAULT_SCHEMA, TableRef
from airflow_osds.factory.blocks import BlockType, DataIO, FileField, ProviderModules, StepContext
from airflow_osds.factory.compiled import TaskNode
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


def sql_text(block: SqlBlock, ctx: StepContext) -> str:
    return block.query if block.query is not None else ctx.read_file(block.file or "")


def data(block: SqlBlock, ctx: StepContext) -> DataIO:
    return sql_data(sql_text(block, ctx), ctx.warehouse)


def sql_data(sql: str, warehouse: str, *, reads_only: bool = False) -> DataIO:
    """The tables a SQL script reads and writes on ``warehouse``; statements the scanner could
    not read are notes (the step's warnings), never guessed from."""
    from airflow_osds.sql import scan_sql

    io = scan_sql(sql)
    notes = ()
    if io.unparsed:
        shown = "; ".join(f"`{_short(s)}`" for s in io.unparsed[:3])
        notes = (f"could not read {len(io.unparsed)} SQL statement(s) to find their tables ({shown}); "
                 "list them in `reads:`/`writes:` if they touch tables",)
    return DataIO(
        reads=frozenset(_ref(n, warehouse) for n in io.reads),
        writes=frozenset() if reads_only else frozenset(_ref(n, warehouse) for n in io.writes),
        notes=notes,
    )


def _ref(name: Any, warehouse: str) -> TableRef:
    return TableRef(warehouse, name.schema or DEFAULT_SCHEMA, name.table)


def _short(statement: str) -> str:
    flat = " ".join(statement.split())
    return flat if len(flat) <= 60 else flat[:57] + "…"


def compile_task(block: SqlBlock, ctx: StepContext) -> TaskNode:
    kwargs: dict[str, Any] = {"conn_id": ctx.warehouse, "sql": block.file or block.query}
    if block.parameters is not None:
        kwargs["parameters"] = block.parameters
    if block.autocommit:
        kwargs["autocommit"] = True
    return ctx.task("airflow_osds.operators.sql.WarehouseSqlOperator", kwargs)


def _expand_shorthand(value: Any) -> Any:
    # `sql: "SELECT …"` is the common case; it means `sql: {query: "SELECT …"}`.
    return {"query": value} if isinstance(value, str) else value


BLOCK = BlockType(
    name="sql",
    model=SqlBlock,
    description="Run SQL on the warehouse: a string (the query) or a mapping.",
    compile=compile_task,
    data=data,
    file_fields=(FileField("file", text=True),),
    warehouse_field="warehouse",
    shorthand_type=str,
    expand_shorthand=_expand_shorthand,
    provides=ProviderModules(
        integration="Warehouse SQL", operators=("airflow_osds.operators.sql",),
        external_doc_url="https://www.postgresql.org/docs/",
    ),
)
