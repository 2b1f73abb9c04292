"""Run SQL on the warehouse and report, per written table, the rows the statements changed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator

from airflow_osds.assets import DEFAULT_SCHEMA, TableRef

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["WarehouseSqlOperator"]


def _rowcount(cursor: Any) -> int:
    return int(cursor.rowcount)


class WarehouseSqlOperator(SQLExecuteQueryOperator):
    """
    Execute SQL (inline or a ``.sql`` file) on a warehouse connection in one transaction.

    Each outlet Asset that names a table the SQL writes gets ``rows_affected`` (the sum of
    the row counts PostgreSQL reported for the statements writing it) in its event extra,
    so downstream pipelines can see how much changed.

    Statements are split on top-level semicolons unless ``split_statements=False``.

    :param conn_id: warehouse connection id.
    :param sql: SQL text or a path ending in ``.sql`` (templated).
    """

    # No __init__ of its own: Airflow wraps every operator class's __init__ (defaults,
    # params), and a DAG with a thousand of these pays that wrapper per class level.

    def execute(self, context: Context) -> None:
        statements = self._statements()
        hook = self.get_db_hook()
        counts = hook.run(
            sql=statements,
            autocommit=self.autocommit,
            parameters=self.parameters,
            handler=_rowcount,
            return_last=False,
        )
        rows = rows_affected_by_table(statements, counts or [], conn_id=self.conn_id)
        for outlet in self.outlets:
            uri = getattr(outlet, "uri", None)
            if uri in rows:
                context["outlet_events"][outlet].extra = {"rows_affected": rows[uri]}
        self.log.info("Rows affected per table: %s", rows or "none")

    def _statements(self) -> list[str]:
        from airflow_osds.sql import split_statements

        if isinstance(self.sql, str):
            return split_statements(self.sql) if self.split_statements is not False else [self.sql]
        return list(self.sql)


def rows_affected_by_table(statements: Sequence[str], counts: Sequence[Any], *, conn_id: str) -> dict[str, int]:
    """Asset URI of each table written → total rows reported by the statements that write it."""
    from airflow_osds.sql import scan_sql

    totals: dict[str, int] = {}
    for statement, count in zip(statements, counts, strict=False):
        if not isinstance(count, int) or count < 0:
            continue  # DDL and utility statements report -1
        for name in scan_sql(statement).writes:
            uri = TableRef(conn_id, name.schema or DEFAULT_SCHEMA, name.table).uri
            totals[uri] = totals.get(uri, 0) + count
    return totals
