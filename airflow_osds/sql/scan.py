"""Which tables a SQL script reads and writes, found offline with sqlglot's PostgreSQL parser.

DAG parsing must stay fast and offline, so no database is asked. The scanner is conservative:
a statement it cannot read is reported in :attr:`SqlIO.unparsed` rather than guessed from,
a table named by a Jinja expression is left out, and a step can always state
``reads:``/``writes:`` explicitly.

sqlglot is imported on the first call, not with this module: operator modules import it, and
``import sqlglot`` costs more than the rest of their import.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from airflow_osds.sql import _jinja
from airflow_osds.sql._keywords import QUOTED_KEYWORDS

__all__ = ["SqlIO", "TableName", "scan_sql", "split_statements"]

# quote_ident() leaves a name bare only if it is lower-case ASCII letters, digits and "_".
_BARE = re.compile(r"[a-z_][a-z0-9_]*")


@dataclass(frozen=True)
class TableName:
    """A table named in SQL, normalised the PostgreSQL way.

    Unquoted identifiers are lower-cased and quoted ones (``"Orders"``) keep their exact case,
    so ``Analytics.Daily`` is ``TableName("analytics", "daily")`` and ``"Raw"."Orders"`` is
    ``TableName("Raw", "Orders")``. A catalog (``db.schema.table``) is dropped.

    :param schema: the schema, or None when the SQL did not qualify the name.
    :param table: the table (or view) name.
    """

    schema: str | None
    table: str

    def __str__(self) -> str:
        """``schema.table`` or ``table``, quoting the parts that need it (``public."Orders"``)."""
        parts = (self.table,) if self.schema is None else (self.schema, self.table)
        return ".".join(_quote(part) for part in parts)


@dataclass(frozen=True)
class SqlIO:
    """The tables a script reads and writes.

    :param reads: tables read, CTE names, set-returning functions and temporary tables excluded.
    :param writes: tables written (inserted, updated, deleted, merged, truncated, created,
        refreshed or loaded by ``COPY … FROM``), temporary tables excluded.
    :param unparsed: the text of each statement whose tables could not be read: sqlglot could
        not parse it, parsed it only as an opaque command (``DO $$ … $$``, ``CALL``,
        ``EXPLAIN``), or parsed it into a kind of statement the scanner does not know. The
        caller should warn, since those tables are missing from ``reads`` and ``writes``.
    """

    reads: frozenset[TableName]
    writes: frozenset[TableName]
    unparsed: tuple[str, ...]


def scan_sql(sql: str) -> SqlIO:
    """Tables read and written by a script of one or more statements (a Jinja template or not).

    A temporary table created by the script (``CREATE TEMP TABLE x AS …``,
    ``SELECT … INTO TEMP x``) is left out of the statements that follow it.

    :param sql: the script; ``{{ … }}``, ``{% … %}`` and ``{# … #}`` markup is allowed.
    """
    # sqlglot loads here, on first use (see the module docstring).
    from sqlglot.errors import TokenError

    from airflow_osds.sql import _statements, _tables

    masked = _jinja.mask(sql)
    try:
        statements = _statements.statements(masked.text)
    except TokenError:  # an unterminated quote or comment: no statement boundary is certain
        return SqlIO(reads=frozenset(), writes=frozenset(), unparsed=(sql.strip(),))
    reads: set[TableName] = set()
    writes: set[TableName] = set()
    unparsed: list[str] = []
    temporary: set[str] = set()
    for statement in statements:
        io = _tables.scan_statement(statement, placeholder=masked.prefix)
        if io is None:
            unparsed.append(masked.unmask(statement.text))
            continue
        # A temporary table hides a table of the same name only after it is created.
        reads.update(t for t in io.reads if not _is_temporary(t, temporary))
        writes.update(t for t in io.writes if not _is_temporary(t, temporary))
        temporary |= io.temporary
    return SqlIO(reads=frozenset(reads), writes=frozenset(writes), unparsed=tuple(unparsed))


def split_statements(sql: str) -> list[str]:
    """Split a script on its top-level ``;``.

    Semicolons inside strings, quoted identifiers, comments, dollar-quoted bodies and Jinja
    markup do not split. Statements are trimmed; empty and comment-only ones are dropped, and
    a comment before a statement stays with it. A script sqlglot cannot tokenize (an
    unterminated quote) is returned whole, for the database to report.

    :param sql: the script.
    """
    # sqlglot loads here, on first use (see the module docstring).
    from sqlglot.errors import TokenError

    from airflow_osds.sql import _statements

    masked = _jinja.mask(sql)
    try:
        statements = _statements.statements(masked.text)
    except TokenError:
        return [sql.strip()] if sql.strip() else []
    return [masked.unmask(statement.text) for statement in statements]


def _quote(part: str) -> str:
    if _BARE.fullmatch(part) and part not in QUOTED_KEYWORDS:
        return part
    return '"' + part.replace('"', '""') + '"'


def _is_temporary(table: TableName, temporary: set[str]) -> bool:
    return table.table in temporary and table.schema in (None, "pg_temp")
