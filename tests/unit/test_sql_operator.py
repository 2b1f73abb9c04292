from __future__ import annotations

from airflow_osds.operators.sql import rows_affected_by_table


def test_rows_are_attributed_to_the_tables_each_statement_writes() -> None:
    statements = [
        "CREATE TABLE IF NOT EXISTS s.t (a int)",
        "DELETE FROM s.t",
        "INSERT INTO s.t SELECT * FROM s.src",
        "INSERT INTO s.other SELECT 1",
        "SELECT count(*) FROM s.t",
    ]
    counts = [-1, 3, 5, 1, 1]
    assert rows_affected_by_table(statements, counts, conn_id="wh") == {
        "osds://wh/s/t": 8,
        "osds://wh/s/other": 1,
    }
