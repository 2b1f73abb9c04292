"""The `superset` block through Airflow's task runner against the session's real Superset 6.1.0: a pipeline
that rebuilds a table refreshes the charts over it (found through datasets, warmed so the next chart-data
request is served from cache), a dashboard named by slug gets an Asset event with the counts, and a chart
that the rebuild broke fails the step with its error, or only warns when told to."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_osds.superset import LocalSuperset
from airflow_osds.superset.client import SupersetClient
from airflow_osds.superset.provision import TableChart, ensure_chart, ensure_dataset
from tests.e2e.test_snowplow_step import _asset_events, _return_value
from tests.superset_server import add_warehouse_database

PIPELINE = """\
pipeline: {dag_id}
schedule: "@daily"
start_date: 2026-01-01
steps:
  rebuild:
    sql: |
      DROP TABLE IF EXISTS marts.{table};
      CREATE TABLE marts.{table} AS SELECT {columns} FROM generate_series(1, 6) AS i;
  refresh:
    superset: {superset}
"""


@pytest.fixture
def client(superset: LocalSuperset, monkeypatch: pytest.MonkeyPatch) -> Iterator[SupersetClient]:
    monkeypatch.setenv("AIRFLOW_CONN_SUPERSET_E2E", json.dumps(superset.airflow_connection()))
    with SupersetClient(superset.base_url, *superset.admin, timeout=60) as session:
        yield session



def _pipelines(tmp_path: Path, dag_id: str, table: str, columns: str, superset: str) -> Path:
    folder = tmp_path / dag_id
    folder.mkdir()
    (folder / f"{dag_id}.yml").write_text(PIPELINE.format(dag_id=dag_id, table=table, columns=columns,
                                                          superset=superset))
    return folder


def _board(client: SupersetClient, warehouse: Any, tag: str) -> tuple[str, int, int]:
    """marts.sales_<tag> (region, i), its dataset, a dashboard `sales-<tag>` and a chart on it by region."""
    table = f"sales_{tag}"
    warehouse.execute(f"CREATE SCHEMA IF NOT EXISTS marts; CREATE TABLE marts.{table} AS "
                      "SELECT 'north' AS region, 1 AS i")
    dataset = ensure_dataset(client, add_warehouse_database(client, warehouse, f"wh_e2e_{tag}"), "marts", table)
    board = client.post("/api/v1/dashboard/", {"dashboard_title": f"Sales {tag}", "slug": f"sales-{tag}",
                                               "published": True})["id"]
    return table, board, ensure_chart(client, TableChart(f"sales by region {tag}", dataset, "region"), [board])


def test_the_charts_over_what_the_pipeline_rebuilt_are_warmed_after_it(
    warehouse: Any, client: SupersetClient, pipeline_dags: Any, run_dag: Any, tmp_path: Path, capfd: Any
) -> None:
    tag = uuid.uuid4().hex[:8]
    table, board, chart = _board(client, warehouse, tag)
    dag_id = f"superset_e2e_{tag}"
    dag = pipeline_dags(_pipelines(tmp_path, dag_id, table, "CASE WHEN i % 2 = 0 THEN 'north' ELSE 'south' END "
                                   "AS region, i", "{connection: superset_e2e, concurrency: 2}"))[dag_id]
    assert dag.task_dict["refresh"].upstream_task_ids == {"rebuild"}, "wired after the step writing its table"

    result = run_dag(dag)
    assert result.state == "success", result
    value = _return_value(dag_id, "refresh")
    assert (value["warmed"], value["failed"], value["dashboards"]) == (1, 0, [f"sales-{tag}"])
    assert [(c["id"], c["dataset"], c["ok"]) for c in value["charts"]] == [(chart, f"marts.{table}", True)]
    data = client.get(f"/api/v1/chart/{chart}/data/")["result"][0]
    assert data["is_cached"] is True, "the next chart-data request is served from the warm cache"
    assert sorted(r["region"] for r in data["data"]) == ["north", "south"], "warmed with the rebuilt rows"
    log = "".join(capfd.readouterr())
    assert "1 chart(s) warmed, 0 failed" in log and f"{chart} sales by region {tag}" in log
    # Only a table was named: the dashboard its chart sits on gets its Asset event through the alias.
    assert [o.name for o in dag.task_dict["refresh"].outlets] == ["dashboards:superset_e2e"]
    assert _asset_events(dag_id, f"sales-{tag}") == [{"warmed": 1, "failed": 0}]


def test_a_chart_the_rebuild_broke_fails_the_step_with_its_error_or_warns(
    warehouse: Any, client: SupersetClient, pipeline_dags: Any, run_dag: Any, tmp_path: Path, capfd: Any
) -> None:
    tag = uuid.uuid4().hex[:8]
    table, board, chart = _board(client, warehouse, tag)
    # The rebuild drops the `region` column the chart groups by, and adds `channel`.
    columns = "i, 'web' AS channel"
    strict = f"strict_{tag}"
    dag = pipeline_dags(_pipelines(tmp_path, strict, table, columns,
                                   f"{{connection: superset_e2e, dashboards: [sales-{tag}]}}"))[strict]
    assert [getattr(o, "uri", o.name) for o in dag.task_dict["refresh"].outlets] == [
        f"osds+dashboard://superset_e2e/sales-{tag}", "dashboards:superset_e2e"]
    failed = run_dag(dag)
    assert failed.task_states["refresh"] == "failed", failed
    log = "".join(capfd.readouterr())
    assert "1 of 1 Superset chart(s) failed to refresh" in log
    assert 'column "region" does not exist' in log
    assert _asset_events(strict, f"sales-{tag}") == [], "a failed refresh announces no refreshed dashboard"

    lenient = f"lenient_{tag}"
    dag = pipeline_dags(_pipelines(tmp_path, lenient, table, columns, f"{{connection: superset_e2e, dashboards: "
                                   f"[Sales {tag}], on_chart_error: warn, refresh_columns: true}}"))[lenient]
    warned = run_dag(dag)
    assert warned.state == "success", warned
    log = "".join(capfd.readouterr())
    assert f"dataset marts.{table}: columns added ['channel'], removed ['region']" in log
    # Superset now knows the dataset has no `region`: the chart fails before querying, and says so.
    assert "FAILED" in log and "Columns missing in dataset: ['region']" in log
    assert _asset_events(lenient, f"Sales%20{tag}") == [{"warmed": 0, "failed": 1}]


def test_a_table_no_chart_reads_skips_the_step_saying_so(
    warehouse: Any, client: SupersetClient, pipeline_dags: Any, run_dag: Any, tmp_path: Path, capfd: Any
) -> None:
    tag = uuid.uuid4().hex[:8]
    dag_id = f"unread_{tag}"
    dag = pipeline_dags(_pipelines(tmp_path, dag_id, f"unread_{tag}", "i", "{connection: superset_e2e}"))[dag_id]
    result = run_dag(dag)
    assert result.task_states == {"rebuild": "success", "refresh": "skipped"}, result
    assert f"nothing warmed: Superset has no chart for tables marts.unread_{tag}" in "".join(capfd.readouterr())
