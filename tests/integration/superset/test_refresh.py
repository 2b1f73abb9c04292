"""``superset.refresh`` against the session's real Superset 6.1.0 over the embedded warehouse: the charts
reading a table are found through datasets, warming them fills the data cache (the next chart-data request
is served from it), and a broken chart's ``viz_error`` inside Superset's 200 reply is a failure."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_osds.superset import LocalSuperset
from airflow_osds.superset.client import SupersetClient
from airflow_osds.superset.refresh import (
    ChartRef,
    SelectionError,
    charts_reading,
    refresh_columns,
    rison,
    select_charts,
    warm,
)
from airflow_osds.superset.provision import TableChart, ensure_chart, ensure_dataset
from tests.superset_server import add_warehouse_database


@pytest.fixture
def client(superset: LocalSuperset) -> Iterator[SupersetClient]:
    with SupersetClient(superset.base_url, *superset.admin, timeout=60) as session:
        yield session



def test_charts_reading_a_table_are_warmed_and_a_broken_one_reports_its_error(
    warehouse: Any, client: SupersetClient
) -> None:
    tag = uuid.uuid4().hex[:8]
    warehouse.execute(f"CREATE SCHEMA IF NOT EXISTS marts; CREATE TABLE marts.sales_{tag} AS SELECT r AS region, i "
                      f"FROM unnest(ARRAY['north', 'south']) AS r, generate_series(1, 5) AS i; "
                      f"CREATE TABLE marts.gone_{tag} AS SELECT 'x' AS region")
    database = add_warehouse_database(client, warehouse, f"wh_{tag}")
    sales = ensure_dataset(client, database, "marts", f"sales_{tag}")
    gone = ensure_dataset(client, database, "marts", f"gone_{tag}")
    dashboard = client.post("/api/v1/dashboard/", {"dashboard_title": f"sales {tag}", "published": True})["id"]
    good = ensure_chart(client, TableChart(f"sales by region {tag}", sales, "region"), [dashboard])
    broken = ensure_chart(client, TableChart(f"gone {tag}", gone, "region"), [])
    warehouse.execute(f"DROP TABLE marts.gone_{tag}")  # the chart's query now fails inside Superset

    charts = charts_reading(client, [f"marts.sales_{tag}", f"marts.gone_{tag}", "marts.nothing_reads_this"])
    assert charts == [ChartRef(good, f"sales by region {tag}", f"marts.sales_{tag}", dashboard, sales),
                      ChartRef(broken, f"gone {tag}", f"marts.gone_{tag}", None, gone)]
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


def test_dashboards_by_id_slug_or_title_and_charts_by_id_or_name_are_selected_once_each(
    warehouse: Any, client: SupersetClient
) -> None:
    tag = uuid.uuid4().hex[:8]
    warehouse.execute(f"CREATE SCHEMA IF NOT EXISTS marts; CREATE TABLE marts.visits_{tag} AS "
                      "SELECT 'web' AS channel, 1 AS n")
    database = add_warehouse_database(client, warehouse, f"wh_sel_{tag}")
    visits = ensure_dataset(client, database, "marts", f"visits_{tag}")
    by_slug = client.post("/api/v1/dashboard/", {"dashboard_title": f"Visits {tag}", "slug": f"visits-{tag}",
                                                 "published": True})["id"]
    by_title = client.post("/api/v1/dashboard/", {"dashboard_title": f"Channels {tag}", "published": True})["id"]
    on_both = ensure_chart(client, TableChart(f"visits by channel {tag}", visits, "channel"), [by_slug, by_title])
    alone = ensure_chart(client, TableChart(f"visits alone {tag}", visits, "channel"), [])

    selection = select_charts(client, dashboards=[f"visits-{tag}", f"Channels {tag}", by_slug],
                              charts=[f"visits alone {tag}", str(on_both)])
    assert [(c.id, c.dataset, c.dashboard_id, c.dataset_id) for c in selection.charts] == [
        (on_both, f"marts.visits_{tag}", by_slug, visits), (alone, f"marts.visits_{tag}", None, visits)]
    assert [(d.id, d.key) for d in selection.dashboards] == [(by_slug, f"visits-{tag}"), (by_title, f"Channels {tag}")]

    with pytest.raises(SelectionError) as missing:
        select_charts(client, dashboards=[f"no-such-{tag}", 987654], charts=[f"nope {tag}"])
    assert f"has no dashboard 'no-such-{tag}', dashboard 987654, chart 'nope {tag}'" in str(missing.value)

    # dbt replaced the table with other columns: Superset's dataset still lists the old ones until refreshed
    warehouse.execute(f"DROP TABLE marts.visits_{tag}; CREATE TABLE marts.visits_{tag} AS SELECT 1 AS n, 'x' AS campaign")
    changes = refresh_columns(client, selection.charts)
    assert [(c.dataset, c.added, c.removed) for c in changes] == [(f"marts.visits_{tag}", ("campaign",), ("channel",))]
    assert refresh_columns(client, selection.charts) == [], "unchanged columns: nothing reported"
