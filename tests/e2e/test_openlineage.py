"""OpenLineage from a real run: a pipeline (a table loaded, a model built from it, the model synced to a
table of another database by reverse ETL, a python step reading it) through ``airflow dags test`` (``dag.test()``) with the
OpenLineage provider's file transport. Every task's START and COMPLETE events name the job
``<dag_id>.<task_id>`` and carry, as inputs and outputs, exactly the task's inlets and outlets under
OpenLineage's PostgreSQL naming (``postgres://host:port``, ``database.schema.table``).

The run is a subprocess: the OpenLineage plugin decides at import whether it is enabled, so the
configuration must be in the environment before Airflow starts, which this session's is not.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from airflow_osds.assets import ref_from_asset
from airflow_osds.lineage import Endpoint, dataset_of

DAG_ID = "ol_shop"
CRM_DB = "ol_crm"

PIPELINE = f"""\
pipeline: {DAG_ID}
steps:
  load_orders:
    sql: |
      CREATE SCHEMA IF NOT EXISTS raw;
      DROP TABLE IF EXISTS raw.orders;
      CREATE TABLE raw.orders (id int PRIMARY KEY, customer text NOT NULL, amount numeric NOT NULL);
      INSERT INTO raw.orders VALUES (1, 'ada', 120), (2, 'alan', 30), (3, 'ada', 50), (4, 'grace', 400);
  big_spenders:
    sql: |
      CREATE SCHEMA IF NOT EXISTS marts;
      DROP TABLE IF EXISTS marts.big_spenders;
      CREATE TABLE marts.big_spenders AS
      SELECT customer, sum(amount) AS total FROM raw.orders GROUP BY customer HAVING sum(amount) >= 100;
  to_crm:
    reverse_etl:
      source: {{table: marts.big_spenders, key: customer}}
      fields: {{total: total}}
      destination: {{kind: postgres, connection: {CRM_DB}, table: public.big_spenders}}
  report:                     # not our operator: OpenLineage names its Assets with our converter
    python: {{callable: tests.unit.factory.sample_callables.numbers}}
    reads: [marts.big_spenders]
"""


def _events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _names(datasets: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((d["namespace"], d["name"]) for d in datasets)


def test_a_pipeline_run_reports_each_tasks_assets_as_openlineage_datasets(
    warehouse: Any, pipeline_dags: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    postgres = warehouse.stack.postgres
    postgres.drop_database(CRM_DB)
    postgres.create_database(CRM_DB)
    with postgres.connect(CRM_DB, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.big_spenders (customer text PRIMARY KEY, total numeric)")
    monkeypatch.setenv(f"AIRFLOW_CONN_{CRM_DB.upper()}", postgres.airflow_connection_env(CRM_DB, tcp=True))
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / f"{DAG_ID}.yml").write_text(PIPELINE)
    dag = pipeline_dags(tmp_path / "pipelines")[DAG_ID]

    events_file = tmp_path / "openlineage.jsonl"
    env = {**os.environ,
           "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "file", "log_file_path": str(events_file), "append": True}),
           "AIRFLOW__OPENLINEAGE__NAMESPACE": "osds-e2e"}
    result = subprocess.run([sys.executable, "-m", "airflow", "dags", "test", DAG_ID], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with postgres.connect(CRM_DB) as conn:
        synced = conn.execute("SELECT customer, total FROM big_spenders ORDER BY 1").fetchall()
    assert synced == [("ada", 170), ("grace", 400)], "the run did the work"

    # What the names must be, written out: the warehouse is reached over its Unix socket (named localhost),
    # the CRM database over TCP.
    wh = (f"postgres://localhost:{postgres.port}", warehouse.dbname)
    crm = (f"postgres://127.0.0.1:{postgres.port}", CRM_DB)
    expected = {
        "load_orders": ([], [(wh[0], f"{wh[1]}.raw.orders")]),
        "big_spenders": ([(wh[0], f"{wh[1]}.raw.orders")], [(wh[0], f"{wh[1]}.marts.big_spenders")]),
        "to_crm": ([(wh[0], f"{wh[1]}.marts.big_spenders")], [(crm[0], f"{crm[1]}.public.big_spenders")]),
        "report": ([(wh[0], f"{wh[1]}.marts.big_spenders")], []),
    }
    events = _events(events_file)
    jobs = {DAG_ID, *(f"{DAG_ID}.{t}" for t in expected)}
    assert {e["job"]["name"] for e in events} >= jobs
    # Besides, only per-statement child jobs of the python task, from Airflow's SQL hook lineage: a task
    # reporting no lineage of its own gets the queries its process ran, and dag.test() runs every task in
    # one process, so the python task sees the sql steps' statements. Our operators report their own.
    assert all(re.fullmatch(rf"{DAG_ID}\.report\.query\.\d+", e["job"]["name"]) for e in events
               if e["job"]["name"] not in jobs)
    assert {e["job"]["namespace"] for e in events} == {"osds-e2e"}
    task_events = [e for e in events if e["job"]["name"] in jobs - {DAG_ID}]
    for task_id, (inputs, outputs) in expected.items():
        mine = [e for e in task_events if e["job"]["name"] == f"{DAG_ID}.{task_id}"]
        assert sorted(e["eventType"] for e in mine) == ["COMPLETE", "START"], (task_id, mine)
        for event in mine:
            assert (_names(event["inputs"]), _names(event["outputs"])) == (sorted(inputs), sorted(outputs)), (
                task_id, event["eventType"])

    # The same names follow from the tasks' Assets through airflow_osds.lineage: lineage is the Assets.
    endpoints = {"warehouse": Endpoint.from_connection(_conn(os.environ["AIRFLOW_CONN_WAREHOUSE"])),
                 CRM_DB: Endpoint.from_connection(_conn(os.environ[f"AIRFLOW_CONN_{CRM_DB.upper()}"]))}
    for task_id, (inputs, outputs) in expected.items():
        task = dag.task_dict[task_id]
        for assets, names in ((task.inlets, inputs), (task.outlets, outputs)):
            named = [dataset_of(ref, endpoints[ref.conn_id]) for a in assets if (ref := ref_from_asset(a.name, a.uri))]
            assert sorted((d.namespace, d.name) for d in named) == sorted(names), task_id


def _conn(env_value: str) -> Any:
    from types import SimpleNamespace

    return SimpleNamespace(**{"host": None, "port": None, "schema": None, "login": None, **json.loads(env_value)})
