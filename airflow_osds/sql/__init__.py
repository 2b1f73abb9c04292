"""Which tables a SQL script reads and writes, found offline with sqlglot (postgres dialect).

Importing this package does not import sqlglot: operator modules import it, and their
import time counts towards DAG parsing. sqlglot is loaded on the first scan.
"""

from __future__ import annotations

from airflow_osds.sql.scan import SqlIO, TableName, scan_sql, split_statements

__all__ = ["SqlIO", "TableName", "scan_sql", "split_statements"]
