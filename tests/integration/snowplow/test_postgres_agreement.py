"""PostgreSQL takes every value tsv accepts, reads it as tsv.decode does, and refuses what matters.

The table is ``fields.events_table_sql()``: a generated corpus is COPYed into it and read back
column by column, and edge values of each kind are cast by the server and compared with
``decode``. Values tsv refuses that PostgreSQL would refuse too are checked to fail there; a few
more are refused by tsv on purpose (``NaN``, ``true``, ``24:00:00``, an offset that ``TIMESTAMP``
would silently drop), see the tsv module.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

import psycopg
import pytest

from airflow_osds.snowplow import tsv
from airflow_osds.snowplow.fields import ATOMIC_COLUMNS, ATOMIC_INDEXES, FIELD_INDEX, FIELDS, events_table_sql
from airflow_osds.snowplow.generate import generate

START = datetime(2026, 3, 1, tzinfo=timezone.utc)
UTC = timezone.utc


@pytest.fixture(scope="module")
def conn(warehouse: Any) -> Any:
    with warehouse.stack.postgres.connect(warehouse.dbname, autocommit=True) as connection:
        connection.execute("CREATE SCHEMA IF NOT EXISTS atomic")
        connection.execute(events_table_sql())
        yield connection


def _from_pg(kind: str, value: Any) -> Any:
    if value is None:
        return None
    if kind == "tstamp":
        return value.replace(tzinfo=UTC)
    if kind == "uuid":
        return str(value)
    return value


def _copy(conn: Any, lines: list[str]) -> None:
    columns = ", ".join(f'"{c}"' for c in ATOMIC_COLUMNS)
    with conn.cursor() as cur, cur.copy(f"COPY atomic.events ({columns}) FROM STDIN") as copy:
        for line in lines:
            parts = line.split("\t")
            copy.write_row([parts[i] or None for i in ATOMIC_INDEXES])


def test_a_generated_corpus_loads_and_reads_back_as_decoded(conn: Any) -> None:
    lines = list(generate(1500, seed=9, start=START))
    _copy(conn, lines)
    decoded = {e["event_id"]: e for e in (tsv.decode(line.split("\t")) for line in lines)}
    rows = conn.execute(f"SELECT {', '.join(chr(34) + c + chr(34) for c in ATOMIC_COLUMNS)} FROM atomic.events").fetchall()
    assert len(rows) == len(lines)
    kinds = [f.kind for f in FIELDS if f.kind != "json"]
    for row in rows:
        event = decoded[str(row[ATOMIC_COLUMNS.index("event_id")])]
        for name, kind, value in zip(ATOMIC_COLUMNS, kinds, row, strict=True):
            ours = event[name]
            theirs = _from_pg(kind, value)
            if kind == "text" and FIELDS[FIELD_INDEX[name]].sql_type.startswith("CHAR(") and theirs is not None:
                theirs = theirs.rstrip(" ")  # CHAR(n) pads
            assert theirs == ours, (name, ours, theirs)


ACCEPTED = {
    "timestamp": [
        "2026-03-01 10:20:30", "2026-03-01 10:20:30.1", "2026-03-01 10:20:30.123", "2026-03-01 10:20:30.123456",
        "2026-03-01 10:20:30.1234564", "2026-03-01 10:20:30.1234565", "2026-03-01 10:20:30.1234575",
        "2026-03-01 10:20:30.123456789", "2026-03-01 10:20:59.9999995", "2026-12-31 23:59:59.99999951",
        "2026-03-01T10:20:30.123Z", "2026-03-01T10:20:30", "2026-03-01 10:20:30Z", "2024-02-29 00:00:00",
        "0001-01-01 00:00:00", "9999-12-31 23:59:59.999999",
    ],
    "integer": ["0", "2147483647", "-2147483648", "+5", "007", "-0"],
    "double precision": [
        "1.5", "-0.0", "+1", ".5", "5.", "1e10", "1E-5", "-1.25e+2", "4.9e-324", "0e-400", "1e308",
        "0.1", "12.345678901234567890123", "2.2250738585072014e-308",
    ],
}
_KIND = {"timestamp": "tstamp", "integer": "int", "double precision": "float"}
_FIELD = {"timestamp": "etl_tstamp", "integer": "page_urlport", "double precision": "se_value"}


@pytest.mark.parametrize("sql_type, value", [(t, v) for t, values in ACCEPTED.items() for v in values])
def test_postgres_reads_accepted_values_as_decode_does(conn: Any, sql_type: str, value: str) -> None:
    parts = next(generate(1, start=START)).split("\t")
    parts[FIELD_INDEX[_FIELD[sql_type]]] = value
    assert tsv.invalid_values(parts) == []
    ours = tsv.decode(parts)[_FIELD[sql_type]]
    theirs = conn.execute(f"SELECT %s::text::{sql_type}", (value,)).fetchone()[0]
    assert _from_pg(_KIND[sql_type], theirs) == ours
    if sql_type == "double precision":  # the same double, bit for bit
        assert theirs.hex() == ours.hex()


REFUSED_BY_BOTH = {
    "timestamp": ["2026-02-29 00:00:00", "2026-04-31 00:00:00", "2026-13-01 00:00:00", "2026-03-01 10:00:61", "not a time"],
    "integer": ["2147483648", "-2147483649", "1.0", "one"],
    "double precision": ["1e400", "-1e309", "1e-400", "1,5", "abc"],
    "character(2)": ["NLD"],
    "character varying(16)": ["x" * 17],
    "uuid": ["not-a-uuid", "3f2504e0-4f89-41d3-9a0c-0305e82c330"],
}


@pytest.mark.parametrize("sql_type, value", [(t, v) for t, values in REFUSED_BY_BOTH.items() for v in values])
def test_values_tsv_refuses_postgres_refuses_too(conn: Any, sql_type: str, value: str) -> None:
    field = {"character(2)": "geo_country", "character varying(16)": "page_urlscheme", "uuid": "event_id"}.get(sql_type) or _FIELD[sql_type]  # fmt: skip
    parts = next(generate(1, start=START)).split("\t")
    parts[FIELD_INDEX[field]] = value
    assert [e["key"] for e in tsv.invalid_values(parts)] == [field]
    table = "probe_" + "".join(c for c in sql_type if c.isalnum())
    conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {table} (v {sql_type})")
    with pytest.raises(psycopg.errors.DataError):  # through COPY's own input functions
        with conn.cursor() as cur, cur.copy(f"COPY {table} (v) FROM STDIN") as copy:
            copy.write_row([value])


def test_nul_is_refused_by_postgres_text(conn: Any) -> None:
    with pytest.raises(psycopg.DataError):
        conn.execute("SELECT %s::text", ("a\x00b",))


def test_a_bad_line_would_fail_the_whole_copy(conn: Any) -> None:
    # Why invalid_values exists: one value PostgreSQL refuses aborts the batch it is in.
    good = list(generate(20, seed=99, start=START))
    parts = good[10].split("\t")
    parts[FIELD_INDEX["geo_country"]] = "NLD"
    parts[FIELD_INDEX["event_id"]] = str(uuid.uuid4())
    before = conn.execute("SELECT count(*) FROM atomic.events").fetchone()[0]
    with pytest.raises(psycopg.errors.StringDataRightTruncation):
        with conn.transaction():
            _copy(conn, [*good[:10], "\t".join(parts), *good[11:]])
    assert conn.execute("SELECT count(*) FROM atomic.events").fetchone()[0] == before
