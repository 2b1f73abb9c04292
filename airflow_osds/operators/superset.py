"""Warm Apache Superset's cache for the charts whose data just changed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import AssetAlias, BaseOperator

from airflow_osds.assets import DashboardRef, ref_from_uri
from airflow_osds.hooks.superset import SupersetHook
from airflow_osds.operators._lineage import OpenLineageMixin

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["SupersetRefreshOperator"]

ON_CHART_ERROR = ("fail", "warn")


class SupersetRefreshOperator(OpenLineageMixin, BaseOperator):
    """
    Force-refresh the cached data of Superset charts: those of ``dashboards`` (in the dashboard's context),
    ``charts``, and every chart whose dataset is one of ``tables``. Charts are warmed ``concurrency`` at a
    time (``PUT /api/v1/chart/warm_up_cache``), each with its own result; a chart whose query failed
    (Superset's ``viz_error`` inside a 200 reply) is a failure, and the log shows a table of every chart.

    A dashboard or chart that does not exist fails the task; a selection with no chart at all skips it,
    saying what was looked for. Every dashboard whose charts were warmed gets an Asset event
    (``osds+dashboard://<conn>/<slug or title>``) with its ``warmed`` and ``failed`` counts in the extra:
    a dashboard outlet directly, any other through the ``dashboards:<conn>`` Asset alias, so the lineage
    reaches the dashboards even when only tables were named. The
    report (``warmed``, ``failed``, a result per chart) is the return value, and also the XCom
    ``refresh_report``, which is kept when the task fails.

    :param superset_conn_id: the ``superset`` connection.
    :param dashboards: ids, slugs or titles (templated).
    :param charts: ids or names (templated).
    :param tables: ``schema.table`` names: the charts on datasets over them (templated).
    :param database: only datasets of this Superset database (its name in Superset).
    :param concurrency: warm-ups in flight at once.
    :param on_chart_error: ``fail`` (the task fails, retryably, after every chart was tried) or ``warn``.
    :param refresh_columns: first re-read the datasets' columns from the warehouse (after dbt changed them).
    """

    template_fields: Sequence[str] = ("dashboards", "charts", "tables")
    ui_color = "#e3f2fd"

    def __init__(
        self,
        *,
        superset_conn_id: str = SupersetHook.default_conn_name,
        dashboards: Sequence[int | str] = (),
        charts: Sequence[int | str] = (),
        tables: Sequence[str] = (),
        database: str | None = None,
        concurrency: int = 8,
        on_chart_error: str = "fail",
        refresh_columns: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if on_chart_error not in ON_CHART_ERROR:
            raise ValueError(f"on_chart_error must be one of {ON_CHART_ERROR}, not {on_chart_error!r}")
        self.superset_conn_id = superset_conn_id
        self.dashboards = list(dashboards)
        self.charts = list(charts)
        self.tables = list(tables)
        self.database = database
        self.concurrency = concurrency
        self.on_chart_error = on_chart_error
        self.refresh_columns = refresh_columns
        # The dashboards found at run time get their Asset events through it (declared here, at parse time).
        self.outlets = [*self.outlets, AssetAlias(name=f"dashboards:{superset_conn_id}")]

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

        from airflow_osds.superset.client import SupersetAuthError
        from airflow_osds.superset.refresh import SelectionError, refresh, results_table

        if not (self.dashboards or self.charts or self.tables):
            raise AirflowFailException("nothing to refresh: give dashboards, charts or tables")
        try:
            with SupersetHook(self.superset_conn_id).client() as client:
                report = refresh(client, dashboards=self.dashboards, charts=self.charts, tables=self.tables,
                                 database=self.database, concurrency=self.concurrency,
                                 columns=self.refresh_columns, say=self.log.info)
        except (SelectionError, SupersetAuthError) as exc:
            raise AirflowFailException(str(exc)) from None
        if not report.results:
            looked_for = [f"{kind} {', '.join(map(str, items))}" for kind, items in
                          (("dashboards", self.dashboards), ("charts", self.charts), ("tables", self.tables)) if items]
            where = f" (database {self.database!r})" if self.database else ""
            raise AirflowSkipException(f"nothing warmed: Superset has no chart for {'; '.join(looked_for)}{where}")
        self.log.info("%s\n%s", report.summary(), results_table(report.results))
        counts = report.as_dict()
        context["ti"].xcom_push(key="refresh_report", value=counts)  # kept when the task fails below
        self._dashboard_events(report, context)
        if report.failed:
            message = (f"{len(report.failed)} of {len(report.results)} Superset chart(s) failed to refresh:\n"
                       f"{results_table(report.results, only_failed=True)}")
            if self.on_chart_error == "fail":
                raise AirflowException(message)
            self.log.warning("%s", message)
        return counts

    def _dashboard_events(self, report: Any, context: Context) -> None:
        declared = {ref_from_uri(getattr(o, "uri", "")): o for o in self.outlets}
        alias = next(o for o in self.outlets if isinstance(o, AssetAlias))
        for board, board_counts in report.dashboard_counts().items():
            outlet = next((declared[ref] for ref in (DashboardRef(self.superset_conn_id, board.key),
                                                     DashboardRef(self.superset_conn_id, board.title),
                                                     DashboardRef(self.superset_conn_id, str(board.id)))
                           if ref in declared), None)
            if outlet is not None:
                context["outlet_events"][outlet].extra = board_counts
            else:
                context["outlet_events"][alias].add(DashboardRef(self.superset_conn_id, board.key).asset(),
                                                    extra=board_counts)
