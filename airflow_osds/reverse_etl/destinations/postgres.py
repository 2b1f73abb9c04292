"""A PostgreSQL table as a destination (no Airflow imports; psycopg 3 is imported when a batch is sent).

The table (``schema.table``, or ``table`` on the search path) must exist and have a unique constraint or
unique index on exactly ``key_column`` (not partial, not deferrable: what ``ON CONFLICT`` can arbitrate on).
That, and the table's columns, are checked once, on the first batch; what is missing is a
:class:`DestinationError` naming it.

One batch is one transaction:

* **create / update** → ``INSERT INTO t (key_column, <fields>) VALUES (…) ON CONFLICT (key_column) DO UPDATE
  SET <fields> = EXCLUDED.<fields>``, one statement per record (pipelined). ``key_column`` gets
  ``fields[key_column]`` when the record has that field, else the change's key (as text: PostgreSQL converts
  it to the column's type). Every other field is the column of the same name (quoted, so case and spaces are
  kept); a field the table has no column for fails the batch with a :class:`DestinationError` naming it,
  since every record would fail. Values go as they come from JSON, except that a json/jsonb column gets
  every value as JSON, and a dict anywhere else is sent as jsonb (so the column's type refuses it, per
  record). Groups are not written: map them to a column with the sync's ``group_field`` (a list fits an
  array or a jsonb column). Counted ``created`` / ``updated``;
* **delete** → ``DELETE … WHERE key_column = ANY(…)`` by the same value; counted ``deleted``, and ``absent``
  for keys the table did not have (acknowledged: gone is what a delete wants).

A record PostgreSQL refuses (a value that does not fit its column's type, a NOT NULL, CHECK, foreign-key or
other unique violation, an exception raised by a trigger) fails its whole transaction, so then the batch is
rolled back and applied again row by row, each row in a savepoint: only the bad rows are rejected, with the
database's message and detail, and the others are committed together.

Whole-batch failures (nothing of the batch is committed, so a retry is exact):

* :class:`RetryableError`: the connection lost or refused, the server shutting down, a serialization failure
  or deadlock, a lock or statement timeout (psycopg's ``OperationalError``); the next batch reconnects;
* :class:`DestinationError`: a missing table or column, a missing privilege, an unknown database or role,
  refused credentials, any other SQL error.

The password of a conninfo string is never in a message.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_osds.reverse_etl.destinations._http import scrub
from airflow_osds.reverse_etl.destinations.base import (
    BatchResult,
    Change,
    DestinationError,
    Op,
    Rejection,
    RetryableError,
)

if TYPE_CHECKING:
    import psycopg

__all__ = ["PostgresDestination"]

#: SQLSTATEs that blame one record: class 22 (data exception), class 23 (integrity constraint violation),
#: datatype mismatch and cannot-coerce (a JSON value of the wrong kind for its column), and P0001, what a
#: validating trigger's RAISE EXCEPTION gives.
_RECORD_STATES = ("22", "23", "42804", "42846", "P0001")

# libpq reports a failed connection without a SQLSTATE, so the server's FATAL message is all there is to tell
# a configuration error (no retry helps) from an unreachable or overloaded server (a retry may).
_FATAL_CONNECT = re.compile(
    r"password authentication failed|authentication failed|role \".*\" does not exist|"
    r"database \".*\" does not exist|no pg_hba\.conf entry|permission denied|password is required",
    re.IGNORECASE,
)


def _is_record_error(exc: BaseException) -> bool:
    state = getattr(exc, "sqlstate", None) or ""
    return any(state.startswith(prefix) for prefix in _RECORD_STATES)


@dataclass(frozen=True)
class _Column:
    type: str  # format_type(): the SQL type as PostgreSQL writes it, safe to splice into a cast
    json: str | None  # "json" / "jsonb" for those columns


class PostgresDestination:
    """Upserts into, and deletes from, one PostgreSQL table (see the module docstring).

    :param connect: a function returning a new psycopg 3 connection, or a conninfo string / URI.
    :param table: ``schema.table`` or ``table``.
    :param key_column: the column records are matched by; it needs a unique constraint of its own.
    :param batch_size: records per transaction.
    :param object_name: what the sync's outputs call it (default ``postgres/<table>``).
    """

    operations: frozenset[Op] = frozenset({"create", "update", "delete"})
    rate_limit: float = 0.0

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]] | str, table: str, key_column: str, *,
                 batch_size: int = 1000, object_name: str | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        parts = tuple(p.strip() for p in table.split("."))
        if not 1 <= len(parts) <= 2 or not all(parts):
            raise ValueError(f"table {table!r}: expected 'schema.table' or 'table'")
        if not key_column:
            raise ValueError("key_column is empty")
        self.table = table
        self.key_column = key_column
        self.batch_size = batch_size
        self.object_name = object_name or f"postgres/{table}"
        self._table_parts = parts
        self._connect = connect
        self._secrets = _conninfo_secrets(connect) if isinstance(connect, str) else ()
        self._conn: psycopg.Connection[Any] | None = None
        self._columns: dict[str, _Column] | None = None  # set by the first successful check

    def send(self, batch: Sequence[Change]) -> BatchResult:
        import psycopg

        try:
            conn = self._connection()
            columns = self._check(conn)
            try:
                return self._apply(conn, columns, batch, row_by_row=False)
            except psycopg.Error as exc:
                if not _is_record_error(exc):
                    raise
            return self._apply(conn, columns, batch, row_by_row=True)
        except psycopg.Error as exc:
            raise self._translate(exc) from None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- connection and the table check -------------------------------------------------------
    def _connection(self) -> psycopg.Connection[Any]:
        import psycopg

        if self._conn is not None and not self._conn.closed:
            return self._conn
        self._conn = None
        try:
            conn = psycopg.connect(self._connect) if isinstance(self._connect, str) else self._connect()
        except psycopg.OperationalError as exc:
            message = f"{self.object_name}: cannot connect: {self._scrub(str(exc))}"
            if _FATAL_CONNECT.search(str(exc)):
                raise DestinationError(message) from None
            raise RetryableError(message) from None
        if not conn.autocommit:
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.close()
                raise DestinationError(f"{self.object_name}: the connection given is inside a transaction; "
                                       "connect must return a new connection")
            # Each batch is its own transaction (conn.transaction()); autocommit keeps them from nesting.
            conn.autocommit = True
        self._conn = conn
        return conn

    def _check(self, conn: psycopg.Connection[Any]) -> dict[str, _Column]:
        if self._columns is not None:
            return self._columns
        from psycopg import sql

        name = sql.Identifier(*self._table_parts).as_string(conn)
        row = conn.execute("SELECT c.oid, c.relkind FROM pg_class c WHERE c.oid = to_regclass(%s)", (name,)).fetchone()
        if row is None:
            raise DestinationError(f"{self.object_name}: table {self.table} does not exist (or this role cannot see "
                                   f"it): create it with a unique constraint on {self.key_column}")
        oid, relkind = row
        if relkind not in ("r", "p"):
            raise DestinationError(f"{self.object_name}: {self.table} is not a table (relkind {relkind!r}); "
                                   "upserts need a table")
        rows = conn.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), t.typname FROM pg_attribute a "
            "JOIN pg_type t ON t.oid = a.atttypid WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped",
            (oid,)).fetchall()
        columns = {n: _Column(typ, typname if typname in ("json", "jsonb") else None) for n, typ, typname in rows}
        if self.key_column not in columns:
            raise DestinationError(f"{self.object_name}: table {self.table} has no column {self.key_column!r} "
                                   f"(the key column); it has {', '.join(sorted(columns))}")
        unique = conn.execute(
            "SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
            "WHERE i.indrelid = %s AND i.indisunique AND i.indimmediate AND i.indpred IS NULL "
            "AND i.indexprs IS NULL AND i.indnkeyatts = 1 AND a.attname = %s",
            (oid, self.key_column)).fetchone()
        if unique is None:
            raise DestinationError(
                f"{self.object_name}: table {self.table} has no unique constraint on {self.key_column!r} alone (needed "
                f"to upsert by it): ALTER TABLE {name} ADD UNIQUE ({sql.Identifier(self.key_column).as_string(conn)})")
        self._columns = columns
        return columns

    # -- one batch ----------------------------------------------------------------------------
    def _apply(self, conn: psycopg.Connection[Any], columns: dict[str, _Column], batch: Sequence[Change], *,
               row_by_row: bool) -> BatchResult:
        import psycopg

        upserts = [c for c in batch if c.op != "delete"]
        deletes = [c for c in batch if c.op == "delete"]
        self._check_fields(upserts, columns)
        result = BatchResult()
        with conn.transaction():
            if not row_by_row:
                self._upsert(conn, columns, upserts, result)
                self._delete(conn, columns, deletes, result)
                return result
            for change in upserts + deletes:
                try:
                    with conn.transaction():  # a savepoint: a refused row leaves the others
                        one = BatchResult()
                        if change.op == "delete":
                            self._delete(conn, columns, [change], one)
                        else:
                            self._upsert(conn, columns, [change], one)
                except psycopg.Error as exc:
                    if not _is_record_error(exc):
                        raise
                    result.rejected.append(Rejection(change.key, self._reason(exc)))
                    continue
                result.acknowledged.extend(one.acknowledged)
                for name, n in one.counts.items():
                    result.counts[name] = result.counts.get(name, 0) + n
        return result

    def _check_fields(self, upserts: Sequence[Change], columns: dict[str, _Column]) -> None:
        unknown = sorted({f for c in upserts for f in c.fields if f not in columns})
        if unknown:
            raise DestinationError(f"{self.object_name}: table {self.table} has no column {', '.join(map(repr, unknown))}: "
                                   "add the column(s) or change the sync's field mapping")

    def _key_value(self, change: Change) -> Any:
        value = change.fields.get(self.key_column)
        return change.key if value is None else value

    def _upsert(self, conn: psycopg.Connection[Any], columns: dict[str, _Column], changes: Sequence[Change],
                result: BatchResult) -> None:
        from psycopg import sql

        by_shape: dict[tuple[str, ...], list[Change]] = {}
        for change in changes:
            names = (self.key_column, *(f for f in change.fields if f != self.key_column))
            by_shape.setdefault(names, []).append(change)
        for names, group in by_shape.items():
            idents = [sql.Identifier(n) for n in names]
            updated = idents[1:] or idents[:1]  # a record of only its key still needs a SET to return its row
            statement = sql.SQL(
                "INSERT INTO {table} ({cols}) VALUES ({values}) ON CONFLICT ({key}) DO UPDATE SET {sets} "
                "RETURNING (xmax = 0)"  # xmax is 0 on a freshly inserted row version
            ).format(table=sql.Identifier(*self._table_parts), cols=sql.SQL(", ").join(idents),
                     values=sql.SQL(", ").join(sql.Placeholder() * len(names)), key=idents[0],
                     sets=sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(i) for i in updated))
            params = [[self._key_value(c), *(_adapt(c.fields[n], columns[n]) for n in names[1:])] for c in group]
            with conn.cursor() as cur:
                cur.executemany(statement, params, returning=True)
                while True:
                    row = cur.fetchone()
                    outcome = "created" if row and row[0] else "updated"
                    result.counts[outcome] = result.counts.get(outcome, 0) + 1
                    if not cur.nextset():
                        break
            result.acknowledged.extend(c.key for c in group)

    def _delete(self, conn: psycopg.Connection[Any], columns: dict[str, _Column], changes: Sequence[Change],
                result: BatchResult) -> None:
        if not changes:
            return
        from psycopg import sql

        key = columns[self.key_column]
        statement = sql.SQL("DELETE FROM {table} WHERE {key} = ANY(CAST(%s AS text[])::{type}[])").format(
            table=sql.Identifier(*self._table_parts), key=sql.Identifier(self.key_column), type=sql.SQL(key.type))
        deleted = conn.execute(statement, ([str(self._key_value(c)) for c in changes],)).rowcount
        result.acknowledged.extend(c.key for c in changes)
        result.counts["deleted"] = result.counts.get("deleted", 0) + deleted
        if len(changes) > deleted:
            result.counts["absent"] = result.counts.get("absent", 0) + len(changes) - deleted

    # -- errors -------------------------------------------------------------------------------
    def _scrub(self, text: str) -> str:
        return scrub(text, self._secrets)

    def _reason(self, exc: BaseException) -> str:
        diag = getattr(exc, "diag", None)
        primary = getattr(diag, "message_primary", None) or str(exc).splitlines()[0]
        detail = getattr(diag, "message_detail", None)
        text = f"{primary} ({detail})" if detail else primary
        return self._scrub(f"{getattr(exc, 'sqlstate', None) or 'error'}: {text}")[:500]

    def _translate(self, exc: BaseException) -> DestinationError:
        import psycopg
        from psycopg import errors

        if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
            self.close()
            return RetryableError(f"{self.object_name}: the batch was not committed: {self._reason(exc)}")
        if isinstance(exc, (errors.UndefinedTable, errors.UndefinedColumn)):
            self._columns = None  # the table changed under us: check it again next time
            return DestinationError(f"{self.object_name}: {self._reason(exc)} (table {self.table}; was it changed "
                                    "during the sync?)")
        if isinstance(exc, errors.InsufficientPrivilege):
            return DestinationError(f"{self.object_name}: {self._reason(exc)}: grant this role SELECT, INSERT, "
                                    f"UPDATE and DELETE on {self.table}")
        return DestinationError(f"{self.object_name}: {self._reason(exc)}")


def _adapt(value: Any, column: _Column) -> Any:
    from psycopg.types.json import Json, Jsonb

    if column.json is not None:
        if value is None:
            return None  # SQL NULL, not the JSON null
        return Jsonb(value) if column.json == "jsonb" else Json(value)
    if isinstance(value, dict):
        return Jsonb(value)
    return value


def _conninfo_secrets(conninfo: str) -> tuple[str, ...]:
    from psycopg.conninfo import conninfo_to_dict

    try:
        password = conninfo_to_dict(conninfo).get("password")
    except Exception:  # an unreadable conninfo: psycopg.connect will say so; hide the whole string meanwhile
        return (conninfo,)
    return (str(password), conninfo) if password else ()
