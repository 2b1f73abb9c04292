"""Which Superset charts to refresh, warming their caches, and what came of it (no Airflow imports).

* :func:`select_charts`: the charts of named dashboards (id, slug or title), named charts (id or name), and
  the charts reading given tables, once each; a name that matches nothing is a :class:`SelectionError`.
* :func:`charts_reading`: the datasets over given ``schema.table`` names (``GET /api/v1/dataset/`` filtered by
  table name, then matched on schema, and on the database when one is named), then each dataset's charts
  and the dashboards they sit on (``GET /api/v1/dataset/{id}/related_objects``). A chart on a dashboard is
  warmed in that dashboard's context (its native filters' defaults apply), else on its own.
* :func:`refresh_columns`: re-read datasets' columns from the warehouse (``PUT /api/v1/dataset/{id}/refresh``),
  reporting the columns that appeared or went, so a chart over a column dbt just added works.
* :func:`warm`: ``PUT /api/v1/chart/warm_up_cache`` per chart, ``concurrency`` at a time. Superset answers 200
  even when the chart's query failed, with ``viz_error`` in the body: each chart gets a :class:`WarmResult`,
  failed when the call failed *or* ``viz_error`` is set (or ``viz_status`` is not ``success``).
* :func:`results_table`: the results as a text table for the task log.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from airflow_osds.exceptions import OsdsError
from airflow_osds.superset.client import SupersetApiError, SupersetClient

__all__ = [
    "ChartRef",
    "RefreshReport",
    "ColumnChange",
    "DashboardInfo",
    "Selection",
    "SelectionError",
    "WarmResult",
    "charts_reading",
    "refresh",
    "refresh_columns",
    "results_table",
    "rison",
    "select_charts",
    "warm",
]


class SelectionError(OsdsError):
    """A dashboard or chart named for refresh does not exist in Superset."""


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
    dataset: str  # schema.table ("" when Superset does not say)
    dashboard_id: int | None = None  # warmed in this dashboard's context
    dataset_id: int | None = None


@dataclass(frozen=True)
class DashboardInfo:
    id: int
    title: str
    slug: str | None

    @property
    def key(self) -> str:
        """How assets name it: the slug, else the title (``DashboardRef``)."""
        return self.slug or self.title


@dataclass(frozen=True)
class Selection:
    charts: list[ChartRef]
    dashboards: list[DashboardInfo]  # the named ones and those the selected charts sit on


@dataclass(frozen=True)
class ColumnChange:
    dataset_id: int
    dataset: str
    added: tuple[str, ...]
    removed: tuple[str, ...]


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
                                                        _dashboard_of(client, chart["id"], dashboards), dataset["id"]))
    return [charts[i] for i in sorted(charts)]


def select_charts(client: SupersetClient, *, dashboards: Iterable[int | str] = (), charts: Iterable[int | str] = (),
                  tables: Iterable[str] = (), database: str | None = None) -> Selection:
    """Every chart of ``dashboards`` (id, slug or title; warmed in that dashboard's context), every chart in
    ``charts`` (id or name) and every chart reading ``tables``; once each, in chart-id order. A chart named
    twice keeps the first dashboard context found. Raises :class:`SelectionError` naming what is missing."""
    found: dict[int, ChartRef] = {}
    named: dict[int, DashboardInfo] = {}
    missing: list[str] = []
    datasets: dict[int, str] = {}
    for wanted in dashboards:
        board = _dashboard(client, wanted)
        if board is None:
            missing.append(f"dashboard {wanted!r}")
            continue
        named[board.id] = board
        for dataset in client.get(f"/api/v1/dashboard/{board.id}/datasets").get("result", []):
            datasets[dataset["id"]] = _dataset_name(dataset)
        for chart in client.get(f"/api/v1/dashboard/{board.id}/charts").get("result", []):
            dataset_id = _datasource_id(chart.get("form_data"))
            found.setdefault(chart["id"], ChartRef(chart["id"], chart.get("slice_name") or str(chart["id"]),
                                                   datasets.get(dataset_id, "") if dataset_id else "", board.id,
                                                   dataset_id))
    for wanted in charts:
        chart = _chart(client, wanted, datasets)
        if chart is None:
            missing.append(f"chart {wanted!r}")
        else:
            found.setdefault(chart.id, chart)
    for chart in charts_reading(client, tables, database=database):
        found.setdefault(chart.id, chart)
    if missing:
        raise SelectionError(f"Superset at {client.base_url} has no {', '.join(missing)}: name dashboards by id, "
                             "slug or title and charts by id or name, as Superset shows them")
    selected = [found[i] for i in sorted(found)]
    for board_id in sorted({c.dashboard_id for c in selected if c.dashboard_id is not None} - set(named)):
        board = _dashboard(client, board_id)
        if board is not None:
            named[board.id] = board
    return Selection(selected, [named[i] for i in sorted(named)])


def _dashboard(client: SupersetClient, wanted: int | str) -> DashboardInfo | None:
    """By id or slug (``GET /api/v1/dashboard/{id_or_slug}``), else by exact title."""
    text = str(wanted).strip()
    if text and "/" not in text:
        try:
            board = client.get(f"/api/v1/dashboard/{text}").get("result", {})
            return DashboardInfo(board["id"], board.get("dashboard_title") or "", board.get("slug") or None)
        except SupersetApiError as exc:
            if exc.status != 404:
                raise
    if isinstance(wanted, int) or text.isdigit():
        return None
    q = rison({"filters": [{"col": "dashboard_title", "opr": "eq", "value": text}],
               "columns": ["id", "dashboard_title", "slug"], "page_size": 2})
    boards = client.get("/api/v1/dashboard/", q=q).get("result", [])
    if len(boards) > 1:
        raise SelectionError(f"more than one Superset dashboard is titled {text!r}: name it by id or slug")
    return DashboardInfo(boards[0]["id"], boards[0]["dashboard_title"], boards[0].get("slug") or None) if boards else None


def _chart(client: SupersetClient, wanted: int | str, datasets: dict[int, str]) -> ChartRef | None:
    text = str(wanted).strip()
    if isinstance(wanted, int) or text.isdigit():
        chart_id = int(text)
    else:
        q = rison({"filters": [{"col": "slice_name", "opr": "eq", "value": text}], "columns": ["id"], "page_size": 2})
        hits = client.get("/api/v1/chart/", q=q).get("result", [])
        if len(hits) > 1:
            raise SelectionError(f"more than one Superset chart is named {text!r}: name it by id")
        if not hits:
            return None
        chart_id = hits[0]["id"]
    try:
        chart = client.get(f"/api/v1/chart/{chart_id}").get("result", {})
    except SupersetApiError as exc:
        if exc.status == 404:
            return None
        raise
    params = chart.get("params")
    dataset_id = _datasource_id(json.loads(params) if isinstance(params, str) and params else params)
    if dataset_id is not None and dataset_id not in datasets:
        try:
            datasets[dataset_id] = _dataset_name(client.get(f"/api/v1/dataset/{dataset_id}").get("result", {}))
        except SupersetApiError as exc:
            if exc.status != 404:
                raise
            datasets[dataset_id] = ""
    boards = sorted(d["id"] for d in chart.get("dashboards") or [] if isinstance(d, dict) and "id" in d)
    return ChartRef(chart_id, chart.get("slice_name") or str(chart_id), datasets.get(dataset_id, "") if dataset_id else "",
                    boards[0] if boards else None, dataset_id)


def _datasource_id(form_data: Any) -> int | None:
    """``"12__table"`` in a chart's form data → 12."""
    source = (form_data or {}).get("datasource") if isinstance(form_data, dict) else None
    head = str(source or "").split("__", 1)[0]
    return int(head) if head.isdigit() else None


def _dataset_name(dataset: dict[str, Any]) -> str:
    table = dataset.get("table_name") or ""
    return f"{dataset['schema']}.{table}" if dataset.get("schema") else table


def refresh_columns(client: SupersetClient, charts: Sequence[ChartRef]) -> list[ColumnChange]:
    """Re-read the columns of the charts' datasets from the warehouse; the datasets whose columns changed."""
    changes = []
    for dataset_id in sorted({c.dataset_id for c in charts if c.dataset_id is not None}):
        before = _columns(client, dataset_id)
        client.put(f"/api/v1/dataset/{dataset_id}/refresh", {})
        after = _columns(client, dataset_id)
        if before[1] != after[1]:
            changes.append(ColumnChange(dataset_id, after[0], tuple(sorted(after[1] - before[1])),
                                        tuple(sorted(before[1] - after[1]))))
    return changes


def _columns(client: SupersetClient, dataset_id: int) -> tuple[str, set[str]]:
    dataset = client.get(f"/api/v1/dataset/{dataset_id}").get("result", {})
    return _dataset_name(dataset), {c["column_name"] for c in dataset.get("columns") or []}


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


def results_table(results: Sequence[WarmResult], *, only_failed: bool = False) -> str:
    """The results as an aligned text table (chart, dataset, dashboard, status, seconds, error)."""
    rows = [("chart", "dataset", "dashboard", "status", "seconds", "error")]
    for r in results:
        if only_failed and r.ok:
            continue
        error = " ".join((r.error or "").split())
        rows.append((f"{r.chart.id} {r.chart.name}", r.chart.dataset or "-",
                     str(r.chart.dashboard_id) if r.chart.dashboard_id is not None else "-",
                     "ok" if r.ok else "FAILED", f"{r.seconds:.2f}", error[:300] + ("…" if len(error) > 300 else "")))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    return "\n".join("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:5])) + "  " + row[5]
                     for row in rows).rstrip()


@dataclass(frozen=True)
class RefreshReport:
    selection: Selection
    column_changes: list[ColumnChange]
    results: list[WarmResult]

    @property
    def failed(self) -> list[WarmResult]:
        return [r for r in self.results if not r.ok]

    def summary(self) -> str:
        boards = ", ".join(d.title or d.key for d in self.selection.dashboards) or "none"
        return (f"{len(self.results) - len(self.failed)} chart(s) warmed, {len(self.failed)} failed "
                f"(dashboards: {boards})")

    def dashboard_counts(self) -> dict[DashboardInfo, dict[str, int]]:
        """Per dashboard: its charts warmed in its context, and those that failed."""
        counts = {}
        for board in self.selection.dashboards:
            mine = [r for r in self.results if r.chart.dashboard_id == board.id]
            counts[board] = {"warmed": sum(r.ok for r in mine), "failed": sum(not r.ok for r in mine)}
        return counts

    def as_dict(self) -> dict[str, Any]:
        return {
            "warmed": len(self.results) - len(self.failed),
            "failed": len(self.failed),
            "dashboards": [d.key for d in self.selection.dashboards],
            "charts": [{"id": r.chart.id, "name": r.chart.name, "dataset": r.chart.dataset, "ok": r.ok,
                        "error": r.error, "seconds": round(r.seconds, 3)} for r in self.results],
            "columns_changed": [{"dataset": c.dataset, "added": list(c.added), "removed": list(c.removed)}
                                for c in self.column_changes],
        }


def refresh(client: SupersetClient, *, dashboards: Iterable[int | str] = (), charts: Iterable[int | str] = (),
            tables: Iterable[str] = (), database: str | None = None, concurrency: int = 8,
            columns: bool = False, say: Callable[[str], None] = lambda message: None) -> RefreshReport:
    """Select the charts, optionally re-read their datasets' columns, and warm them all."""
    selection = select_charts(client, dashboards=dashboards, charts=charts, tables=tables, database=database)
    say(f"{len(selection.charts)} chart(s) to warm on {client.base_url}, {concurrency} at a time")
    changes = refresh_columns(client, selection.charts) if columns and selection.charts else []
    for change in changes:
        say(f"dataset {change.dataset}: columns added {list(change.added) or 'none'}, removed "
            f"{list(change.removed) or 'none'}")
    return RefreshReport(selection, changes, warm(client, selection.charts, concurrency=concurrency))
