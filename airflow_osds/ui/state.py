"""What Airflow knows at request time: the last run of each pipeline's DAG, the last event of each Asset.

Read from the metadata database through Airflow's ORM, in the api-server's own session (the
request's ``SessionDep``), rather than through the REST API of the same server: a request to
ourselves would need the caller's token passed on, an HTTP round trip per page of runs and
of events, and assets looked up one by one by name; here it is three queries, each one
row per DAG or Asset.

Only what the page shows leaves this module: no event ``extra`` (an operator may put anything
there), no run ``conf``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["assets_by_name", "last_runs"]


def last_runs(session: Session, dag_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """dag id → its most recent run (by ``run_after``), for the DAGs that have one."""
    from airflow.models.dagrun import DagRun
    from sqlalchemy import func, select

    wanted = list(dag_ids)
    if not wanted:
        return {}
    newest = func.row_number().over(partition_by=DagRun.dag_id, order_by=(DagRun.run_after.desc(), DagRun.id.desc()))
    ranked = (
        select(DagRun.dag_id, DagRun.run_id, DagRun.state, DagRun.run_type, DagRun.run_after, DagRun.end_date,
               newest.label("n"))
        .where(DagRun.dag_id.in_(wanted))
        .subquery()
    )
    rows = session.execute(select(ranked).where(ranked.c.n == 1)).all()
    return {
        row.dag_id: {"run_id": row.run_id, "state": _text(row.state), "run_type": _text(row.run_type),
                     "run_after": _iso(row.run_after), "end_date": _iso(row.end_date)}
        for row in rows
    }


def assets_by_name(session: Session, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Asset name → its ``id`` and ``last_event`` (``None`` before the first), for the Assets Airflow has."""
    from airflow.models.asset import AssetEvent, AssetModel
    from sqlalchemy import func, select

    wanted = list(names)
    if not wanted:
        return {}
    ids = {row.name: row.id for row in session.execute(
        select(AssetModel.id, AssetModel.name).where(AssetModel.name.in_(wanted))).all()}
    if not ids:
        return {}
    newest = func.row_number().over(
        partition_by=AssetEvent.asset_id, order_by=(AssetEvent.timestamp.desc(), AssetEvent.id.desc()))
    ranked = (
        select(AssetEvent.asset_id, AssetEvent.timestamp, AssetEvent.source_dag_id, AssetEvent.source_run_id,
               AssetEvent.source_task_id, newest.label("n"))
        .where(AssetEvent.asset_id.in_(ids.values()))
        .subquery()
    )
    events = {
        row.asset_id: {"timestamp": _iso(row.timestamp), "source_dag_id": row.source_dag_id,
                       "source_run_id": row.source_run_id, "source_task_id": row.source_task_id}
        for row in session.execute(select(ranked).where(ranked.c.n == 1)).all()
    }
    return {name: {"id": asset_id, "last_event": events.get(asset_id)} for name, asset_id in ids.items()}


def _text(value: Any) -> str | None:
    # DagRunState / DagRunType are str enums: their value, not "DagRunState.SUCCESS".
    return None if value is None else str(getattr(value, "value", value))


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()
