"""``superset.refresh`` against the session's real Superset 6.1.0 over the embedded warehouse: the charts
reading a table are found through datasets, warming them fills the data cache (the next chart-data request
is served from it), and a broken chart's ``viz_error`` inside Superset's 200 reply is a failure."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_osds.superset import LocalSuperset
from airflow_osds.superset.client import SupersetClient
from airflow_osds.superset.refresh import ChartRef, charts_reading, rison, warm


@pytest.fixture
def client(superset: LocalSuperset) -> Iterator[SupersetClient]:
    with SupersetClient(superset.base_url, *superset.admin, timeout=60) as session:
        yield session


def _sql(warehouse: Any, statements: str) -> None:
    with warehouse.stack.postgres.connect(warehouse.dbname, autocommit=True) as conn:
        conn.execute(statements)


def _table_chart(client: SupersetClient, dataset_id: int, name: str, column: str, dashboards: list[int]) -> int:
    params = {"viz_type": "table", "datasource": f"{dataset_id}__table", "query_mode": "aggregate",
              "groupby": [column], "metrics": ["count"], "row_limit": 100, "adhoc_filters": []}
    query_context = {"datasource": {"id": dataset_id, "type": "table"}, "force": False,
                     "queries": [{"columns": [column], "metrics": ["count"], "row_limit": 100, "filters": [],
                                  "extras": {"having": "", "where": ""}, "orderby": []}],
                     "form_data": params, "result_format": "json", "result_type": "full"}
    return client.post("/api/v1/chart/", {
        "slice_name": name, "viz_type": "table", "datasource_id": dataset_id, "datasource_type": "table",
        "params": json.dumps(params), "query_context": json.dumps(query_context), "dashboards": dashboards})["id"]


def test_charts_reading_a_table_are_warmed_and_a_broken_one_reports_its_error(
    warehouse: Any, client: SupersetClient
) -> None:
    tag = uuid.uuid4().hex[:8]
    _sql(warehouse, f"CREATE SCHEMA IF NOT EXISTS marts; CREATE TABLE marts.sales_{tag} AS SELECT r AS region, i "
                    f"FROM unnest(ARRAY['north', 'south']) AS r, generate_series(1, 5) AS i; "
                    f"CREATE TABLE marts.gone_{tag} AS SELECT 'x' AS region")
    uri = warehouse.stack.postgres.uri(warehouse.dbname, driver="psycopg2")
    database = client.post("/api/v1/database/", {"database_name": f"wh_{tag}", "sqlalchemy_uri": uri})["id"]
    sales = client.post("/api/v1/dataset/", {"database": database, "schema": "marts", "table_name": f"sales_{tag}"})["id"]
    gone = client.post("/api/v1/dataset/", {"database": database, "schema": "marts", "table_name": f"gone_{tag}"})["id"]
    dashboard = client.post("/api/v1/dashboard/", {"dashboard_title": f"sales {tag}", "published": True})["id"]
    good = _table_chart(client, sales, f"sales by region {tag}", "region", [dashboard])
    broken = _table_chart(client, gone, f"gone {tag}", "region", [])
    _sql(warehouse, f"DROP TABLE marts.gone_{tag}")  # the chart's query now fails inside Superset

    charts = charts_reading(client, [f"marts.sales_{tag}", f"marts.gone_{tag}", "marts.nothing_reads_this"])
    assert charts == [ChartRef(good, f"sales by region {tag}", f"marts.sales_{tag}", dashboard),
                      ChartRef(broken, f"gone {tag}", f"marts.gone_{tag}", None)]
    assert charts_reading(client, [f"marts.sales_{tag}"], database="another_db") == []

    results = warm(client, charts, concurrency=2)
    assert [(r.chart.id, r.ok) for r in results] == [(good, True), (broken, False)]
    assert f'relation "marts.gone_{tag}" does not exist' in (results[1].error or "")
    data = client.get(f"/api/v1/chart/{good}/data/")
    assert data["result"][0]["is_cached"] is True, "the warm-up filled Superset's data cache"


def test_rison_is_what_superset_list_filters_read(client: SupersetClient) -> None:
    assert rison({"filters": [{"col": "table_name", "opr": "eq", "value": "it's!"}], "page_size": 5, "x": None}) == \
        "(filters:!((col:'table_name',opr:'eq',value:'it!'s!!')),page_size:5,x:!n)"
    # an odd name goes through Superset's own parser: no match, no error
    assert client.get("/api/v1/dataset/", q=rison({"filters": [{"col": "table_name", "opr": "eq",
                                                                 "value": "a'b!c (d)"}]}))["count"] == 0
