"""The `snowplow` block through Airflow's task runner: files → atomic.events + context tables, Asset events
with row counts, a step reading a context table wired after it, a re-run skipped, bad rows failing the task."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import textwrap
from pathlib import Path
from typing import Any

from airflow_osds.snowplow import generate

from tests.unit.snowplow._support import IGLU_CENTRAL

START = dt.datetime(2026, 11, 24, 10, 0, tzinfo=dt.UTC)
WEB_PAGE = "atomic.com_snowplowanalytics_snowplow_web_page_1"

PIPELINE = """\
pipeline: {dag_id}
schedule: "@daily"
start_date: 2026-01-01
steps:
  load_events:
    snowplow:
      source: ../data/enriched/
      iglu: [../iglu]
      entities: [com.snowplowanalytics.snowplow/web_page/jsonschema/1]
      max_bad_ratio: {ratio}
  page_counts:
    sql: |
      CREATE TABLE IF NOT EXISTS public.page_counts AS
      SELECT count(*) AS n FROM atomic.com_snowplowanalytics_snowplow_web_page_1;
"""


def _project(tmp_path: Path, dag_id: str, *, lines: int, bad: int, ratio: float) -> Path:
    iglu = tmp_path / "iglu"
    shutil.copytree(IGLU_CENTRAL / "schemas", iglu / "schemas")
    generate.write_custom_schemas(iglu)
    data = tmp_path / "data" / "enriched"
    data.mkdir(parents=True)
    generate.write(data / "part-0000.tsv.gz", lines, gzip=True, seed=11, start=START, bad=bad)
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / f"{dag_id}.yml").write_text(PIPELINE.format(dag_id=dag_id, ratio=ratio))
    return pipelines


def _return_value(dag_id: str, task_id: str) -> Any:
    from sqlalchemy import select

    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        value = session.execute(select(XComModel.value).where(
            XComModel.dag_id == dag_id, XComModel.task_id == task_id, XComModel.key == "return_value"
        ).order_by(XComModel.timestamp.desc())).scalars().first()  # fmt: skip
    return json.loads(value) if isinstance(value, str) else value


def _asset_events(dag_id: str, uri_part: str) -> list[dict[str, Any]]:
    """The extras of the Asset events ``dag_id`` emitted for assets whose URI holds ``uri_part``, oldest first."""
    from sqlalchemy import select

    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.execute(
            select(AssetModel.uri, AssetEvent.extra)
            .join(AssetEvent, AssetEvent.asset_id == AssetModel.id)
            .where(AssetEvent.source_dag_id == dag_id)
            .order_by(AssetEvent.timestamp)
        ).all()
    return [extra for uri, extra in rows if uri_part in uri]


def test_snowplow_step_loads_and_the_reader_of_a_context_table_runs_after_it(
    warehouse: Any, pipeline_dags: Any, run_dag: Any, tmp_path: Path
) -> None:
    dags = pipeline_dags(_project(tmp_path, "snowplow_e2e", lines=2_000, bad=10, ratio=0.05))
    dag = dags["snowplow_e2e"]
    assert dag.task_dict["page_counts"].upstream_task_ids == {"load_events"}, "wired by the web_page table"
    result = run_dag(dag)
    assert result.state == "success", result
    summary = _return_value("snowplow_e2e", "load_events")
    assert summary["events"] == warehouse.scalar("SELECT count(*) FROM atomic.events") == 2_000 - 10
    assert summary["bad_rows"] == warehouse.scalar("SELECT count(*) FROM atomic.osds_bad_rows") == 10
    assert warehouse.scalar("SELECT n FROM public.page_counts") == warehouse.scalar(f"SELECT count(*) FROM {WEB_PAGE}") > 0
    events = _asset_events("snowplow_e2e", "/atomic/events")
    assert [e["rows"] for e in events] == [2_000 - 10]
    assert [e["rows"] for e in _asset_events("snowplow_e2e", "web_page_1")] == [summary["table_rows"][WEB_PAGE]]

    again = run_dag(dag)  # nothing new: the load is skipped, loudly, and adds nothing
    assert again.task_states["load_events"] == "skipped", again
    assert warehouse.scalar("SELECT count(*) FROM atomic.events") == 2_000 - 10


def test_too_many_bad_rows_fail_the_task_after_loading_the_good_ones(
    warehouse: Any, pipeline_dags: Any, run_dag: Any, tmp_path: Path
) -> None:
    dags = pipeline_dags(_project(tmp_path, "snowplow_bad", lines=500, bad=50, ratio=0.01))
    result = run_dag(dags["snowplow_bad"])
    assert result.task_states["load_events"] == "failed", result
    assert warehouse.scalar("SELECT count(*) FROM atomic.osds_bad_rows WHERE source LIKE %s", ("%part-0000%",)) >= 50
