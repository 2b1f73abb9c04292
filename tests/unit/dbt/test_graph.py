"""Ordering of selected nodes (through ephemeral/unselected ones) and grouping per granularity."""

from __future__ import annotations

import sys

import pytest

from airflow_osds.dbt.artifacts import Manifest
from airflow_osds.dbt.errors import DbtGraphError
from airflow_osds.dbt.graph import group_nodes, render_nodes
from airflow_osds.dbt.selection import select_nodes

from .conftest import manifest_of, node


def short(uids: object) -> list[str]:
    return [u.split(".")[2] for u in uids]  # type: ignore[attr-defined]


def test_renders_runnable_nodes_in_dependency_order(manifest: Manifest) -> None:
    rendered = render_nodes(manifest, select_nodes(manifest))
    order = list(rendered)
    assert "model.shop.int_order_totals" not in rendered  # ephemeral: nothing runs
    assert all(t.startswith("test.") for n in rendered.values() for t in n.tests)
    for uid, n in rendered.items():
        assert all(order.index(up) < order.index(uid) for up in n.upstream), uid
    assert len(rendered) == 9


def test_connects_through_the_ephemeral_model(manifest: Manifest) -> None:
    rendered = render_nodes(manifest, select_nodes(manifest))
    totals = rendered["model.shop.customer_totals"]
    assert sorted(short(totals.upstream)) == ["stg_customers", "stg_orders"]  # stg_orders via int_order_totals
    assert totals.relation == ("marts", "customer_totals_v1")
    assert totals.kind == "model" and totals.materialized == "table" and totals.tags == ("finance",)
    assert totals.selector == "fqn:shop.marts.customer_totals,file:customer_totals.sql,package:shop"
    assert short(totals.tests) == ["unique_customer_totals_customer_id"]


def test_connects_through_unselected_nodes(manifest: Manifest) -> None:
    rendered = render_nodes(manifest, select_nodes(manifest, "raw_orders customer_totals"))
    assert short(rendered) == ["raw_orders", "customer_totals"]
    assert short(rendered["model.shop.customer_totals"].upstream) == ["raw_orders"]


def test_tests_of_unrendered_nodes_are_dropped() -> None:
    m = manifest_of(
        node("model.p.e", materialized="ephemeral"),
        node("test.p.e_check", deps=("model.p.e",), attached="model.p.e"),
        node("model.p.a"),
        node("model.p.b", deps=("model.p.a",)),
        node("test.p.a_vs_b", deps=("model.p.b", "model.p.a")),  # singular: no attached node
    )
    rendered = render_nodes(m, set(m.nodes) | {"source.p.unknown"})
    assert short(rendered) == ["a", "b"]
    assert short(rendered["model.p.b"].tests) == ["a_vs_b"]  # the last-built of its parents
    assert rendered["model.p.a"].tests == ()


def test_cycle_is_an_error() -> None:
    m = manifest_of(node("model.p.a", deps=("model.p.b",)), node("model.p.b", deps=("model.p.a",)))
    with pytest.raises(DbtGraphError, match="cycle"):
        render_nodes(m, m.nodes)
    m = manifest_of(
        node("model.p.a", deps=("model.p.e2",)),
        node("model.p.e1", deps=("model.p.e2",), materialized="ephemeral"),
        node("model.p.e2", deps=("model.p.e1",), materialized="ephemeral"),
    )
    with pytest.raises(DbtGraphError, match="cycle"):
        render_nodes(m, m.nodes)


def test_long_chain_does_not_recurse() -> None:
    # Every other model ephemeral: the walk connects through 2,500 ephemeral links, under a
    # recursion limit far below the chain's length (a recursive walk would raise).
    n = 5000
    nodes = [node("model.p.m0")] + [
        node(f"model.p.m{i}", deps=(f"model.p.m{i - 1}",), materialized="ephemeral" if i % 2 else "table")
        for i in range(1, n)
    ]
    m = manifest_of(*nodes)
    selected = select_nodes(m)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(300)
    try:
        rendered = render_nodes(m, selected)
    finally:
        sys.setrecursionlimit(limit)
    assert len(rendered) == n // 2
    assert short(rendered["model.p.m4998"].upstream) == ["m4996"]


class TestGroups:
    def test_model(self, manifest: Manifest) -> None:
        rendered = render_nodes(manifest, select_nodes(manifest))
        groups = group_nodes(rendered, "model")
        assert list(groups) == list(rendered)
        g = groups["model.shop.customer_totals"]
        assert g.nodes == ("model.shop.customer_totals",) and g.selectors == ("fqn:shop.marts.customer_totals,file:customer_totals.sql,package:shop",)
        assert g.upstream == rendered["model.shop.customer_totals"].upstream

    def test_folder(self, manifest: Manifest) -> None:
        rendered = render_nodes(manifest, select_nodes(manifest))
        groups = group_nodes(rendered, "folder")
        assert list(groups) == ["seeds", "models/staging", "models/marts", "snapshots"]
        assert {k: sorted(g.upstream) for k, g in groups.items()} == {
            "seeds": [],
            "models/staging": ["seeds"],
            "models/marts": ["models/staging"],
            "snapshots": ["models/staging"],
        }
        assert short(groups["models/marts"].nodes) == ["events_daily", "customer_totals", "orders_enriched"]
        assert len(groups["models/staging"].tests) == 4

    def test_folder_depth(self) -> None:
        m = manifest_of(
            node("model.p.a", path="models/web/raw/a.sql"),
            node("model.p.b", path="models/web/clean/b.sql", deps=("model.p.a",)),
            node("model.p.c", path="models/web/raw/c.sql", deps=("model.p.b",)),
        )
        rendered = render_nodes(m, m.nodes)
        assert list(group_nodes(rendered, "folder")) == ["models/web"]
        # web/raw → web/clean → web/raw is a cycle between depth-2 folders
        with pytest.raises(DbtGraphError, match="folder groups depend on each other in a cycle"):
            group_nodes(rendered, "folder", folder_depth=2)
        with pytest.raises(ValueError, match="folder_depth"):
            group_nodes(rendered, "folder", folder_depth=0)

    def test_project(self, manifest: Manifest) -> None:
        rendered = render_nodes(manifest, select_nodes(manifest))
        (group,) = group_nodes(rendered, "project").values()
        assert group.group_id == "project" and group.nodes == tuple(rendered) and group.upstream == frozenset()
        assert len(group.tests) == 6

    def test_unknown_granularity(self, manifest: Manifest) -> None:
        with pytest.raises(ValueError, match="granularity"):
            group_nodes({}, "schema")  # type: ignore[arg-type]

    def test_selector_groups_follow_the_assignment(self, manifest: Manifest) -> None:
        rendered = render_nodes(manifest, select_nodes(manifest))
        assignment = {uid: ("loading" if uid.startswith("seed.") else "models") for uid in rendered}
        groups = group_nodes(rendered, "selector", assignment=assignment)
        assert list(groups) == ["loading", "models"]
        assert groups["models"].upstream == frozenset({"loading"})
        with pytest.raises(DbtGraphError, match="nodes in no selector group"):
            group_nodes(rendered, "selector", assignment={})
