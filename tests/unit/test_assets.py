from __future__ import annotations

import pytest

from airflow_osds.assets import TableRef, parse_table, table_asset, table_asset_name, table_asset_uri, table_ref_from_uri


def test_parse_table_defaults_schema_and_lowercases() -> None:
    assert parse_table("Orders", conn_id="dwh") == TableRef("dwh", "public", "orders")
    assert parse_table('raw."Orders"', conn_id="dwh") == TableRef("dwh", "raw", "Orders")  # quoted: case kept


@pytest.mark.parametrize("bad", ["", "a.b.c", ".t", "s."])
def test_parse_table_rejects_non_tables(bad: str) -> None:
    with pytest.raises(ValueError, match="is not a table name"):
        parse_table(bad, conn_id="dwh")


def test_names_are_stable_and_round_trip() -> None:
    ref = parse_table("Analytics.Orders_Daily", conn_id="warehouse")
    assert table_asset_name(ref) == "warehouse.analytics.orders_daily"
    assert table_asset_uri(ref) == "osds://warehouse/analytics/orders_daily"
    assert table_ref_from_uri(table_asset_uri(ref)) == ref
    assert table_ref_from_uri("s3://bucket/key") is None


def test_table_asset_is_an_airflow_asset_with_the_same_identity() -> None:
    ref = TableRef("warehouse", "raw", "orders")
    a, b = table_asset(ref), table_asset(parse_table("RAW.Orders", conn_id="warehouse"))
    assert a == b
    assert (a.name, a.uri, a.group) == ("warehouse.raw.orders", "osds://warehouse/raw/orders", "table")
