"""``osds-target-postgres`` as taps run it: Singer messages on stdin of the real process, the embedded
PostgreSQL behind it, state lines on stdout."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "name": {"type": ["null", "string"]},
        "amount": {"type": ["null", "number"]},
        "active": {"type": ["null", "boolean"]},
        "updated_at": {"type": ["null", "string"], "format": "date-time"},
        "tags": {"type": ["null", "array"], "items": {"type": "string"}},
    },
}


def _schema(stream: str = "crm-contacts", schema: dict[str, Any] | None = None, keys: list[str] | None = None) -> str:
    return json.dumps({"type": "SCHEMA", "stream": stream, "schema": schema or SCHEMA,
                       "key_properties": ["id"] if keys is None else keys})


def _record(record: dict[str, Any], stream: str = "crm-contacts", **extra: Any) -> str:
    return json.dumps({"type": "RECORD", "stream": stream, "record": record, **extra})


def _state(position: int) -> str:
    return json.dumps({"type": "STATE", "value": {"bookmarks": {"crm-contacts": {"position": position}}}})


@pytest.fixture
def target(warehouse: Any, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Run the target on some lines with a config; returns (exit code, stdout lines, stderr)."""
    stack = warehouse.stack
    with stack.postgres.connect(warehouse.dbname, autocommit=True) as conn:  # the module shares the database
        conn.execute("DROP SCHEMA IF EXISTS raw_crm CASCADE; DROP SCHEMA IF EXISTS raw_hard CASCADE")

    def run(lines: list[str], **config: Any) -> tuple[int, list[str], str]:
        path = tmp_path / "config.json"
        pg = stack.postgres.airflow_connection(warehouse.dbname)
        path.write_text(json.dumps({"host": pg["host"], "port": pg["port"], "user": pg["login"], "password": pg["password"],
                                    "database": warehouse.dbname, "default_target_schema": "raw_crm", **config}))
        proc = subprocess.run([sys.executable, "-m", "airflow_osds.singer.target_postgres", "--config", str(path)],
                              input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=120)
        return proc.returncode, proc.stdout.splitlines(), proc.stderr

    return run


def _rows(warehouse: Any, sql: str) -> list[tuple[Any, ...]]:
    with warehouse.stack.postgres.connect(warehouse.dbname) as conn:
        return conn.execute(sql).fetchall()


def test_records_are_upserted_by_key_typed_and_the_state_follows_the_commit(target: Any, warehouse: Any) -> None:
    code, out, err = target([
        _schema(),
        _record({"id": 1, "name": "Ada", "amount": 12.5, "active": True, "updated_at": "2026-11-01T10:00:00Z",
                 "tags": ["vip"]}, time_extracted="2026-11-02T00:00:00Z"),
        _record({"id": 2, "name": "tab\there \\ and\nnewline", "amount": 3}),
        _state(2),
        _record({"id": 1, "name": "Ada L.", "amount": None, "active": False}),  # the same key: last wins
        _state(3),
    ])
    assert code == 0, err
    assert out == ['{"bookmarks":{"crm-contacts":{"position":3}}}']
    assert _rows(warehouse, "SELECT id, name, amount, active, updated_at IS NULL, tags FROM raw_crm.contacts "
                            "ORDER BY id") == [
        (1, "Ada L.", None, False, True, None),
        (2, "tab\there \\ and\nnewline", 3, None, True, None),
    ]
    types = dict(_rows(warehouse, "SELECT column_name, data_type FROM information_schema.columns "
                                  "WHERE table_schema = 'raw_crm' AND table_name = 'contacts'"))
    assert {k: types[k] for k in ("id", "name", "amount", "active", "updated_at", "tags")} == {
        "id": "bigint", "name": "text", "amount": "numeric", "active": "boolean",
        "updated_at": "timestamp with time zone", "tags": "jsonb"}
    assert 'METRIC: {"type":"counter","metric":"record_count","value":2,"tags":{"stream":"crm-contacts"}}' in err


def test_invalid_records_go_to_the_rejects_table_with_the_reason(target: Any, warehouse: Any) -> None:
    code, out, err = target([
        _schema(),
        _record({"id": "not-an-int", "name": "x"}),
        _record({"id": 3, "name": "nul\u0000char"}),
        _record({"id": 4, "updated_at": "yesterday"}),
        _record({"id": 5, "name": "fine"}),
        _record({"id": 6}, stream="unknown"),
        _state(6),
    ])
    assert code == 0, err
    assert out == ['{"bookmarks":{"crm-contacts":{"position":6}}}']
    assert _rows(warehouse, "SELECT id FROM raw_crm.contacts") == [(5,)]
    rejects = _rows(warehouse, "SELECT stream, reason, record FROM raw_crm._osds_rejects ORDER BY received_at, reason")
    reasons = {json.loads(r[2]).get("id"): (r[0], r[1]) for r in rejects}
    assert reasons["not-an-int"][1].startswith("violates its schema: data.id must be integer")
    assert reasons[3][1] == "a value its column cannot hold: name: text with a NUL character (PostgreSQL text cannot hold it)"
    assert reasons[4][1].startswith("violates its schema: data.updated_at must be date-time")
    assert reasons[6] == ("unknown", "no SCHEMA message for this stream before its records")
    assert "4 record(s) rejected so far" in err


def test_a_grown_schema_adds_columns_and_a_stream_without_key_appends(target: Any, warehouse: Any) -> None:
    grown = {"type": "object", "properties": {**SCHEMA["properties"], "region": {"type": ["null", "string"]}}}
    code, _, err = target([
        _schema(),
        _record({"id": 1, "name": "a"}),
        _schema(schema=grown),
        _record({"id": 2, "name": "b", "region": "EU"}),
        _schema("events", {"type": "object", "properties": {"kind": {"type": "string"}}}, keys=[]),
        _record({"kind": "open"}, stream="events"),
        _record({"kind": "open"}, stream="events"),
    ])
    assert code == 0, err
    assert _rows(warehouse, "SELECT id, region FROM raw_crm.contacts ORDER BY id") == [(1, None), (2, "EU")]
    assert _rows(warehouse, "SELECT count(*) FROM raw_crm.events") == [(2,)]


def test_state_is_printed_only_for_what_was_committed_before_a_failure(target: Any, warehouse: Any) -> None:
    code, out, err = target([
        _schema(),
        _record({"id": 1}), _state(1), _record({"id": 2}),  # a full batch of 2: written, state 1 printed
        _state(2),
        _record({"id": 3}, time_extracted="not a time"),  # PostgreSQL refuses the next batch
        _record({"id": 4}), _state(4),
    ], batch_size_rows=2)
    assert code == 1
    assert "failed: InvalidDatetimeFormat" in err and "password" not in err
    assert out == ['{"bookmarks":{"crm-contacts":{"position":1}}}']
    assert _rows(warehouse, "SELECT id FROM raw_crm.contacts ORDER BY id") == [(1,), (2,)]


def test_activate_version_marks_or_deletes_the_older_rows(target: Any, warehouse: Any) -> None:
    lines = [_schema(), _record({"id": 1}, version=1), _record({"id": 2}, version=1),
             json.dumps({"type": "ACTIVATE_VERSION", "stream": "crm-contacts", "version": 1}),
             _record({"id": 1}, version=2),
             json.dumps({"type": "ACTIVATE_VERSION", "stream": "crm-contacts", "version": 2})]
    assert target(lines)[0] == 0
    assert _rows(warehouse, "SELECT id, _sdc_table_version, _sdc_deleted_at IS NOT NULL FROM raw_crm.contacts "
                            "ORDER BY id") == [(1, 2, False), (2, 1, True)]
    assert target(lines, hard_delete=True, default_target_schema="raw_hard")[0] == 0
    assert _rows(warehouse, "SELECT id FROM raw_hard.contacts") == [(1,)]


def test_bad_config_and_bad_input_fail_with_what_to_fix(target: Any, tmp_path: Path) -> None:
    code, _, err = target([_schema()], batch_size_rows=0)
    assert code == 2 and "batch_size_rows must be a positive integer, got 0" in err
    code, _, err = target([_schema(), "{not json"])
    assert code == 1 and "input line 2 is not a JSON message" in err
    code, _, err = target([_schema(keys=["nope"])])
    assert code == 1 and "key_properties ['nope'] are not properties of its schema" in err


def test_the_target_is_installed_as_an_executable() -> None:
    assert (Path(sys.executable).parent / "osds-target-postgres").exists(), "reinstall the package (make venv)"


def test_a_plain_schema_is_checked_by_the_converters_with_the_same_reasons(target: Any, warehouse: Any) -> None:
    """A schema of types, nullability and date-time only (what taps emit) runs no validator per record."""
    plain = {"type": "object", "properties": {"id": {"type": "integer"}, "name": {"type": ["null", "string"]},
                                              "at": {"type": ["null", "string"], "format": "date-time"}}}
    code, _, err = target([
        _schema(schema=plain),
        _record({"id": "x"}), _record({"id": 2, "at": "yesterday"}), _record({"id": 3, "name": "a\u0000"}),
        _record({"id": None}), _record({"id": 5, "name": 7}), _record({"id": 6, "at": "2026-11-01T10:00:00+01:00"}),
    ])
    assert code == 0, err
    assert _rows(warehouse, "SELECT id, at FROM raw_crm.contacts") == [
        (6, dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.UTC))]
    reasons = sorted(r[0] for r in _rows(warehouse, "SELECT reason FROM raw_crm._osds_rejects"))
    assert reasons == [
        "a value its column cannot hold: name: text with a NUL character (PostgreSQL text cannot hold it)",
        "violates its schema: data.at must be date-time",
        "violates its schema: data.id must be integer",
        "violates its schema: data.id must be integer",
        "violates its schema: data.name must be null or string",
    ]
