"""Entity tables on the embedded PostgreSQL: create, COPY through our CSV lines, migrate, deduplicate.

Schemas come from Iglu Central (``web_page``) and from a small static registry written here
(``com.acme/order``: 1-0-0, 1-0-1 adding a field, 1-0-2 changing a type, 2-0-0 a new model).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest

from airflow_osds.snowplow import tables
from airflow_osds.snowplow.entities import Entity, extract
from airflow_osds.snowplow.iglu import Resolver, SchemaKey, StaticRepository
from airflow_osds.snowplow.tables import TableMigrationError, copy_line, plan, read_table_state, row, table_name
from tests.unit.snowplow._support import WEB_PAGE, iglu_central, self_describing, write_registry

SCHEMA = "atomic"
ORDER_100 = "iglu:com.acme/order/jsonschema/1-0-0"
ORDER_101 = "iglu:com.acme/order/jsonschema/1-0-1"
ORDER_102 = "iglu:com.acme/order/jsonschema/1-0-2"
ORDER_200 = "iglu:com.acme/order/jsonschema/2-0-0"
ORDER_PROPERTIES: dict[str, Any] = {
    "id": {"type": "string", "format": "uuid"},
    "placedAt": {"type": "string", "format": "date-time"},
    "shipDate": {"type": ["string", "null"], "format": "date"},
    "country": {"type": "string", "minLength": 2, "maxLength": 2},
    "status": {"enum": ["new", "paid", "shipped"]},
    "quantity": {"type": "integer", "minimum": 0, "maximum": 1000},
    "sequence": {"type": "integer"},
    "total": {"type": "number"},
    "gift": {"type": "boolean"},
    "note": {"type": ["string", "null"], "maxLength": 200},
    "address": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 50}, "lines": {"type": "array", "items": {"type": "string"}}},
        "required": ["city"],
    },
    "tags": {"type": "array", "items": {"type": "string"}},
    "extra": {"type": "object"},
    "code": {"enum": [1, "one"]},
}
ORDER = {"type": "object", "properties": ORDER_PROPERTIES, "required": ["id", "placedAt", "address"], "additionalProperties": False}
EXPECTED_TYPES = {  # column -> (information_schema data_type, character_maximum_length, is_nullable)
    "schema_vendor": ("character varying", 128, "YES"),
    "schema_name": ("character varying", 128, "YES"),
    "schema_format": ("character varying", 128, "YES"),
    "schema_version": ("character varying", 128, "YES"),
    "root_id": ("uuid", None, "NO"),
    "root_tstamp": ("timestamp without time zone", None, "NO"),
    "osds_entity_hash": ("character", 32, "NO"),
    "address.city": ("character varying", 50, "NO"),
    "id": ("uuid", None, "NO"),
    "placed_at": ("timestamp without time zone", None, "NO"),
    "address.lines": ("jsonb", None, "YES"),
    "code": ("jsonb", None, "YES"),
    "country": ("character", 2, "YES"),
    "extra": ("jsonb", None, "YES"),
    "gift": ("boolean", None, "YES"),
    "note": ("character varying", 200, "YES"),
    "quantity": ("integer", None, "YES"),
    "sequence": ("bigint", None, "YES"),
    "ship_date": ("date", None, "YES"),
    "status": ("character varying", 7, "YES"),
    "tags": ("jsonb", None, "YES"),
    "total": ("double precision", None, "YES"),
}
TRICKY = 'tab\there, newline\nhere, "quotes", back\\slash, \\. and \r\n é ✓'


@pytest.fixture(scope="module")
def resolver(tmp_path_factory: pytest.TempPathFactory) -> Resolver:
    v101 = json.loads(json.dumps(ORDER))
    v101["properties"]["coupon"] = {"type": "string", "maxLength": 10}
    v102 = json.loads(json.dumps(v101))
    v102["properties"]["quantity"] = {"type": "string"}
    v200 = {"type": "object", "properties": {"orderId": {"type": "string"}}, "required": ["orderId"]}
    local = write_registry(
        tmp_path_factory.mktemp("acme"),
        {
            ORDER_100: self_describing(ORDER_100, ORDER),
            ORDER_101: self_describing(ORDER_101, v101),
            ORDER_102: self_describing(ORDER_102, v102),
            ORDER_200: self_describing(ORDER_200, v200),
        },
    )
    return Resolver([StaticRepository(local, name="acme"), StaticRepository(iglu_central(), name="Iglu Central")])


@pytest.fixture(scope="module")
def conn(warehouse: Any) -> Iterator[psycopg.Connection[Any]]:
    with warehouse.stack.postgres.connect(warehouse.dbname, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
        yield connection


def apply(conn: psycopg.Connection[Any], resolver: Resolver, uri: str) -> list[str]:
    """What the loader does before loading an entity of ``uri``: read the table, plan, run."""
    key = SchemaKey.parse(uri)
    state = read_table_state(conn, SCHEMA, table_name(key))
    statements = plan(SCHEMA, None if state is None else state.columns, None if state is None else state.comment, key, resolver.lookup(key))
    with conn.transaction():
        for statement in statements:
            conn.execute(statement)
    return statements


def copy_rows(conn: psycopg.Connection[Any], table: str | None, cols: Sequence[tables.Column], rows: list[list[str | None]], *, staging: bool = False) -> None:
    target = table if not staging else "osds_stage"
    with conn.transaction():
        if staging:
            conn.execute(tables.staging_table_sql(SCHEMA, table, target))
        with conn.cursor().copy(tables.copy_sql(None if staging else SCHEMA, target, cols)) as copy:
            for values in rows:
                copy.write(copy_line(values))
        if staging:
            conn.execute(tables.insert_new_rows_sql(SCHEMA, table, target, cols))


def entity_rows(resolver: Resolver, entities: list[Entity], root: tuple[str, str]) -> tuple[list[tables.Column], list[list[str | None]]]:
    key = entities[0].key
    cols = tables.columns(resolver.lookup(key))
    return cols, [row(cols, e.key, *root, e.data, entity_hash=e.hash) for e in entities]


def columns_of(conn: psycopg.Connection[Any], table: str) -> dict[str, tuple[Any, ...]]:
    rows = conn.execute(
        "SELECT column_name, data_type, character_maximum_length, is_nullable FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
        (SCHEMA, table),
    ).fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


def comment_of(conn: psycopg.Connection[Any], table: str) -> str | None:
    return conn.execute("SELECT obj_description(to_regclass(%s), 'pg_class')", (f"{SCHEMA}.{table}",)).fetchone()[0]


ORDER_TABLE = "com_acme_order_1"
ROOT_1 = ("c6ef3124-b53a-4b13-a233-0088f79dcbcb", "2021-05-01 10:00:00.123")
ROOT_2 = ("0b0ad1b6-6a35-4e63-9b1b-6b1b5ee3e4a2", "2021-05-02 11:00:00")
ORDER_DATA = {
    "id": "6e4a2e3c-0d7b-4c8f-9a32-123456789abc",
    "placedAt": "2021-05-01T12:00:00.5+02:00",
    "shipDate": "2021-05-03",
    "country": "DE",
    "status": "shipped",
    "quantity": 3,
    "sequence": 2**40,
    "total": 1e-3,
    "gift": False,
    "note": TRICKY,
    "address": {"city": "Zürich", "lines": ["a\tb", 'c "d"']},
    "tags": [],
    "extra": {"nested": {"deep": [1, 2.5, None, True]}, "text": TRICKY},
    "code": "one",
}


def test_tables_are_created_with_the_inferred_types(conn: psycopg.Connection[Any], resolver: Resolver) -> None:
    statements = apply(conn, resolver, ORDER_100)
    assert statements[0].startswith("CREATE TABLE IF NOT EXISTS")
    assert columns_of(conn, ORDER_TABLE) == EXPECTED_TYPES
    assert list(columns_of(conn, ORDER_TABLE))[:7] == [c.name for c in tables.META_COLUMNS]
    assert comment_of(conn, ORDER_TABLE) == ORDER_100
    unique = conn.execute(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = %s", (SCHEMA, ORDER_TABLE)
    ).fetchall()
    assert unique == [(f'CREATE UNIQUE INDEX com_acme_order_1_osds_dedupe ON {SCHEMA}.com_acme_order_1 USING btree (root_id, root_tstamp, osds_entity_hash)',)]
    assert apply(conn, resolver, ORDER_100) == []  # the same version again: nothing to do

    apply(conn, resolver, WEB_PAGE.uri)
    web = table_name(WEB_PAGE)
    assert web == "com_snowplowanalytics_snowplow_web_page_1"
    assert columns_of(conn, web)["id"] == ("character varying", 4096, "NO")
    assert comment_of(conn, web) == WEB_PAGE.uri


def test_rows_round_trip_through_copy(conn: psycopg.Connection[Any], resolver: Resolver) -> None:
    resolver.validate(SchemaKey.parse(ORDER_100), ORDER_DATA)
    sparse = {"id": "0b0ad1b6-6a35-4e63-9b1b-6b1b5ee3e4a2", "placedAt": "2021-05-02T00:00:00Z", "address": {"city": ""}, "note": None, "code": 1}
    resolver.validate(SchemaKey.parse(ORDER_100), sparse)
    field = json.dumps(
        {"schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1", "data": [{"schema": ORDER_100, "data": ORDER_DATA}]}
    )
    (entity,), failures = extract("contexts", field, resolver)
    assert failures == []
    cols, values = entity_rows(resolver, [entity], ROOT_1)
    key = SchemaKey.parse(ORDER_100)
    values.append(row(cols, key, *ROOT_2, sparse))
    copy_rows(conn, ORDER_TABLE, cols, values)

    names = [c.name for c in cols]
    select = ", ".join(f'"{n}"' for n in ["schema_vendor", "schema_version", "root_id", "root_tstamp", "osds_entity_hash", *names])
    got = conn.execute(f'SELECT {select} FROM {SCHEMA}."{ORDER_TABLE}" ORDER BY root_tstamp').fetchall()
    first = dict(zip(["schema_vendor", "schema_version", "root_id", "root_tstamp", "osds_entity_hash", *names], got[0]))
    assert first == {
        "schema_vendor": "com.acme",
        "schema_version": "1-0-0",
        "root_id": uuid.UUID(ROOT_1[0]),
        "root_tstamp": dt.datetime(2021, 5, 1, 10, 0, 0, 123000),
        "osds_entity_hash": entity.hash,
        "address.city": "Zürich",
        "id": uuid.UUID(ORDER_DATA["id"]),
        "placed_at": dt.datetime(2021, 5, 1, 10, 0, 0, 500000),  # +02:00 stored as UTC
        "address.lines": ["a\tb", 'c "d"'],
        "code": "one",
        "country": "DE",
        "extra": ORDER_DATA["extra"],
        "gift": False,
        "note": TRICKY,
        "quantity": 3,
        "sequence": 2**40,
        "ship_date": dt.date(2021, 5, 3),
        "status": "shipped",
        "tags": [],
        "total": 1e-3,
    }
    second = dict(zip(["schema_vendor", "schema_version", "root_id", "root_tstamp", "osds_entity_hash", *names], got[1]))
    assert second["address.city"] == "" and second["note"] is None and second["code"] == 1 and second["tags"] is None
    assert second["placed_at"] == dt.datetime(2021, 5, 2)


def test_a_replay_adds_no_rows_but_identical_entities_stay(conn: psycopg.Connection[Any], resolver: Resolver) -> None:
    page = {"schema": WEB_PAGE.uri, "data": {"id": "1b2c3d4e-0d7b-4c8f-9a32-123456789abc"}}
    field = json.dumps({"schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1", "data": [page, page]})
    web = table_name(WEB_PAGE)
    entities, _ = extract("contexts", field, resolver)
    assert [e.occurrence for e in entities] == [0, 1]
    cols, rows = entity_rows(resolver, entities, ROOT_1)
    copy_rows(conn, web, cols, rows, staging=True)
    count = f'SELECT count(*) FROM {SCHEMA}."{web}" WHERE root_id = %s'
    assert conn.execute(count, (ROOT_1[0],)).fetchone()[0] == 2  # two identical contexts: two rows, as Snowplow
    copy_rows(conn, web, cols, rows + rows, staging=True)  # replayed twice in one batch
    assert conn.execute(count, (ROOT_1[0],)).fetchone()[0] == 2
    with pytest.raises(psycopg.errors.UniqueViolation):  # the index is what makes it so
        copy_rows(conn, web, cols, rows[:1])


def test_migration_adds_the_new_column_nullable(conn: psycopg.Connection[Any], resolver: Resolver) -> None:
    statements = apply(conn, resolver, ORDER_101)
    assert statements == [
        f'ALTER TABLE "{SCHEMA}"."{ORDER_TABLE}" ADD COLUMN "coupon" VARCHAR(10)',
        f"COMMENT ON TABLE \"{SCHEMA}\".\"{ORDER_TABLE}\" IS '{ORDER_101}'",
    ]
    have = columns_of(conn, ORDER_TABLE)
    assert have["coupon"] == ("character varying", 10, "YES")
    assert list(have)[-1] == "coupon" and {k: v for k, v in have.items() if k != "coupon"} == EXPECTED_TYPES
    assert comment_of(conn, ORDER_TABLE) == ORDER_101
    assert conn.execute(f'SELECT count(*), count("coupon") FROM {SCHEMA}."{ORDER_TABLE}"').fetchone() == (2, 0)

    key = SchemaKey.parse(ORDER_101)
    data = dict(ORDER_DATA, coupon="SAVE10")
    resolver.validate(key, data)
    cols = tables.columns(resolver.lookup(key))
    root = ("9d7a1b2c-6a35-4e63-9b1b-6b1b5ee3e4a2", "2021-05-03 00:00:00")
    copy_rows(conn, ORDER_TABLE, cols, [row(cols, key, *root, data)])
    assert conn.execute(f'SELECT "coupon", schema_version FROM {SCHEMA}."{ORDER_TABLE}" WHERE root_id = %s', (root[0],)).fetchone() == ("SAVE10", "1-0-1")

    # An older event afterwards: nothing to migrate, it loads with NULL in the new column.
    assert apply(conn, resolver, ORDER_100) == []
    assert comment_of(conn, ORDER_TABLE) == ORDER_101
    old_key = SchemaKey.parse(ORDER_100)
    old_cols = tables.columns(resolver.lookup(old_key))
    root = ("aa7a1b2c-6a35-4e63-9b1b-6b1b5ee3e4a2", "2021-05-04 00:00:00")
    copy_rows(conn, ORDER_TABLE, old_cols, [row(old_cols, old_key, *root, ORDER_DATA)])
    assert conn.execute(f'SELECT "coupon" FROM {SCHEMA}."{ORDER_TABLE}" WHERE root_id = %s', (root[0],)).fetchone() == (None,)


def test_a_type_change_is_refused(conn: psycopg.Connection[Any], resolver: Resolver) -> None:
    with pytest.raises(TableMigrationError) as excinfo:
        apply(conn, resolver, ORDER_102)
    message = str(excinfo.value)
    assert "'quantity' is INTEGER in the table but VARCHAR(4096) in iglu:com.acme/order/jsonschema/1-0-2" in message
    assert f"(table at {ORDER_101})" in message and "new MODEL" in message
    assert comment_of(conn, ORDER_TABLE) == ORDER_101
    assert columns_of(conn, ORDER_TABLE)["quantity"] == ("integer", None, "YES")


def test_a_new_model_gets_its_own_table(conn: psycopg.Connection[Any], resolver: Resolver) -> None:
    statements = apply(conn, resolver, ORDER_200)
    assert statements[0].startswith(f'CREATE TABLE IF NOT EXISTS "{SCHEMA}"."com_acme_order_2"')
    assert columns_of(conn, "com_acme_order_2")["order_id"] == ("character varying", 4096, "NO")
    assert comment_of(conn, "com_acme_order_2") == ORDER_200
    assert comment_of(conn, ORDER_TABLE) == ORDER_101


def test_table_state_reads_the_database(conn: psycopg.Connection[Any]) -> None:
    state = read_table_state(conn, SCHEMA, ORDER_TABLE)
    assert state is not None and state.comment == SchemaKey.parse(ORDER_101)
    assert state.columns["address.city"] == tables.ExistingColumn("address.city", "VARCHAR(50)", False)
    assert state.columns["placed_at"].sql_type == "TIMESTAMP" and state.columns["country"].sql_type == "CHAR(2)"
    assert read_table_state(conn, SCHEMA, "no_such_table") is None
    conn.execute(f'CREATE TABLE {SCHEMA}."not_an_entity_table" (a int)')
    conn.execute(f"COMMENT ON TABLE {SCHEMA}.\"not_an_entity_table\" IS 'hello'")
    with pytest.raises(TableMigrationError, match="not an Iglu schema URI"):
        read_table_state(conn, SCHEMA, "not_an_entity_table")


def test_long_names_are_the_names_postgres_keeps(conn: psycopg.Connection[Any], tmp_path: Path) -> None:
    uri = "iglu:com.example.a.rather.long.vendor.name/anExtremelyLongSchemaNameForTestingPurposes/jsonschema/1-0-0"
    prop = "aVeryLongPropertyNameThatKeepsGoingAndGoing"
    schema = self_describing(uri, {"type": "object", "properties": {prop: {"type": "object", "properties": {prop: {"type": "integer"}}}}})
    resolver = Resolver([StaticRepository(write_registry(tmp_path / "r", {uri: schema}), name="r")])
    key = SchemaKey.parse(uri)
    apply(conn, resolver, uri)
    (column,) = tables.columns(schema)
    assert len(table_name(key)) == 63 and len(column.name) == 63
    assert list(columns_of(conn, table_name(key)))[-1] == column.name
    copy_rows(conn, table_name(key), [column], [row([column], key, *ROOT_1, {prop: {prop: 7}})])
    assert conn.execute(f'SELECT "{column.name}" FROM {SCHEMA}."{table_name(key)}"').fetchone() == (7,)


def test_postgres_rejects_what_row_refuses(conn: psycopg.Connection[Any]) -> None:
    # Why row() checks NUL characters: text (psycopg refuses to send it) and jsonb (PostgreSQL) cannot hold them.
    with pytest.raises(psycopg.errors.DataError):
        conn.execute("SELECT %s::text", ("a\x00b",))
    with pytest.raises(psycopg.errors.DataError):  # UntranslatableCharacter
        conn.execute("SELECT %s::jsonb", ('"a\\u0000b"',))
