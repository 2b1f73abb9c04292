"""The demo's first pipeline through Airflow's real task runner, against the embedded PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

REPO_PIPELINES = Path(__file__).resolve().parents[2] / "include" / "pipelines"


def _asset_events(uri: str) -> list[tuple[Any, ...]]:
    from sqlalchemy import select

    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.execute(
            select(AssetEvent.source_dag_id, AssetEvent.source_task_id)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetModel.uri == uri)
        ).all()
    return [tuple(r) for r in rows]


def test_orders_daily_runs_end_to_end_and_reruns_without_duplicates(warehouse, pipeline_dags, run_dag) -> None:
    dags = pipeline_dags(REPO_PIPELINES)
    dag = dags["orders_daily"]
    assert dag.task_dict["orders_daily"].upstream_task_ids == {"load_orders"}, "wired by the data it reads"

    first = run_dag(dag)
    assert first.state == "success", first
    assert first.task_states == {"load_orders": "success", "orders_daily": "success"}

    assert warehouse.scalar("SELECT count(*) FROM raw.orders") == 500
    expected_days = warehouse.scalar("SELECT count(DISTINCT (ordered_at AT TIME ZONE 'UTC')::date) FROM raw.orders")
    assert warehouse.scalar("SELECT count(*) FROM analytics.orders_daily") == expected_days
    assert warehouse.scalar("SELECT sum(orders) FROM analytics.orders_daily") == 500
    assert warehouse.scalar("SELECT sum(revenue) FROM analytics.orders_daily") == warehouse.scalar(
        "SELECT sum(amount) FROM raw.orders"
    )

    # Each writer task emitted the Asset event of the table it wrote.
    assert ("orders_daily", "orders_daily") in _asset_events("osds://warehouse/analytics/orders_daily")
    assert ("orders_daily", "load_orders") in _asset_events("osds://warehouse/raw/orders")

    second = run_dag(dag)
    assert second.state == "success", second
    assert warehouse.scalar("SELECT count(*) FROM raw.orders") == 500
    assert warehouse.scalar("SELECT sum(orders) FROM analytics.orders_daily") == 500


def test_failing_step_fails_the_run_and_skips_downstream(warehouse, pipeline_dags, run_dag, tmp_path: Path) -> None:
    (tmp_path / "broken.yml").write_text(
        "pipeline: broken_sql\n"
        "steps:\n"
        "  bad:\n"
        "    sql: SELECT * FROM no_such_table\n"
        "    writes: [x.out]\n"
        "  after_bad:\n"
        "    sql: SELECT 1\n"
        "    reads: [x.out]\n"
    )
    result = run_dag(pipeline_dags(tmp_path)["broken_sql"])
    assert result.state == "failed"
    assert result.task_states == {"bad": "failed", "after_bad": "upstream_failed"}
