"""The demo's Superset: a local Superset 6.1 (its own virtualenv, built on first use and cached), the
"Web analytics" dashboard over the dbt marts, and the summary of what the `dashboards` pipeline warmed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from airflow_osds.superset.provision import TableChart, ensure_chart, ensure_dashboard, ensure_database, ensure_dataset

__all__ = [
    "DEMO_CONNECTION",
    "DEMO_DASHBOARD_SLUG",
    "dashboard_url",
    "publish_demo_dashboard",
    "refresh_report",
    "refresh_table",
    "superset_state_dir",
]

DEMO_CONNECTION = "superset"  # what include/pipelines/dashboards.yml names
DEMO_DASHBOARD_SLUG = "web-analytics"
_CHARTS = (  # (chart name, marts table, the column it counts rows by)
    ("Sessions by landing page", "sessions", "landing_page"),
    ("Page views by day", "daily_page_views", "view_date"),
    ("High-value users by plan", "high_value_users", "plan"),
)


def publish_demo_dashboard(client: Any, warehouse_uri: str) -> int:
    """The warehouse as a Superset database, a dataset per mart and the dashboard's charts (the marts must
    exist: Superset reads their columns). Returns the dashboard's id."""
    database = ensure_database(client, "warehouse", warehouse_uri)
    board = ensure_dashboard(client, "Web analytics", slug=DEMO_DASHBOARD_SLUG)
    for name, table, column in _CHARTS:
        ensure_chart(client, TableChart(name, ensure_dataset(client, database, "marts", table), column), [board])
    return board


def refresh_report(dag_id: str, run_id: str) -> dict[str, Any] | None:
    """What the run's Superset step reported (XCom ``refresh_report``), or None when it did not get that far."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        value = (session.query(XComModel.value)
                 .filter(XComModel.dag_id == dag_id, XComModel.run_id == run_id, XComModel.key == "refresh_report")
                 .scalar())
    if isinstance(value, str):
        import json

        value = json.loads(value)
    return value if isinstance(value, dict) else None


def dashboard_url(base_url: str) -> str:
    return f"{base_url}/superset/dashboard/{DEMO_DASHBOARD_SLUG}/"


def refresh_table(reports: list[tuple[str, dict[str, Any] | None]]) -> Table:
    table = Table(title="Superset charts warmed")
    for column in ("pipeline", "chart", "dataset", "result", "seconds"):
        table.add_column(column, justify="right" if column == "seconds" else "left")
    for dag_id, report in reports:
        if report is None:
            table.add_row(dag_id, "-", "-", "[red]no report: see the task log[/]", "")
            continue
        for chart in report["charts"]:
            result = "[green]warm[/]" if chart["ok"] else f"[red]{chart['error']}[/]"
            table.add_row(dag_id, chart["name"], chart["dataset"], result, f"{chart['seconds']:.2f}")
    return table


def superset_state_dir(project_dir: Path) -> Path:
    return project_dir / ".osds" / "superset"
