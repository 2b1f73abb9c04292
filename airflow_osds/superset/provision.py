"""Creating Superset objects through its REST API, each found first by name so a second call changes
nothing: a database, datasets over tables, table charts saved with their query context (a warm-up needs
it), and a dashboard. The demo builds its dashboard with these; the tests build their fixtures with them.
No Airflow imports."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from airflow_osds.superset.client import SupersetClient
from airflow_osds.superset.refresh import rison

__all__ = ["TableChart", "ensure_chart", "ensure_dashboard", "ensure_database", "ensure_dataset"]


def _find(client: SupersetClient, resource: str, column: str, value: str) -> int | None:
    q = rison({"filters": [{"col": column, "opr": "eq", "value": value}], "columns": ["id"], "page_size": 1})
    found = client.get(f"/api/v1/{resource}/", q=q).get("result", [])
    return int(found[0]["id"]) if found else None


def ensure_database(client: SupersetClient, name: str, sqlalchemy_uri: str) -> int:
    """The database ``name``, created or updated to ``sqlalchemy_uri`` (e.g. ``postgresql+psycopg2://…``).

    An existing one gets the URI again: Superset never shows a stored password, so there is no
    comparing, and a database saved before the embedded PostgreSQL asked for one must learn it.
    """
    found = _find(client, "database", "database_name", name)
    if found is not None:
        client.put(f"/api/v1/database/{found}", {"sqlalchemy_uri": sqlalchemy_uri})
        return found
    return int(client.post("/api/v1/database/", {"database_name": name, "sqlalchemy_uri": sqlalchemy_uri})["id"])


def ensure_dataset(client: SupersetClient, database: int, schema: str, table: str) -> int:
    """The dataset over ``schema.table`` in ``database`` (the table must exist: Superset reads its columns)."""
    q = rison({"filters": [{"col": "table_name", "opr": "eq", "value": table}],
               "columns": ["id", "schema", "database.id"], "page_size": 100})
    for dataset in client.get("/api/v1/dataset/", q=q).get("result", []):
        if dataset.get("schema") == schema and (dataset.get("database") or {}).get("id") == database:
            return int(dataset["id"])
    return int(client.post("/api/v1/dataset/", {"database": database, "schema": schema, "table_name": table})["id"])


@dataclass(frozen=True)
class TableChart:
    """A table chart: rows of ``dataset`` counted per ``group_by`` column."""

    name: str
    dataset: int
    group_by: str
    row_limit: int = 100


def ensure_chart(client: SupersetClient, chart: TableChart, dashboards: Sequence[int] = ()) -> int:
    found = _find(client, "chart", "slice_name", chart.name)
    if found is not None:
        return found
    params = {"viz_type": "table", "datasource": f"{chart.dataset}__table", "query_mode": "aggregate",
              "groupby": [chart.group_by], "metrics": ["count"], "row_limit": chart.row_limit, "adhoc_filters": []}
    query_context = {"datasource": {"id": chart.dataset, "type": "table"}, "force": False,
                     "queries": [{"columns": [chart.group_by], "metrics": ["count"], "row_limit": chart.row_limit,
                                  "filters": [], "extras": {"having": "", "where": ""}, "orderby": []}],
                     "form_data": params, "result_format": "json", "result_type": "full"}
    body: dict[str, Any] = {"slice_name": chart.name, "viz_type": "table", "datasource_id": chart.dataset,
                            "datasource_type": "table", "params": json.dumps(params),
                            "query_context": json.dumps(query_context), "dashboards": list(dashboards)}
    return int(client.post("/api/v1/chart/", body)["id"])


def ensure_dashboard(client: SupersetClient, title: str, *, slug: str | None = None) -> int:
    found = _find(client, "dashboard", "slug", slug) if slug else _find(client, "dashboard", "dashboard_title", title)
    if found is not None:
        return found
    body: dict[str, Any] = {"dashboard_title": title, "published": True}
    if slug:
        body["slug"] = slug
    return int(client.post("/api/v1/dashboard/", body)["id"])
