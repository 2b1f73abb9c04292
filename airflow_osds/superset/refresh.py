"""Which Superset charts read which tables, and warming their caches (no Airflow imports).

* :func:`charts_reading`: the datasets over given ``schema.table`` names (``GET /api/v1/dataset/`` filtered by
  table name, then matched on schema, and on the database when one is named), then each dataset's charts
  and the dashboards they sit on (``GET /api/v1/dataset/{id}/related_objects``). A chart on a dashboard is
  warmed in that dashboard's context (its native filters' defaults apply), else on its own.
* :func:`warm`: ``PUT /api/v1/chart/warm_up_cache`` per chart, ``concurrency`` at a time. Superset answers 200
  even when the chart's query failed, with ``viz_error`` in the body: each chart gets a :class:`WarmResult`,
  failed when the call failed *or* ``viz_error`` is set (or ``viz_status`` is not ``success``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from airflow_osds.superset.client import SupersetApiError, SupersetClient

__all__ = ["ChartRef", "WarmResult", "charts_reading", "rison", "warm"]


def rison(value: Any) -> str:
    """``value`` in Rison, the URL-friendly JSON Superset's list endpoints take in ``q`` (strings always quoted)."""
    if value is None:
        return "!n"
    if value is True:
        return "!t"
    if value is False:
        return "!f"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("!", "!!").replace("'", "!'") + "'"
    if isinstance(value, (list, tuple)):
        return "!(" + ",".join(rison(v) for v in value) + ")"
    if isinstance(value, dict):
        return "(" + ",".join(f"{k if str(k).isidentifier() else rison(str(k))}:{rison(v)}" for k, v in value.items()) + ")"
    raise TypeError(f"cannot write {type(value).__name__} as Rison")


@dataclass(frozen=True)
class ChartRef:
    id: int
    name: str
    dataset: str  # schema.table
    dashboard_id: int | None = None  # warmed in this dashboard's context


@dataclass(frozen=True)
class WarmResult:
    chart: ChartRef
    ok: bool
    error: str | None
    seconds: float


def _datasets(client: SupersetClient, schema: str, table: str, database: str | None) -> list[dict[str, Any]]:
    q = rison({"filters": [{"col": "table_name", "opr": "eq", "value": table}],
               "columns": ["id", "table_name", "schema", "database.database_name"], "page_size": 100})
    found = client.get("/api/v1/dataset/", q=q).get("result", [])
    return [d for d in found if (d.get("schema") or "") == schema
            and (database is None or (d.get("database") or {}).get("database_name") == database)]


def charts_reading(client: SupersetClient, tables: Iterable[str], *, database: str | None = None) -> list[ChartRef]:
    """The charts whose dataset is one of ``tables`` (``schema.table``), once each, in chart-id order."""
    charts: dict[int, ChartRef] = {}
    for name in sorted(set(tables)):
        schema, _, table = name.rpartition(".")
        for dataset in _datasets(client, schema, table, database):
            related = client.get(f"/api/v1/dataset/{dataset['id']}/related_objects")
            dashboards = [d["id"] for d in (related.get("dashboards") or {}).get("result", [])]
            for chart in (related.get("charts") or {}).get("result", []):
                charts.setdefault(chart["id"], ChartRef(chart["id"], chart.get("slice_name") or str(chart["id"]), name,
                                                        _dashboard_of(client, chart["id"], dashboards)))
    return [charts[i] for i in sorted(charts)]


def _dashboard_of(client: SupersetClient, chart_id: int, candidates: Sequence[int]) -> int | None:
    if not candidates:
        return None
    chart = client.get(f"/api/v1/chart/{chart_id}").get("result", {})
    on = sorted(d["id"] for d in chart.get("dashboards") or [] if isinstance(d, dict) and "id" in d)
    return on[0] if on else None


def warm(client: SupersetClient, charts: Sequence[ChartRef], *, concurrency: int = 8) -> list[WarmResult]:
    """Warm every chart (force-refreshed), ``concurrency`` at a time; one result per chart, in ``charts``' order."""

    def one(chart: ChartRef) -> WarmResult:
        body: dict[str, Any] = {"chart_id": chart.id}
        if chart.dashboard_id is not None:
            body["dashboard_id"] = chart.dashboard_id
        begun = time.perf_counter()
        try:
            answer = client.put("/api/v1/chart/warm_up_cache", body)
        except SupersetApiError as exc:
            return WarmResult(chart, False, str(exc), time.perf_counter() - begun)
        entries = [r for r in answer.get("result", []) if r.get("chart_id") == chart.id] or answer.get("result", [])
        errors = [str(r["viz_error"]) for r in entries if r.get("viz_error")]
        statuses = {r.get("viz_status") for r in entries}
        if not entries:
            errors.append(f"Superset returned no result for the chart: {answer}")
        elif not errors and statuses != {"success"}:
            errors.append(f"viz_status {sorted(map(str, statuses))}")
        return WarmResult(chart, not errors, "; ".join(errors) or None, time.perf_counter() - begun)

    if charts:
        client.csrf_token()  # before the threads: one token, one session cookie for all of them
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        return list(pool.map(one, charts))
