"""dbt selection syntax over the real fixture manifest (expectations match `dbt ls` semantics)."""

from __future__ import annotations

import json

import pytest

from airflow_osds.dbt.artifacts import Manifest
from airflow_osds.dbt.errors import DbtSelectionError
from airflow_osds.dbt.selection import SelectorAtom, parse_selectors, select_nodes

from .conftest import DATA, manifest_of, node

STG_TESTS = {
    "not_null_stg_customers_customer_id",
    "unique_stg_customers_customer_id",
    "not_null_stg_orders_order_id",
    "unique_stg_orders_order_id",
}


def names(ids: frozenset[str]) -> set[str]:
    return {uid.split(".")[2] for uid in ids}


@pytest.mark.parametrize(
    ("select", "expected"),
    [
        # bare name = fqn leaf; its tests follow it
        ("customer_totals", {"customer_totals", "unique_customer_totals_customer_id"}),
        ("fqn:stg_events", {"stg_events"}),
        # fqn prefixes and wildcards
        ("shop.marts", {"customer_totals", "events_daily", "int_order_totals", "orders_enriched",
                        "unique_customer_totals_customer_id", "not_null_orders_enriched_first_name"}),
        ("raw_*", {"raw_customers", "raw_orders"}),
        # path: directory (with or without trailing slash) and file
        ("path:models/staging", {"stg_customers", "stg_orders", "stg_events"} | STG_TESTS),
        ("path:models/staging/", {"stg_customers", "stg_orders", "stg_events"} | STG_TESTS),
        ("models/marts/orders_enriched.sql", {"orders_enriched", "not_null_orders_enriched_first_name"}),
        ("path:models/*/stg_e*.sql", {"stg_events"}),
        ("path:seeds", {"raw_customers", "raw_orders"}),
        # file name or stem
        ("file:customer_totals", {"customer_totals", "unique_customer_totals_customer_id"}),
        ("customer_totals.sql", {"customer_totals", "unique_customer_totals_customer_id"}),
        # tags: from dbt_project.yml folders and from config()
        ("tag:daily", {"stg_customers", "stg_orders", "stg_events", "events_daily"} | STG_TESTS),
        ("tag:finance", {"customer_totals", "unique_customer_totals_customer_id"}),
        # sources are selectable but never in the result
        ("source:snowplow+", {"stg_events", "events_daily"}),
        ("source:snowplow.events+1", {"stg_events"}),
        ("source:shop.snowplow.events+", {"stg_events", "events_daily"}),
        ("resource_type:snapshot", {"customers_snapshot"}),
        ("config.materialized:ephemeral", {"int_order_totals"}),
        ("package:shop,resource_type:seed", {"raw_customers", "raw_orders"}),
        # graph operators; ancestors are reached through the ephemeral model
        ("+customer_totals", {"customer_totals", "int_order_totals", "stg_customers", "stg_orders",
                              "raw_customers", "raw_orders", "unique_customer_totals_customer_id"} | STG_TESTS),
        ("1+customer_totals", {"customer_totals", "int_order_totals", "stg_customers",
                               "unique_customer_totals_customer_id", "not_null_stg_customers_customer_id",
                               "unique_stg_customers_customer_id"}),
        ("stg_orders+", {"stg_orders", "int_order_totals", "customer_totals", "orders_enriched",
                         "not_null_stg_orders_order_id", "unique_stg_orders_order_id",
                         "unique_customer_totals_customer_id", "not_null_orders_enriched_first_name"}),
        ("raw_orders+1", {"raw_orders", "stg_orders", "not_null_stg_orders_order_id", "unique_stg_orders_order_id"}),
        ("+stg_events+", {"stg_events", "events_daily"}),
        ("@stg_customers", {"stg_customers", "raw_customers", "customers_snapshot", "orders_enriched",
                            "customer_totals", "int_order_totals", "stg_orders", "raw_orders",
                            "unique_customer_totals_customer_id", "not_null_orders_enriched_first_name"} | STG_TESTS),
        # intersection and union
        ("tag:daily,path:models/marts", {"events_daily"}),
        ("tag:daily,tag:events", {"stg_events", "events_daily"}),
        ("customer_totals orders_enriched", {"customer_totals", "orders_enriched",
                                             "unique_customer_totals_customer_id",
                                             "not_null_orders_enriched_first_name"}),
        # a test can be selected by name
        ("not_null_orders_enriched_first_name", {"not_null_orders_enriched_first_name"}),
    ],
)
def test_selector(manifest: Manifest, select: str, expected: set[str]) -> None:
    assert names(select_nodes(manifest, select)) == expected


def test_default_selects_everything_runnable(manifest: Manifest) -> None:
    selected = select_nodes(manifest)
    assert selected == frozenset(manifest.nodes)  # every model, seed, snapshot and test
    assert select_nodes(manifest, []) == selected


def test_list_is_a_union(manifest: Manifest) -> None:
    assert select_nodes(manifest, ["tag:finance", "raw_orders"]) == select_nodes(manifest, "tag:finance raw_orders")


def test_exclude(manifest: Manifest) -> None:
    got = names(select_nodes(manifest, "path:models", exclude="tag:daily"))
    assert got == {"customer_totals", "int_order_totals", "orders_enriched",
                   "unique_customer_totals_customer_id", "not_null_orders_enriched_first_name"}
    # excluding a model drops its tests; excluding a test keeps its model
    assert names(select_nodes(manifest, "stg_orders", exclude=["stg_orders"])) == set()
    assert names(select_nodes(manifest, "stg_orders", exclude="unique_stg_orders_order_id")) == {
        "stg_orders", "not_null_stg_orders_order_id"}
    # graph operators work in exclude, and an exclude matching nothing is fine
    assert names(select_nodes(manifest, "+customer_totals", exclude="+stg_orders")) == {
        "customer_totals", "int_order_totals", "stg_customers", "raw_customers",
        "unique_customer_totals_customer_id", "not_null_stg_customers_customer_id", "unique_stg_customers_customer_id"}
    assert select_nodes(manifest, "raw_orders", exclude="tag:nothing") == select_nodes(manifest, "raw_orders")


@pytest.mark.parametrize(
    ("select", "message"),
    [
        ("result:error", "selector method 'result:' is not supported; supported: methods fqn:"),
        ("result:error+", "'result:' is not supported"),
        ("config.schema:marts", "'config.schema:' is not supported"),
        ("tag:a,,tag:b", "empty selector around ','"),
        ("+", "cannot parse '\\+'"),
        ("tag:", "cannot parse 'tag:'"),
        ("a+b", "cannot parse 'a\\+b'"),
        ("@+orders", "combines '@' with a leading '\\+'"),
    ],
)
def test_unsupported_syntax(manifest: Manifest, select: str, message: str) -> None:
    with pytest.raises(DbtSelectionError, match=message) as info:
        select_nodes(manifest, select)
    assert info.value.selector == select
    # the same errors come out of parsing alone, before any manifest exists
    with pytest.raises(DbtSelectionError):
        parse_selectors(select)


def test_non_string_selector() -> None:
    with pytest.raises(DbtSelectionError, match="must be strings"):
        parse_selectors([1])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("select", "hint"),
    [
        ("tag:dayly", "did you mean 'daily'"),
        ("customer_total", "did you mean 'customer_totals'"),
        ("path:models/stagin", "did you mean 'models/staging'"),
        ("source:snowplo.events", "did you mean 'snowplow.events'"),
        ("tag:daily,tag:finance", "matches no model"),
    ],
)
def test_matching_nothing_is_an_error_with_a_hint(manifest: Manifest, select: str, hint: str) -> None:
    with pytest.raises(DbtSelectionError, match=hint):
        select_nodes(manifest, ["raw_orders", select])
    assert names(select_nodes(manifest, ["raw_orders", select], strict=False)) == {"raw_orders"}


def test_parse_selectors() -> None:
    (term,) = parse_selectors("2+tag:daily,path:models/x/+")
    assert term.atoms == (
        SelectorAtom("2+tag:daily", "tag", "daily", parents_depth=2),
        SelectorAtom("path:models/x/+", "path", "models/x", children_depth=-1),
    )
    assert [t.text for t in parse_selectors(["a b", " c "])] == ["a", "b", "c"]
    assert parse_selectors(None) == ()
    assert parse_selectors("@x")[0].atoms[0].childrens_parents


def test_test_without_attached_node_follows_when_all_parents_are_selected() -> None:
    m = manifest_of(
        node("model.p.a"),
        node("model.p.b"),
        node("test.p.a_matches_b", deps=("model.p.a", "model.p.b")),
    )
    assert names(select_nodes(m, "a")) == {"a"}
    assert names(select_nodes(m, "a b")) == {"a", "b", "a_matches_b"}


_DBT_LS = json.loads((DATA / "dbt_ls_expected.json").read_text())


@pytest.mark.parametrize("case", _DBT_LS, ids=[f"{c['select']}|{c['exclude']}" for c in _DBT_LS])
def test_agrees_with_dbt_ls(manifest: Manifest, case: dict[str, object]) -> None:
    """The same selection as dbt-core's own ``dbt ls`` (recorded by data/regenerate.py)."""
    got = select_nodes(manifest, str(case["select"]), str(case["exclude"]) or None)
    assert sorted(got) == case["unique_ids"]
