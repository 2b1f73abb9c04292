"""The field table and the atomic.events DDL, against the reference's field list and Snowplow's payload schema."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from airflow_osds.snowplow.fields import (
    ATOMIC_COLUMNS,
    ATOMIC_FIELDS,
    ATOMIC_INDEXES,
    FIELD_INDEX,
    FIELD_NAMES,
    FIELDS,
    JSON_FIELDS,
    events_table_sql,
    quote_ident,
)

from pathlib import Path

# The field list of Snowplow enrich 6.10.0 (ConversionUtils.tabSeparatedEnrichedEvent), as data.
REFERENCE = Path(__file__).resolve().parents[2] / "data" / "snowplow" / "enriched-fields.txt"
PAYLOAD_SCHEMA = "schemas/com.snowplowanalytics.snowplow.badrows/loader_iglu_error/jsonschema/2-0-1"


def reference_field_order() -> list[str]:
    """``1 app_id; 2 platform; …`` from the field list."""
    block = "\n".join(line for line in REFERENCE.read_text().splitlines() if not line.startswith("#"))
    numbered = re.findall(r"(\d+) ([a-z_]+)", block)
    assert [int(n) for n, _ in numbered] == list(range(1, 132))
    return [name for _, name in numbered]


def test_the_131_fields_in_enrich_order() -> None:
    assert list(FIELD_NAMES) == reference_field_order()
    assert [f.index for f in FIELDS] == list(range(131))
    assert all(FIELD_INDEX[f.name] == f.index for f in FIELDS)


def test_json_fields_are_not_columns() -> None:
    assert JSON_FIELDS == ("contexts", "unstruct_event", "derived_contexts")
    assert [FIELD_INDEX[name] for name in JSON_FIELDS] == [52, 58, 122]
    assert {f.name for f in FIELDS if f.kind == "json"} == set(JSON_FIELDS)
    assert len(ATOMIC_FIELDS) == 128 and not set(ATOMIC_COLUMNS) & set(JSON_FIELDS)
    assert list(ATOMIC_COLUMNS) == [n for n in FIELD_NAMES if n not in JSON_FIELDS]
    assert list(ATOMIC_INDEXES) == sorted(ATOMIC_INDEXES)


def test_required_fields() -> None:
    assert {f.name for f in FIELDS if f.required} == {"collector_tstamp", "event_id", "v_collector", "v_etl"}


def test_kinds_and_lengths_agree_with_snowplows_payload_schema(iglu_central: Path) -> None:
    # An independent source: the event payload of loader_iglu_error 2-0-1 lists every field with its type.
    properties = json.loads((iglu_central / PAYLOAD_SCHEMA).read_text())["properties"]["payload"]["properties"]
    assert set(properties) == set(FIELD_NAMES)
    json_type = {"int": "integer", "float": "number", "bool": "boolean", "json": "object"}
    for f in FIELDS:
        prop = properties[f.name]
        types = prop["type"] if isinstance(prop["type"], list) else [prop["type"]]
        assert ("null" in types) != f.required, f.name
        if f.kind == "tstamp":
            assert prop.get("format") == "date-time" and "string" in types, f.name
        elif f.kind in ("text", "uuid"):
            assert "string" in types and "format" not in prop, f.name
            # The column may be narrower than Snowplow's payload allows, never wider.
            assert (f.max_length or 36) <= prop["maxLength"], f.name
        else:
            assert json_type[f.kind] in types, f.name


def _columns(sql: str) -> dict[str, str]:
    body = sql[sql.index("(\n") + 2 : sql.rindex("\n)")]
    columns = {}
    for line in body.split(",\n"):
        match = re.fullmatch(r'    "([a-z_]+)" (.+)', line)
        assert match, line
        columns[match[1]] = match[2]
    return columns


def test_events_ddl_is_the_postgres_loaders() -> None:
    sql = events_table_sql()
    assert sql.startswith('CREATE TABLE IF NOT EXISTS "atomic"."events" (\n')
    columns = _columns(sql)
    assert list(columns) == list(ATOMIC_COLUMNS)
    not_null = {name for name, ddl in columns.items() if ddl.endswith(" NOT NULL")}
    assert not_null == {"collector_tstamp", "event_id", "v_collector", "v_etl"}
    types = {name: ddl.removesuffix(" NOT NULL") for name, ddl in columns.items()}
    # Reference §1.3: the loader's atomicColumns and its 0-3-0 migration.
    assert {n for n, t in types.items() if t == "TIMESTAMP"} == {
        "etl_tstamp", "collector_tstamp", "dvce_created_tstamp", "dvce_sent_tstamp",
        "refr_dvce_tstamp", "derived_tstamp", "true_tstamp",
    }  # fmt: skip
    assert {n for n, t in types.items() if t == "UUID"} == {"event_id"}
    assert {n for n, t in types.items() if t.startswith("CHAR(")} == {
        "geo_country", "geo_region", "tr_currency", "ti_currency", "base_currency",
    }  # fmt: skip
    assert types["geo_country"] == "CHAR(2)" and types["base_currency"] == "CHAR(3)"
    for name in ("user_ipaddress", "domain_userid", "network_userid", "refr_domain_userid", "domain_sessionid"):
        assert types[name] == "VARCHAR(128)", name
    for name in ("se_value", "tr_total", "tr_tax", "tr_shipping", "ti_price", "tr_total_base", "ti_price_base", "geo_latitude"):  # fmt: skip
        assert types[name] == "DOUBLE PRECISION", name
    assert {n for n, t in types.items() if t == "BOOLEAN"} == {
        *(f"br_features_{x}" for x in ("pdf", "flash", "java", "director", "quicktime", "realplayer", "windowsmedia", "gears", "silverlight")),
        "br_cookies", "dvce_ismobile",
    }  # fmt: skip
    expected_sizes = {
        "page_url": 4096, "page_title": 2000, "page_urlpath": 3000, "page_urlquery": 6000, "refr_urlpath": 6000,
        "refr_medium": 25, "refr_source": 50, "mkt_content": 500, "mkt_term": 255, "geo_city": 75, "geo_zipcode": 15,
        "br_colordepth": 12, "geo_timezone": 64, "mkt_network": 64, "etl_tags": 500, "event_vendor": 1000,
        "useragent": 1000, "v_tracker": 100, "ip_isp": 100, "os_timezone": 50, "event_fingerprint": 128,
    }  # fmt: skip
    for name, size in expected_sizes.items():
        assert types[name] == f"VARCHAR({size})", name
    assert "PRIMARY KEY" not in sql and "INDEX" not in sql.upper()


def test_identifiers_are_quoted() -> None:
    assert quote_ident('we"ird') == '"we""ird"'
    assert events_table_sql('My"Schema').startswith('CREATE TABLE IF NOT EXISTS "My""Schema"."events" (')
    with pytest.raises(ValueError):
        quote_ident("a\x00b")


def test_field_is_frozen() -> None:
    with pytest.raises(AttributeError):
        FIELDS[0].name = "x"  # type: ignore[misc]
