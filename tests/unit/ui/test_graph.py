"""The data-stack view's graph (airflow_osds/ui/graph.py), from the pipelines of tests/unit/ui/_project.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_osds.ui.graph import add_state, asset_names, dag_ids, layered_layout, stack_graph
from tests.unit.ui._project import write_pipelines


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_pipelines(tmp_path / "pipelines")


def test_nodes_are_the_pipelines_and_the_data_between_them(folder: Path) -> None:
    graph = stack_graph(folder, default_warehouse="warehouse")
    kinds = {node["id"]: node["kind"] for node in graph["nodes"]}
    assert kinds == {
        "pipeline:orders": "pipeline",
        "pipeline:publish": "pipeline",
        "pipeline:stats": "pipeline",
        "warehouse.shop.orders": "table",
        "warehouse.shop.order_stats": "table",
        "dashboard:bi/sales": "dashboard",
        "destination:crm/stats": "destination",
    }
    pipelines = {n["dag_id"]: n for n in graph["nodes"] if n["kind"] == "pipeline"}
    assert pipelines["stats"]["schedule"] == "data: all" and pipelines["orders"]["schedule"] == ""
    assert pipelines["publish"]["file"] == "publish.yml"
    orders = next(n for n in graph["nodes"] if n["id"] == "warehouse.shop.orders")
    # The Asset's name and URI are assets.py's, which the DAGs register.
    assert (orders["asset_name"], orders["asset_uri"]) == ("warehouse.shop.orders", "osds://warehouse/shop/orders")
    assert sorted(dag_ids(graph)) == ["orders", "publish", "stats"]
    assert sorted(asset_names(graph)) == sorted(n for n, k in kinds.items() if k != "pipeline")


def test_edges_say_who_writes_reads_and_what_triggers_a_run(folder: Path) -> None:
    graph = stack_graph(folder, default_warehouse="warehouse")
    assert sorted((e["from"], e["to"], e["kind"]) for e in graph["edges"]) == sorted([
        ("pipeline:orders", "warehouse.shop.orders", "writes"),
        ("warehouse.shop.orders", "pipeline:stats", "triggers"),  # stats' schedule: data waits for it
        ("pipeline:stats", "warehouse.shop.order_stats", "writes"),
        ("warehouse.shop.order_stats", "pipeline:publish", "reads"),  # read, but publish runs on no data
        ("pipeline:publish", "dashboard:bi/sales", "writes"),
        ("pipeline:publish", "destination:crm/stats", "writes"),
    ])


def test_a_broken_file_is_listed_with_its_position_and_hides_nothing(folder: Path) -> None:
    graph = stack_graph(folder, default_warehouse="warehouse")
    (error,) = graph["errors"]
    assert (error["file"], error["line"], error["column"]) == ("broken.yml", 4, 5)
    assert "did you mean" in error["message"]
    assert "pipeline:broken" not in {n["id"] for n in graph["nodes"]}
    assert len(dag_ids(graph)) == 3


def test_the_layout_follows_the_data_left_to_right(folder: Path) -> None:
    graph = stack_graph(folder, default_warehouse="warehouse")
    at = {n["id"]: (n["layer"], n["row"]) for n in graph["nodes"]}
    for edge in graph["edges"]:
        assert at[edge["from"]][0] < at[edge["to"]][0], edge
    assert len(set(at.values())) == len(at), "two nodes in one place"
    assert at["pipeline:orders"][0] == 0 and at["pipeline:publish"][0] == 4


def test_layout_survives_a_cycle_of_reads() -> None:
    # a writes x and reads y, b writes y and reads x: legal when neither is data-scheduled.
    nodes = ["a", "b", "x", "y"]
    at = layered_layout(nodes, [("a", "x"), ("x", "b"), ("b", "y"), ("y", "a")])
    assert [at[n][0] for n in ("a", "x", "b", "y")] == [0, 1, 2, 3]  # the edge y → a closes the cycle
    assert layered_layout([], []) == {}


def test_rows_put_a_node_next_to_its_inputs() -> None:
    at = layered_layout(["p", "q", "t_q", "t_p"], [("p", "t_p"), ("q", "t_q")])
    assert at["p"][1] == at["t_p"][1] and at["q"][1] == at["t_q"][1]


def test_state_adds_runs_events_and_links_into_airflows_ui(folder: Path) -> None:
    graph = stack_graph(folder, default_warehouse="warehouse")
    run = {"run_id": "manual__2026-12-03T07:00:00+00:00", "state": "success", "run_type": "manual",
           "run_after": "2026-12-03T07:00:00+00:00", "end_date": "2026-12-03T07:00:09+00:00"}
    event = {"timestamp": "2026-12-03T07:00:08+00:00", "source_dag_id": "orders", "source_run_id": run["run_id"],
             "source_task_id": "load"}
    shown = add_state(graph, runs={"orders": run}, assets={"warehouse.shop.orders": {"id": 7, "last_event": event}},
                      ui_root="/airflow")
    nodes = {n["id"]: n for n in shown["nodes"]}
    orders = nodes["pipeline:orders"]
    assert orders["href"] == "/airflow/dags/orders"
    assert orders["last_run"]["state"] == "success"
    assert orders["last_run"]["href"] == "/airflow/dags/orders/runs/manual__2026-12-03T07%3A00%3A00%2B00%3A00"
    assert nodes["pipeline:stats"]["last_run"] is None
    table = nodes["warehouse.shop.orders"]
    assert (table["asset_id"], table["href"], table["last_event"]) == (7, "/airflow/assets/7", event)
    # An Asset no DAG registered yet has no page to link to.
    stats = nodes["warehouse.shop.order_stats"]
    assert (stats["asset_id"], stats["href"], stats["last_event"]) == (None, None, None)
    assert shown["edges"] == graph["edges"] and shown["errors"] == graph["errors"]
    assert "last_run" not in graph["nodes"][0], "add_state must not change its input"
