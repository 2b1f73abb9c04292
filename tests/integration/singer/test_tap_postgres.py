"""meltanolabs-tap-postgres from PyPI, discovered, selected with :func:`catalog.apply` and piped into
``osds-target-postgres``: a full sync, then an incremental one from the state the target committed.

The source is a database of the embedded PostgreSQL, read by the tap over TCP (it ignores a socket
directory as ``host``, ../shared/reference/feasibility.md §2).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from airflow_osds.singer import catalog, table_name
from airflow_osds.singer.runner import SingerRun, run_pipe
from tests.singer_plugins import TAP_POSTGRES, plugin, source_database

SCHEMA = "raw_crm"
SELECT = ["public-customers.*", "public-orders.*", "!public-customers.email"]
METADATA = {"public-orders": {"replication-key": "updated_at"}}  # INCREMENTAL is implied


@pytest.fixture(scope="module")
def tap_postgres() -> Path:
    return plugin("tap-postgres", TAP_POSTGRES)


@pytest.fixture(scope="module")
def source(warehouse: Any) -> Iterator[str]:
    """A CRM database: 200 customers, 300 orders (one a minute), and a schema the tap must not discover."""
    with source_database(warehouse.stack.postgres, "crm_source",
                         "CREATE TABLE customers (id integer PRIMARY KEY, email text, name text NOT NULL, "
                         "updated_at timestamptz NOT NULL)",
                         "CREATE TABLE orders (id integer PRIMARY KEY, customer_id integer NOT NULL REFERENCES customers, "
                         "amount numeric(10, 2) NOT NULL, updated_at timestamptz NOT NULL)",
                         "CREATE SCHEMA audit",
                         "CREATE TABLE audit.log (id integer PRIMARY KEY)",
                         "INSERT INTO customers SELECT i, 'c' || i || '@example.com', 'Customer ' || i, "
                         "timestamptz '2026-01-01 00:00+00' + i * interval '1 minute' FROM generate_series(1, 200) i",
                         "INSERT INTO orders SELECT i, 1 + i % 200, (i * 7 % 1000) / 4.0, "
                         "timestamptz '2026-02-01 00:00+00' + i * interval '1 minute' FROM generate_series(1, 300) i") as dbname:
        yield dbname


@pytest.fixture(scope="module")
def tap_config(warehouse: Any, source: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pg = warehouse.stack.postgres.airflow_connection(source, tcp=True)
    path = tmp_path_factory.mktemp("tap_postgres") / "tap.json"
    # without filter_schemas it discovers every schema, information_schema's views included
    path.write_text(json.dumps({"host": pg["host"], "port": pg["port"], "user": pg["login"], "password": pg["password"],
                                "database": source, "filter_schemas": ["public"]}))
    return path


@pytest.fixture(scope="module")
def discovered(tap_postgres: Path, tap_config: Path) -> dict[str, Any]:
    done = subprocess.run([str(tap_postgres), "--config", str(tap_config), "--discover"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.fixture
def target_config(warehouse: Any, tmp_path: Path) -> Path:
    pg = warehouse.stack.postgres.airflow_connection(warehouse.dbname)
    with warehouse.stack.postgres.connect(warehouse.dbname, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    path = tmp_path / "target.json"
    path.write_text(json.dumps({"host": pg["host"], "port": pg["port"], "user": pg["login"], "password": pg["password"],
                                "database": warehouse.dbname, "default_target_schema": SCHEMA}))
    return path


def _sync(tap: Path, tap_config: Path, catalog_file: Path, target_config: Path, state: Any = None) -> SingerRun:
    command = [str(tap), "--config", str(tap_config), "--catalog", str(catalog_file)]
    if state is not None:
        state_file = catalog_file.with_name("state.json")
        state_file.write_text(json.dumps(state))
        command += ["--state", str(state_file)]
    target = [str(Path(sys.executable).parent / "osds-target-postgres"), "--config", str(target_config)]
    run = run_pipe(command, target, timeout=300)
    assert (run.tap_exit, run.target_exit) == (0, 0)
    return run


def test_discovery_names_streams_schema_table_and_marks_only_keys_automatic(discovered: dict[str, Any]) -> None:
    # What catalog.apply relies on, as this tap version discovers it: no stream or property is
    # selected, there is no selected-by-default nor valid-replication-keys, and audit.* is filtered out.
    assert [s["tap_stream_id"] for s in discovered["streams"]] == ["public-customers", "public-orders"]
    customers = discovered["streams"][0]
    assert catalog.selected_streams(discovered) == []
    assert {(s["stream"], s["table_name"], tuple(s["key_properties"])) for s in discovered["streams"]} == {
        ("public-customers", "customers", ("id",)), ("public-orders", "orders", ("id",))}
    assert customers["metadata"] == [
        {"breadcrumb": ["properties", "id"], "metadata": {"inclusion": "automatic"}},
        {"breadcrumb": ["properties", "email"], "metadata": {"inclusion": "available"}},
        {"breadcrumb": ["properties", "name"], "metadata": {"inclusion": "available"}},
        {"breadcrumb": ["properties", "updated_at"], "metadata": {"inclusion": "available"}},
        {"breadcrumb": [], "metadata": {"inclusion": "available", "table-key-properties": ["id"],
                                        "forced-replication-method": "", "schema-name": "public"}},
    ]
    assert customers["schema"]["properties"] == {
        "id": {"type": ["integer"]}, "email": {"type": ["string", "null"]},
        "name": {"type": ["string", "null"]},  # NOT NULL in the source, nullable in the schema
        "updated_at": {"format": "date-time", "type": ["string", "null"]}}


def test_a_full_then_an_incremental_sync_from_the_committed_state(
    tap_postgres: Path, tap_config: Path, discovered: dict[str, Any], target_config: Path, warehouse: Any,
    source: str, tmp_path: Path,
) -> None:
    applied = catalog.apply(discovered, SELECT, METADATA)
    assert catalog.selected_streams(applied) == ["public-customers", "public-orders"]
    catalog_file = tmp_path / "catalog.json"
    catalog_file.write_text(json.dumps(applied))

    def source_rows(sql: str) -> list[tuple[Any, ...]]:
        with warehouse.stack.postgres.connect(source) as conn:
            return conn.execute(sql).fetchall()

    customers, orders = f"{SCHEMA}.{table_name('public-customers')}", f"{SCHEMA}.{table_name('public-orders')}"
    assert (customers, orders) == ("raw_crm.customers", "raw_crm.orders")

    first = _sync(tap_postgres, tap_config, catalog_file, target_config)
    assert first.record_counts == {"public-customers": 200, "public-orders": 300}
    assert first.state == {"bookmarks": {
        "public-customers": {},
        "public-orders": {"replication_key": "updated_at", "replication_key_value": "2026-02-01T05:00:00.000000+00:00"},
    }}
    # the deselected email is not in the tap's SCHEMA, so the table has no such column
    assert warehouse.query("SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
                           "ORDER BY attnum", (customers,)) == [
        ("id",), ("name",), ("updated_at",), ("_sdc_extracted_at",), ("_sdc_table_version",), ("_sdc_deleted_at",)]
    assert warehouse.query(f"SELECT id, name, updated_at FROM {customers} ORDER BY id") == source_rows(
        "SELECT id, name, updated_at FROM customers ORDER BY id")
    assert warehouse.query(f"SELECT id, customer_id, amount, updated_at FROM {orders} ORDER BY id") == source_rows(
        "SELECT id, customer_id, amount, updated_at FROM orders ORDER BY id")

    with warehouse.stack.postgres.connect(source, autocommit=True) as conn:
        conn.execute("INSERT INTO orders SELECT i, i - 300, 10 * i, timestamptz '2026-03-01 00:00+00' + i * interval "
                     "'1 second' FROM generate_series(301, 303) i")
        # below the bookmark: an incremental sync must not see it
        conn.execute("UPDATE orders SET amount = 999.99 WHERE id = 5")

    second = _sync(tap_postgres, tap_config, catalog_file, target_config, state=first.state)
    # customers is FULL_TABLE, so all again; orders: the 3 new ones and order 300, re-sent because
    # the bookmark is compared with >=
    assert second.record_counts == {"public-customers": 200, "public-orders": 4}
    assert second.state == {"bookmarks": {
        "public-customers": {},
        "public-orders": {"replication_key": "updated_at", "replication_key_value": "2026-03-01T00:05:03.000000+00:00"},
    }}
    assert warehouse.query(f"SELECT count(*), count(DISTINCT id) FROM {customers}") == [(200, 200)]
    assert warehouse.query(f"SELECT count(*), count(DISTINCT id), max(id) FROM {orders}") == [(303, 303, 303)]
    assert warehouse.query(f"SELECT id, customer_id, amount FROM {orders} WHERE id IN (5, 300) OR id > 300 "
                           "ORDER BY id") == [(5, 6, Decimal("8.75")), (300, 101, Decimal(25)), (301, 1, Decimal(3010)),
                                              (302, 2, Decimal(3020)), (303, 3, Decimal(3030))]


def test_a_misspelled_select_pattern_names_the_tap_s_streams(discovered: dict[str, Any]) -> None:
    with pytest.raises(catalog.CatalogError) as info:
        catalog.apply(discovered, ["publik-customers.*", "public-orders.*"])
    assert str(info.value) == ("select pattern 'publik-customers.*' matches no stream; the tap's streams are: "
                               "public-customers, public-orders (did you mean 'public-customers'?)")
