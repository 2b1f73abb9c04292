"""Every generic block through Airflow's task runner: groups, mapping, sensors, row counts on Asset events."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

MOD = "tests.unit.factory.sample_callables"


def _asset_event_extras(uri: str) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.execute(
            select(AssetEvent.extra).join(AssetModel, AssetModel.id == AssetEvent.asset_id).where(AssetModel.uri == uri)
        ).all()
    return [r[0] for r in rows]


def _xcom(dag_id: str, task_id: str) -> list[Any]:
    from sqlalchemy import select

    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.execute(
            select(XComModel.map_index, XComModel.value)
            .where(XComModel.dag_id == dag_id, XComModel.task_id == task_id, XComModel.key == "return_value")
            .order_by(XComModel.map_index)
        ).all()
    return [json.loads(v) if isinstance(v, str) else v for _, v in rows]


def test_blocks_run_for_real(warehouse, pipeline_dags, run_dag, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "ready.csv").write_text("id\n1\n")
    (tmp_path / "sql").mkdir()
    (tmp_path / "sql" / "items.sql").write_text(
        "CREATE SCHEMA IF NOT EXISTS s;\n"
        "CREATE TABLE IF NOT EXISTS s.items (id int PRIMARY KEY, label text);\n"
        "DELETE FROM s.items;\n"
        "INSERT INTO s.items SELECT g, '{{ params.prefix }}' || g FROM generate_series(1, {{ params.n }}) g;\n"
    )
    (tmp_path / "blocks.yml").write_text(textwrap.dedent(f"""\
        pipeline: blocks
        params:
          n: {{default: 3, type: integer}}
          prefix: item-
        steps:
          file_ready:
            sensor: {{path: "data/*.csv", poke_interval: 1s, timeout: 30s, mode: poke}}
          staging:
            after: [file_ready]
            group:
              steps:
                items: {{sql: {{file: sql/items.sql}}}}
                labels:
                  sql: "CREATE TABLE IF NOT EXISTS s.labels AS SELECT label FROM s.items WHERE false; DELETE FROM s.labels; INSERT INTO s.labels SELECT label FROM s.items"
          rows_ready:
            sensor: {{sql: "SELECT count(*) = {{{{ params.n }}}} FROM s.items", poke_interval: 1s, timeout: 30s, mode: poke}}
          numbers:
            python: {{callable: {MOD}.numbers}}
            after: [rows_ready]
          doubled:
            python:
              callable: {MOD}.double
              expand: {{x: {{from: numbers}}}}
          echo:
            operator:
              class: airflow.providers.standard.operators.bash.BashOperator
              expand: {{bash_command: ["echo a", "echo b"]}}
    """))
    dag = pipeline_dags(tmp_path)["blocks"]
    assert dag.task_dict["rows_ready"].upstream_task_ids == {"staging.items"}, "the sensor's SQL reads s.items"
    assert dag.task_dict["staging.labels"].upstream_task_ids == {"staging.items"}

    result = run_dag(dag)
    assert result.state == "success", result
    assert set(result.task_states.values()) == {"success"}
    assert {k for k in result.task_states if k.startswith("doubled")} == {"doubled[0]", "doubled[1]", "doubled[2]"}

    assert warehouse.query("SELECT id, label FROM s.items ORDER BY id") == [(1, "item-1"), (2, "item-2"), (3, "item-3")]
    assert warehouse.scalar("SELECT count(*) FROM s.labels") == 3
    assert _xcom("blocks", "doubled") == [2, 4, 6]
    # The SQL step reports how many rows it wrote on its Asset event.
    # DELETE removed nothing on this first run; INSERT wrote 3.
    assert _asset_event_extras("osds://warehouse/s/items")[-1] == {"rows_affected": 3}


def test_failed_run_can_be_rerun(warehouse, pipeline_dags, run_dag, tmp_path: Path, monkeypatch) -> None:
    """A step that fails leaves nothing half-written, and the re-run adds no duplicates."""
    (tmp_path / "p.yml").write_text(textwrap.dedent("""\
        pipeline: rerun
        steps:
          load:
            sql: "CREATE SCHEMA IF NOT EXISTS r; CREATE TABLE IF NOT EXISTS r.t (id int PRIMARY KEY); INSERT INTO r.t SELECT g FROM generate_series(1, 5) g ON CONFLICT DO NOTHING; SELECT 1 / (SELECT count(*) FROM r.gate)"
    """))
    with warehouse.stack.postgres.connect(warehouse.dbname, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS r")
        conn.execute("CREATE TABLE IF NOT EXISTS r.gate (x int)")
    dag = pipeline_dags(tmp_path)["rerun"]
    assert run_dag(dag).state == "failed"  # division by zero after the INSERT
    assert warehouse.scalar("SELECT to_regclass('r.t') IS NULL") is True, "the failed transaction rolled back"
    with warehouse.stack.postgres.connect(warehouse.dbname, autocommit=True) as conn:
        conn.execute("INSERT INTO r.gate VALUES (1)")
    assert run_dag(dag).state == "success"
    assert run_dag(dag).state == "success"
    assert warehouse.scalar("SELECT count(*) FROM r.t") == 5
