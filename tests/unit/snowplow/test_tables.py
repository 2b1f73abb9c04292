"""Entity tables without a database: names, column inference, DDL, migration plans and COPY rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from airflow_osds.snowplow import tables
from airflow_osds.snowplow.iglu import Resolver, SchemaKey, StaticRepository
from airflow_osds.snowplow.tables import (
    META_COLUMNS,
    Column,
    ExistingColumn,
    RowError,
    SchemaLayoutError,
    TableMigrationError,
    canonical_json,
    columns,
    copy_line,
    create_table_sql,
    entity_hash,
    migration_sql,
    normalize_type,
    plan,
    row,
    snake_case,
    sql_type,
    table_name,
)
from tests.unit.snowplow._support import WEB_PAGE, assert_valid_badrow, iglu_central, self_describing

UUID = "6e4a2e3c-0d7b-4c8f-9a32-123456789abc"
ROOT = ("c6ef3124-b53a-4b13-a233-0088f79dcbcb", "2021-01-01 10:00:00.123")


def key(uri: str) -> SchemaKey:
    return SchemaKey.parse(uri)


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("name", "snake"),
    [
        ("linkClick", "link_click"),
        ("web_page", "web_page"),
        ("PerformanceTiming", "performance_timing"),
        ("HTMLParser", "html_parser"),
        ("getHTTPResponseCode", "get_http_response_code"),
        ("userId2Fa", "user_id2_fa"),
        ("media-player", "media_player"),
        ("ABC", "abc"),
        ("x", "x"),
    ],
)
def test_snake_case_is_schema_ddls(name: str, snake: str) -> None:
    assert snake_case(name) == snake


@pytest.mark.parametrize(
    ("uri", "table"),
    [
        ("iglu:com.snowplowanalytics.snowplow/link_click/jsonschema/1-0-1", "com_snowplowanalytics_snowplow_link_click_1"),
        ("iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0", "com_snowplowanalytics_snowplow_web_page_1"),
        ("iglu:org.w3/PerformanceTiming/jsonschema/1-0-0", "org_w3_performance_timing_1"),
        ("iglu:com.Acme-Corp/HTMLParser/jsonschema/12-3-4", "com_acme_corp_html_parser_12"),
    ],
)
def test_table_names(uri: str, table: str) -> None:
    assert table_name(key(uri)) == table


def test_long_table_names_are_shortened_deterministically() -> None:
    vendor = "com.example.a.rather.long.vendor.name"
    a = key(f"iglu:{vendor}/anExtremelyLongSchemaNameForTestingPurposes/jsonschema/12-0-0")
    b = key(f"iglu:{vendor}/anExtremelyLongSchemaNameForTestingPurposesToo/jsonschema/12-0-0")
    full = "com_example_a_rather_long_vendor_name_an_extremely_long_schema_name_for_testing_purposes_12"
    for k in (a, b):
        name = table_name(k)
        assert len(name.encode()) == 63 and name.endswith("_12") and name.startswith("com_example_a_rather")
    assert table_name(a) != table_name(b)
    assert table_name(a) == table_name(key(a.uri))
    import hashlib

    base = full[: -len("_12")]
    assert table_name(a) == base[: 63 - 12] + "_" + hashlib.md5(full.encode()).hexdigest()[:8] + "_12"
    index = tables.index_name(table_name(a))
    assert len(index.encode()) <= 63 and index.endswith("_osds_dedupe") and index != tables.index_name(table_name(b))


# --------------------------------------------------------------------------- types


@pytest.mark.parametrize(
    ("prop", "expected"),
    [
        ({"enum": ["a", 1]}, "JSONB"),
        ({"enum": [True, "yes"]}, "JSONB"),
        ({"type": "string", "enum": ["a", "bcd"]}, "VARCHAR(3)"),
        ({"enum": ["a", "bcd", None]}, "VARCHAR(3)"),
        ({"type": "array", "items": {"type": "string"}}, "JSONB"),
        ({"type": ["array", "null"]}, "JSONB"),
        ({"type": ["string", "integer"]}, "JSONB"),
        ({"type": ["string", "null"], "maxLength": 5}, "VARCHAR(5)"),
        ({"type": ["integer", "number"]}, "DOUBLE PRECISION"),
        ({"type": "string", "format": "date-time"}, "TIMESTAMP"),
        ({"type": ["string", "null"], "format": "date"}, "DATE"),
        ({"type": "integer", "maximum": 100}, "INTEGER"),
        ({"type": "integer", "minimum": 0, "maximum": 2**31 - 1}, "INTEGER"),
        ({"type": "integer", "maximum": 2**31}, "BIGINT"),
        ({"type": "integer", "minimum": -(2**40), "maximum": 5}, "BIGINT"),
        ({"type": "integer"}, "BIGINT"),
        ({"type": "integer", "enum": [1, 2, 3]}, "INTEGER"),
        ({"type": "integer", "enum": [1, 2**40]}, "BIGINT"),
        ({"enum": [1, 2]}, "INTEGER"),
        ({"type": "number", "maximum": 10}, "DOUBLE PRECISION"),
        ({"type": ["number", "null"]}, "DOUBLE PRECISION"),
        ({"type": "boolean"}, "BOOLEAN"),
        ({"enum": [True, False]}, "BOOLEAN"),
        ({"type": "string", "minLength": 2, "maxLength": 2}, "CHAR(2)"),
        ({"type": "string", "format": "uuid", "minLength": 36, "maxLength": 36}, "CHAR(36)"),  # CHAR comes before UUID
        ({"type": "string", "format": "uuid"}, "UUID"),
        ({"type": "string", "maxLength": 255}, "VARCHAR(255)"),
        ({"type": "string", "maxLength": 20_000_000}, "TEXT"),
        ({"type": "string", "format": "email"}, "VARCHAR(4096)"),
        ({"type": "string"}, "VARCHAR(4096)"),
        ({"type": "object"}, "JSONB"),
        ({"type": "object", "properties": {}}, "JSONB"),
        ({}, "JSONB"),
        ({"$ref": "#/definitions/x"}, "JSONB"),
        ({"type": "null"}, "JSONB"),
    ],
)
def test_type_inference(prop: dict[str, Any], expected: str) -> None:
    assert sql_type(prop) == expected


NESTED = self_describing(
    "iglu:com.acme/customer/jsonschema/1-0-0",
    {
        "type": "object",
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "address": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "maxLength": 50},
                    "zipCode": {"type": "string"},
                    "geo": {"type": "object", "properties": {"lat": {"type": "number"}}, "required": ["lat"]},
                },
                "required": ["city", "geo"],
            },
            "billing": {"type": ["object", "null"], "properties": {"street": {"type": "string"}}, "required": ["street"]},
            "tags": {"type": "array", "items": {"type": "string"}},
            "optionalObj": {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
            "nickname": {"type": ["string", "null"], "maxLength": 20},
        },
        "required": ["id", "address", "billing", "nickname"],
        "additionalProperties": False,
    },
)


def test_nested_properties_flatten_with_nullability_and_order() -> None:
    got = [(c.name, c.sql_type, c.nullable, c.path) for c in columns(NESTED)]
    assert got == [
        ("address.city", "VARCHAR(50)", False, ("address", "city")),
        ("address.geo.lat", "DOUBLE PRECISION", False, ("address", "geo", "lat")),
        ("id", "UUID", False, ("id",)),
        ("address.zip_code", "VARCHAR(4096)", True, ("address", "zipCode")),
        ("billing.street", "VARCHAR(4096)", True, ("billing", "street")),  # its parent may be null
        ("nickname", "VARCHAR(20)", True, ("nickname",)),  # required but nullable
        ("optional_obj.a", "BIGINT", True, ("optionalObj", "a")),  # its parent is optional
        ("tags", "JSONB", True, ("tags",)),
    ]


def test_columns_of_a_revision_keep_the_earlier_ones() -> None:
    later = json.loads(json.dumps(NESTED))
    later["self"]["version"] = "1-0-1"
    later["properties"]["aardvark"] = {"type": "boolean"}
    later["properties"]["address"]["properties"]["country"] = {"type": "string", "minLength": 2, "maxLength": 2}
    before, after = columns(NESTED), columns(later)
    assert [c for c in after if c in before] == before
    assert [c.name for c in after if c not in before] == ["aardvark", "address.country"]


def test_iglu_central_columns(tmp_path: Path) -> None:
    resolver = Resolver([StaticRepository(iglu_central(), name="Iglu Central")])
    link = columns(resolver.lookup(key("iglu:com.snowplowanalytics.snowplow/link_click/jsonschema/1-0-1")))
    assert [(c.name, c.sql_type, c.nullable) for c in link] == [
        ("target_url", "VARCHAR(4096)", False),
        ("element_classes", "JSONB", True),
        ("element_content", "VARCHAR(4096)", True),
        ("element_id", "VARCHAR(4096)", True),
        ("element_target", "VARCHAR(4096)", True),
    ]
    assert [(c.name, c.sql_type, c.nullable) for c in columns(resolver.lookup(WEB_PAGE))] == [("id", "VARCHAR(4096)", False)]


@pytest.mark.parametrize(
    ("properties", "message"),
    [
        ({"fooBar": {"type": "string"}, "foo_bar": {"type": "string"}}, "'fooBar' and 'foo_bar' both become column 'foo_bar'"),
        ({"rootId": {"type": "string"}}, "meta column"),
        ({"a": {"type": "object", "properties": {"b": {"type": "string"}}}, "a.b": {"type": "string"}}, "both become column 'a.b'"),
    ],
)
def test_properties_that_collide_are_refused(properties: dict[str, Any], message: str) -> None:
    with pytest.raises(SchemaLayoutError, match=message):
        columns({"type": "object", "properties": properties})


def test_long_column_names_are_shortened() -> None:
    long = "aVeryLongPropertyNameThatKeepsGoing"
    schema = {"type": "object", "properties": {long: {"type": "object", "properties": {long + "X": {"type": "string"}, long + "Y": {"type": "string"}}}}}
    names = [c.name for c in columns(schema)]
    assert len(set(names)) == 2 and all(len(n.encode()) == 63 for n in names)
    assert all(n.startswith("a_very_long_property_name_that_keeps_going.a_very") for n in names)
    assert names == [c.name for c in columns(schema)]


def test_a_schema_without_properties_has_only_meta_columns() -> None:
    assert columns({"type": "object"}) == []
    assert columns({"type": "object", "properties": {}}) == []


# --------------------------------------------------------------------------- DDL


CUSTOMER = key("iglu:com.acme/customer/jsonschema/1-0-0")


def test_create_table_sql() -> None:
    create, index, comment = create_table_sql("atomic", CUSTOMER, NESTED)
    assert create.startswith('CREATE TABLE IF NOT EXISTS "atomic"."com_acme_customer_1" (\n')
    lines = [line.strip().rstrip(",") for line in create.splitlines()[1:-1]]
    assert lines[:7] == [
        '"schema_vendor" VARCHAR(128)',
        '"schema_name" VARCHAR(128)',
        '"schema_format" VARCHAR(128)',
        '"schema_version" VARCHAR(128)',
        '"root_id" UUID NOT NULL',
        '"root_tstamp" TIMESTAMP NOT NULL',
        '"osds_entity_hash" CHAR(32) NOT NULL',
    ]
    assert lines[7:10] == ['"address.city" VARCHAR(50) NOT NULL', '"address.geo.lat" DOUBLE PRECISION NOT NULL', '"id" UUID NOT NULL']
    assert '"tags" JSONB' in lines
    assert index == (
        'CREATE UNIQUE INDEX IF NOT EXISTS "com_acme_customer_1_osds_dedupe" ON "atomic"."com_acme_customer_1" '
        '("root_id", "root_tstamp", "osds_entity_hash")'
    )
    assert comment == "COMMENT ON TABLE \"atomic\".\"com_acme_customer_1\" IS 'iglu:com.acme/customer/jsonschema/1-0-0'"


def test_a_table_created_from_a_later_version_has_nullable_data_columns() -> None:
    create = create_table_sql("atomic", key("iglu:com.acme/customer/jsonschema/1-1-0"), NESTED)[0]
    assert "NOT NULL" not in create.split('"osds_entity_hash" CHAR(32) NOT NULL')[1]
    assert '"id" UUID' in create


def existing_from(schema: dict[str, Any], *, first_version: bool = True) -> dict[str, ExistingColumn]:
    have = {c.name: ExistingColumn(c.name, c.sql_type, c.nullable) for c in META_COLUMNS}
    for c in columns(schema):
        have[c.name] = ExistingColumn(c.name, c.sql_type, c.nullable or not first_version)
    return have


def revision(schema: dict[str, Any], version: str, **properties: Any) -> dict[str, Any]:
    copy = json.loads(json.dumps(schema))
    copy["self"]["version"] = version
    for name, prop in properties.items():
        if prop is None:
            copy["properties"].pop(name)
            copy["required"] = [r for r in copy["required"] if r != name]
        else:
            copy["properties"][name] = prop
    return copy


def test_plan_creates_a_missing_table() -> None:
    assert plan("atomic", None, None, CUSTOMER, NESTED) == create_table_sql("atomic", CUSTOMER, NESTED)


def test_plan_adds_the_new_columns_of_a_newer_version_nullable() -> None:
    newer = revision(NESTED, "1-0-1", email={"type": "string", "maxLength": 100})
    newer["required"].append("email")  # required from 1-0-1 on, still nullable when added
    target = key("iglu:com.acme/customer/jsonschema/1-0-1")
    statements = plan("atomic", existing_from(NESTED), CUSTOMER, target, newer)
    assert statements == [
        'ALTER TABLE "atomic"."com_acme_customer_1" ADD COLUMN "email" VARCHAR(100)',
        "COMMENT ON TABLE \"atomic\".\"com_acme_customer_1\" IS 'iglu:com.acme/customer/jsonschema/1-0-1'",
    ]
    assert migration_sql("atomic", CUSTOMER, list(existing_from(NESTED).values()), target, newer) == statements


def test_plan_does_nothing_for_the_same_or_an_older_version() -> None:
    newer = revision(NESTED, "1-0-1", email={"type": "string"})
    at_newer = existing_from(newer)
    target = key("iglu:com.acme/customer/jsonschema/1-0-1")
    assert plan("atomic", at_newer, target, target, newer) == []
    assert plan("atomic", at_newer, target, CUSTOMER, NESTED) == []


def test_an_older_version_with_a_dropped_property_gets_its_column_back() -> None:
    newer = revision(NESTED, "1-1-0", tags=None)  # 1-1-0 drops "tags"
    target = key("iglu:com.acme/customer/jsonschema/1-1-0")
    created_from_newer = existing_from(newer, first_version=False)
    assert "tags" not in created_from_newer
    assert plan("atomic", created_from_newer, target, CUSTOMER, NESTED) == [
        'ALTER TABLE "atomic"."com_acme_customer_1" ADD COLUMN "tags" JSONB'
    ]
    # Migrating the other way keeps the column and relaxes nothing that is already nullable.
    assert plan("atomic", existing_from(NESTED), CUSTOMER, target, newer) == [
        "COMMENT ON TABLE \"atomic\".\"com_acme_customer_1\" IS 'iglu:com.acme/customer/jsonschema/1-1-0'"
    ]


def test_a_dropped_required_property_loses_not_null() -> None:
    newer = revision(NESTED, "1-1-0", id=None)
    statements = plan("atomic", existing_from(NESTED), CUSTOMER, key("iglu:com.acme/customer/jsonschema/1-1-0"), newer)
    assert statements[0] == 'ALTER TABLE "atomic"."com_acme_customer_1" ALTER COLUMN "id" DROP NOT NULL'
    relaxed = revision(NESTED, "1-1-0")
    relaxed["required"].remove("id")
    statements = plan("atomic", existing_from(NESTED), CUSTOMER, key("iglu:com.acme/customer/jsonschema/1-1-0"), relaxed)
    assert statements[0] == 'ALTER TABLE "atomic"."com_acme_customer_1" ALTER COLUMN "id" DROP NOT NULL'


def test_a_wider_varchar_is_widened_and_a_narrower_one_left_alone() -> None:
    wider = revision(NESTED, "1-0-1", nickname={"type": ["string", "null"], "maxLength": 200})
    target = key("iglu:com.acme/customer/jsonschema/1-0-1")
    assert plan("atomic", existing_from(NESTED), CUSTOMER, target, wider)[0] == (
        'ALTER TABLE "atomic"."com_acme_customer_1" ALTER COLUMN "nickname" TYPE VARCHAR(200)'
    )
    narrower = revision(NESTED, "1-0-1", nickname={"type": ["string", "null"], "maxLength": 5})
    assert plan("atomic", existing_from(NESTED), CUSTOMER, target, narrower) == [
        "COMMENT ON TABLE \"atomic\".\"com_acme_customer_1\" IS 'iglu:com.acme/customer/jsonschema/1-0-1'"
    ]


@pytest.mark.parametrize(
    "new_type",
    [{"type": ["integer", "null"]}, {"type": ["string", "null"], "format": "date-time"}, {"type": "array"}],
)
def test_a_type_change_is_refused(new_type: dict[str, Any]) -> None:
    changed = revision(NESTED, "1-0-1", nickname=new_type)
    with pytest.raises(TableMigrationError) as excinfo:
        plan("atomic", existing_from(NESTED), CUSTOMER, key("iglu:com.acme/customer/jsonschema/1-0-1"), changed)
    message = str(excinfo.value)
    assert "'nickname' is VARCHAR(20) in the table" in message and "new MODEL" in message
    assert '"atomic"."com_acme_customer_1" (table at iglu:com.acme/customer/jsonschema/1-0-0)' in message


def test_integer_to_bigint_is_refused_but_bigint_takes_integer() -> None:
    a = {"type": "object", "properties": {"n": {"type": "integer", "maximum": 10}}}
    b = {"type": "object", "properties": {"n": {"type": "integer"}}}
    v1, v2 = key("iglu:com.acme/n/jsonschema/1-0-0"), key("iglu:com.acme/n/jsonschema/1-0-1")
    with pytest.raises(TableMigrationError):
        plan("atomic", existing_from(a), v1, v2, b)
    assert plan("atomic", existing_from(b), v2, v1, a) == []


def test_a_table_made_by_snowplows_loader_gets_the_dedupe_column() -> None:
    have = existing_from(NESTED)
    del have["osds_entity_hash"]
    statements = plan("atomic", have, CUSTOMER, CUSTOMER, NESTED)
    assert statements == [
        'ALTER TABLE "atomic"."com_acme_customer_1" ADD COLUMN "osds_entity_hash" CHAR(32)',
        'CREATE UNIQUE INDEX IF NOT EXISTS "com_acme_customer_1_osds_dedupe" ON "atomic"."com_acme_customer_1" '
        '("root_id", "root_tstamp", "osds_entity_hash")',
    ]


def test_plan_refuses_tables_that_are_not_this_models() -> None:
    have = existing_from(NESTED)
    with pytest.raises(TableMigrationError, match="not a version of"):
        plan("atomic", have, key("iglu:com.acme/customer/jsonschema/2-0-0"), CUSTOMER, NESTED)
    del have["root_id"]
    with pytest.raises(TableMigrationError, match="not an entity table.*root_id"):
        plan("atomic", have, CUSTOMER, CUSTOMER, NESTED)
    with pytest.raises(ValueError, match="another schema or MODEL"):
        migration_sql("atomic", CUSTOMER, existing_from(NESTED), key("iglu:com.acme/customer/jsonschema/2-0-0"), NESTED)


def test_an_uncommented_table_is_checked_and_commented() -> None:
    assert plan("atomic", existing_from(NESTED), None, CUSTOMER, NESTED) == [
        "COMMENT ON TABLE \"atomic\".\"com_acme_customer_1\" IS 'iglu:com.acme/customer/jsonschema/1-0-0'"
    ]


@pytest.mark.parametrize(
    ("pg", "ours"),
    [
        ("character varying(255)", "VARCHAR(255)"),
        ("character varying", "VARCHAR"),
        ("character(2)", "CHAR(2)"),
        ("timestamp without time zone", "TIMESTAMP"),
        ("double precision", "DOUBLE PRECISION"),
        ("jsonb", "JSONB"),
        ("uuid", "UUID"),
        ("bigint", "BIGINT"),
        ("boolean", "BOOLEAN"),
    ],
)
def test_normalize_type(pg: str, ours: str) -> None:
    assert normalize_type(pg) == ours


# --------------------------------------------------------------------------- rows


def test_row_renders_copy_text() -> None:
    cols = columns(NESTED)
    data = {
        "id": UUID,
        "address": {"city": "Zürich", "zipCode": "8000", "geo": {"lat": 47.37}},
        "billing": None,
        "tags": ["a", "b\t\"c\""],
        "nickname": "",
    }
    values = row(cols, CUSTOMER, *ROOT, data)
    assert values[:7] == ["com.acme", "customer", "jsonschema", "1-0-0", *ROOT, entity_hash(CUSTOMER, data)]
    assert dict(zip([c.name for c in cols], values[7:])) == {
        "address.city": "Zürich",
        "address.geo.lat": "47.37",
        "id": UUID,
        "address.zip_code": "8000",
        "billing.street": None,
        "nickname": "",
        "optional_obj.a": None,
        "tags": '["a","b\\t\\"c\\""]',
    }
    assert row(cols, CUSTOMER, *ROOT, data, entity_hash="f" * 32)[6] == "f" * 32


def test_a_row_is_its_meta_values_joined_to_its_data_values() -> None:
    """The loader computes an entity's data fields once and joins them to each event's meta fields."""
    cols = columns(NESTED)
    data = {"id": UUID, "address": {"city": 'Q"uote\tTab'}, "tags": ["x"]}
    values = row(cols, CUSTOMER, *ROOT, data, entity_hash="e" * 32)
    meta, own = tables.meta_values(CUSTOMER, *ROOT, "e" * 32), tables.data_values(cols, CUSTOMER, data)
    assert meta + own == values
    assert f"{tables.copy_fields(meta)}\t{tables.copy_fields(own)}\n" == tables.copy_line(values)


@pytest.mark.parametrize(
    ("sql", "value", "text"),
    [
        ("BOOLEAN", True, "t"),
        ("BOOLEAN", False, "f"),
        ("BIGINT", 2**62, str(2**62)),
        ("INTEGER", 3.0, "3"),
        ("DOUBLE PRECISION", 1e-7, "1e-07"),
        ("DOUBLE PRECISION", 5, "5"),
        ("TIMESTAMP", "2021-01-01T10:00:00.5Z", "2021-01-01T10:00:00.5Z"),
        ("TIMESTAMP", "2021-01-01T10:00:00+02:00", "2021-01-01T08:00:00"),
        ("TIMESTAMP", "2021-01-01T00:30:00.250-01:00", "2021-01-01T01:30:00.250000"),
        ("DATE", "2024-02-29", "2024-02-29"),
        ("JSONB", {"b": [1, None], "a": "é"}, '{"b":[1,null],"a":"é"}'),
        ("JSONB", "plain", '"plain"'),
        ("VARCHAR(10)", {"a": 1}, '{"a":1}'),  # a non-string in a string column: its JSON
        ("CHAR(2)", "DE", "DE"),
        ("UUID", UUID.upper(), UUID.upper()),
    ],
)
def test_values(sql: str, value: Any, text: str) -> None:
    assert row([Column("v", sql, True, ("v",))], CUSTOMER, *ROOT, {"v": value})[7] == text


@pytest.mark.parametrize(
    ("sql", "value", "expected"),
    [
        ("INTEGER", 2**31, "integer (32-bit)"),
        ("INTEGER", 1.5, "integer"),
        ("BIGINT", True, "integer"),
        ("VARCHAR(3)", "abcd", "at most 3 characters"),
        ("VARCHAR(10)", "a\x00b", "NUL"),
        ("VARCHAR(10)", "\ud800", "surrogates"),
        ("JSONB", {"a": "x\x00y"}, "\\u0000"),
        ("BOOLEAN", "true", "a boolean"),
        ("UUID", "nope", "a UUID"),
        ("TIMESTAMP", "yesterday", "RFC 3339"),
        ("DATE", "2024-02-29T00:00:00Z", "a date"),
    ],
)
def test_unstorable_values_are_row_errors(sql: str, value: Any, expected: str) -> None:
    with pytest.raises(RowError) as excinfo:
        row([Column("v", sql, True, ("v",))], CUSTOMER, *ROOT, {"v": value})
    assert expected in str(excinfo.value) and "'v'" in str(excinfo.value)
    failure = excinfo.value.failure()
    assert failure["schemaKey"] == CUSTOMER.uri and failure["value"] == value and sql in failure["expected"]
    if isinstance(value, str) and "\ud800" in value:
        return  # a lone surrogate is not JSON-encodable for the schema check below
    assert_valid_badrow([failure])


def test_a_json_backslash_u0000_text_is_not_a_nul() -> None:
    assert row([Column("v", "JSONB", True, ("v",))], CUSTOMER, *ROOT, {"v": "\\u0000"})[7] == '"\\\\u0000"'


def test_copy_line_quotes_every_value() -> None:
    line = copy_line(["a", None, "", 'say "hi"', "tab\there", "line\nbreak", "\\.", "back\\slash"])
    assert line == '"a"\t\t""\t"say ""hi"""\t"tab\there"\t"line\nbreak"\t"\\."\t"back\\slash"\n'


def test_copy_sql_names_meta_and_data_columns() -> None:
    cols = columns(NESTED)
    sql = tables.copy_sql("atomic", "com_acme_customer_1", cols)
    assert sql.startswith('COPY "atomic"."com_acme_customer_1" ("schema_vendor", "schema_name", "schema_format", "schema_version", "root_id", "root_tstamp", "osds_entity_hash", "address.city"')
    assert sql.endswith("FROM STDIN (FORMAT csv, DELIMITER E'\\t', QUOTE '\"', ESCAPE '\"', NULL '')")
    assert tables.copy_sql(None, "stage", cols).startswith('COPY "stage" (')


def test_entity_hash_is_canonical() -> None:
    assert entity_hash(CUSTOMER, {"a": 1, "b": [1, 2]}) == entity_hash(CUSTOMER, {"b": [1, 2], "a": 1})
    assert entity_hash(CUSTOMER, {"a": 1}) != entity_hash(key("iglu:com.acme/customer/jsonschema/1-0-1"), {"a": 1})
    assert entity_hash(CUSTOMER, {"a": 1}) != entity_hash(CUSTOMER, {"a": 1}, 1)
    assert len(entity_hash(CUSTOMER, {})) == 32


def _nested_data_variants() -> list[Any]:
    """Data for NESTED: complete, sparse, nulls, wrong shapes, unstorable values, keys in any order."""
    return [
        {"id": UUID, "address": {"city": "Zürich", "zipCode": "8000", "geo": {"lat": 47.3}}, "billing": {"street": "s"},
         "tags": ["a", {"b": 1}], "optionalObj": {"a": 3}, "nickname": 'q"t'},
        {"nickname": None, "id": UUID, "address": {"geo": {"lat": 1}, "city": "x"}},
        {"address": None, "billing": None, "tags": None},
        {"address": "not an object", "billing": ["street"], "optionalObj": {"a": None}},
        {"address": {"geo": "flat"}, "unknown": 1},
        {},
        "not an object",
        None,
        {"optionalObj": {"a": 2**40}, "nickname": "x" * 21},  # two unstorable values: the error names the first column
        {"nickname": "x" * 21, "address": {"city": "y" * 51}},
        {"id": "not a uuid"},
        {"address": {"geo": {"lat": "north"}}},
    ]


@pytest.mark.parametrize("data", _nested_data_variants())
def test_a_compiled_data_row_gives_what_data_values_gives(data: Any) -> None:
    """DataRow walks the data's keys instead of every column: same values, same first RowError."""
    cols = columns(NESTED)
    compiled = tables.DataRow(cols)
    try:
        expected: Any = tables.data_values(cols, CUSTOMER, data)
    except RowError as exc:
        expected = exc
    if isinstance(expected, RowError):
        for method in (compiled.values, compiled.copy_fields):
            with pytest.raises(RowError) as excinfo:
                method(CUSTOMER, data)
            assert str(excinfo.value) == str(expected) and excinfo.value.failure() == expected.failure()
        return
    assert compiled.values(CUSTOMER, data) == expected
    assert compiled.copy_fields(CUSTOMER, data) == tables.copy_fields(expected)


TEXTS = self_describing(
    "iglu:com.acme/texts/jsonschema/1-0-0",
    {
        "type": "object",
        "properties": {
            "short": {"type": "string", "maxLength": 3},
            "code": {"type": "string", "minLength": 2, "maxLength": 2},
            "free": {"type": "string"},
            "either": {"type": ["string", "null"], "maxLength": 4},
            "count": {"type": "integer", "maximum": 100},
            "inner": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 2}}},
        },
    },
)


def test_a_data_row_checks_strings_inline_as_their_converters_would() -> None:
    """Random values for text columns (the inline path) and others: copy_fields agrees with data_values."""
    import random

    cols = columns(TEXTS)
    compiled = tables.DataRow(cols)
    rng = random.Random(7)
    pieces = ["a", "é", '"', "\t", "\n", "\\", "\x00", "\ud800", "\U0001f600", "x" * 4, "\x01"]
    values: list[Any] = [None, 1, 2.5, True, [], {"name": "ab"}, {"name": "abc"}, ["a"]]
    keys = ["short", "code", "free", "either", "count", "inner", "unknown"]
    checked = failed = 0
    for _ in range(5_000):
        data: dict[str, Any] = {}
        for name in rng.sample(keys, rng.randrange(len(keys) + 1)):
            data[name] = ("".join(rng.choice(pieces) for _ in range(rng.randrange(4))) if rng.random() < 0.7
                          else rng.choice(values))
        try:
            expected: Any = tables.data_values(cols, CUSTOMER, data)
        except RowError as exc:
            with pytest.raises(RowError) as excinfo:
                compiled.copy_fields(CUSTOMER, data)
            assert excinfo.value.failure() == exc.failure(), data
            failed += 1
            continue
        assert compiled.copy_fields(CUSTOMER, data) == tables.copy_fields(expected), data
        checked += 1
    assert checked > 1_000 and failed > 1_000  # both paths, many times


def _random_json(rng: Any, depth: int = 0) -> Any:
    import struct

    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:  # any double: every exponent, subnormals, huge
        value = struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0]
        return value if value == value else 0.5  # NaN is not JSON
    if kind == 1:
        return rng.random() * 10 ** rng.randint(-12, 22) * rng.choice((1, -1))
    if kind == 2:
        return rng.choice((0, -1, 2**63 - 1, 2**64, -(2**63) - 1, 10**30, rng.randint(-(10**6), 10**6)))
    if kind == 3:
        return rng.choice((True, False, None))
    if kind in (4, 5):
        alphabet = [chr(rng.randrange(0x80)), chr(rng.randrange(0x80, 0x3000)), chr(rng.randrange(0x10000, 0x110000)),
                    "e-", "e1", "0.0000", "null", "\ud800", '"', "\\", "\u2028"]
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(6)))
    if kind in (6, 7):
        return {str(_random_json(rng, 3)): _random_json(rng, depth + 1) for _ in range(rng.randrange(5))}
    return [_random_json(rng, depth + 1) for _ in range(rng.randrange(4))]


def test_canonical_json_is_the_standard_librarys_text() -> None:
    """Entity hashes are taken of this text: the fast encoder must never change a byte of it."""
    import random

    rng = random.Random(5)
    values = [_random_json(rng) for _ in range(20_000)]
    values += [1e16, 1.5e16, 9999999999999998.0, 1e-5, 0.0001, 0.00012, -0.0, 5.0, 1e22, 5e-324, 2.5e-308]
    for value in values:
        try:
            expected = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except ValueError:
            with pytest.raises(ValueError):
                canonical_json(value)
            continue
        assert canonical_json(value) == expected, value
        assert canonical_json(value, finite=True) == expected, value  # no NaN or infinity among these


@pytest.mark.parametrize("value", [float("inf"), {"a": [float("-inf")]}, float("nan")])
def test_canonical_json_refuses_what_json_cannot_hold(value: Any) -> None:
    with pytest.raises(ValueError):
        canonical_json(value)
