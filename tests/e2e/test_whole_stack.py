"""The demo project on Airflow's real scheduler stack, driven only by data landing.

A copy of the repository's dags/ and include/ (the enriched-events folder emptied) runs on its own
api-server, scheduler, dag-processor and triggerer (LocalExecutor), metadata DB and warehouse. Nothing is
triggered by hand: ``ingest`` is ``@continuous``, its new-files sensor waits in the triggerer; the demo's
files are dropped into the folder, and the chain runs on Asset events: the load, ``web_analytics``'s dbt
models, then ``crm_sync`` into the CRM database. A broken pipeline file added while it all runs shows as
an import error with its line and column, and the other pipelines keep running.

Then the demo dashboard is published in the session's Superset, ``dashboards`` is unpaused, and a second
batch of events makes the chain run again: this time ``dashboards`` warms every chart as well.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datetime as dt

import pytest

from airflow_osds.demo import seed_crm_source
from airflow_osds.demo_superset import DEMO_CONNECTION, publish_demo_dashboard
from airflow_osds.localrun import CRM_SOURCE_DB, LocalStack
from airflow_osds.snowplow import generate
from airflow_osds.stack import AirflowStack, StackError
from airflow_osds.superset import LocalSuperset
from airflow_osds.superset.client import SupersetClient

REPO_ROOT = Path(__file__).resolve().parents[2]
OSDS = str(Path(sys.executable).parent / "osds")
SENSOR = "load_events.new_files"
TRIGGER = "airflow_osds.triggers.snowplow.SnowplowNewFilesTrigger"
RUNNING = ("ingest", "web_analytics", "crm_sync")  # unpaused, consumers first


@pytest.fixture(scope="module")
def whole_stack(postgres: LocalStack, superset: LocalSuperset) -> Iterator[tuple[AirflowStack, Path, Path]]:
    root = postgres.state_dir / "whole-stack"
    project = root / "project"
    shutil.copytree(REPO_ROOT / "dags", project / "dags")
    shutil.copytree(REPO_ROOT / "include", project / "include", ignore=shutil.ignore_patterns("target", "logs"))
    enriched = project / "include" / "data" / "enriched"
    batch = root / "batch"
    shutil.move(enriched, batch)
    enriched.mkdir()
    seed_crm_source(postgres, project / "include" / "data" / "crm" / "crm_source.sql")
    stack = AirflowStack(
        postgres, root, metadata_db="airflow_whole", warehouse_db="wh_whole", dags_folder=project / "dags",
        connections={CRM_SOURCE_DB: postgres.connections()[CRM_SOURCE_DB],
                     DEMO_CONNECTION: superset.airflow_connection()},
        extra_env={"AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True", "OSDS_CACHE_DIR": str(root / "cache")},
        fresh=False,  # the warehouse is created first, for the dbt parse
    )
    postgres.postgres.create_database("wh_whole")
    # The DAG processor never runs dbt: the manifest is written first, for the stack's warehouse connection.
    parse = subprocess.run([OSDS, "dbt-parse", str(project / "include" / "dbt" / "web_analytics"),
                            "--connection", "warehouse"], env=stack.environ(), capture_output=True, text=True,
                           timeout=300)
    assert parse.returncode == 0, parse.stdout + parse.stderr
    stack.start()
    try:
        yield stack, enriched, batch
    finally:
        stack.stop()


def _metadata(stack: AirflowStack, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with stack.local.postgres.connect(stack.metadata_db) as conn:
        return conn.execute(sql, params).fetchall()


def _healthy(stack: AirflowStack, dag_id: str, run_id: str) -> dict[str, str | None]:
    states = {ti["task_id"]: ti["state"] for ti in stack.task_instances(dag_id, run_id)}
    if {"failed", "up_for_retry", "upstream_failed"} & set(states.values()):
        raise StackError(f"{dag_id} {run_id}: {states}\n{stack.task_logs(dag_id, run_id)}")
    return states


def _asset_names(events: list[dict[str, Any]]) -> set[str]:
    return {e.get("name") or e.get("uri") for e in events}


def _newer_run(stack: AirflowStack, dag_id: str, run_type: str, seen: set[str]) -> dict[str, Any]:
    """The first run of ``dag_id`` of ``run_type`` not in ``seen``, once it succeeded."""
    def finished() -> dict[str, Any] | None:
        for run in stack.runs(dag_id):
            if run["dag_run_id"] not in seen and run["run_type"] == run_type:
                _healthy(stack, dag_id, run["dag_run_id"])
                return run if run["state"] == "success" else None
        return None

    return stack.wait_for(finished, timeout=300, what=f"a new {run_type} run of {dag_id}")


def test_dropped_files_flow_through_load_dbt_superset_and_reverse_etl_on_asset_events(
        whole_stack, superset: LocalSuperset) -> None:
    stack, enriched, batch = whole_stack
    stack.wait_for_dags({"ingest", "web_analytics", "crm_sync", "dashboards", "orders_daily", "customer_stats"},
                        unexpected_error=lambda f: True, timeout=180)
    for dag_id in RUNNING:
        stack.unpause(dag_id)

    # ingest starts by itself (@continuous) and its sensor defers: the trigger runs in the triggerer.
    first = stack.wait_for(lambda: stack.runs("ingest"), timeout=90, what="a continuous ingest run")[0]
    assert first["run_type"] == "scheduled"
    run_id = first["dag_run_id"]
    stack.wait_for(lambda: _healthy(stack, "ingest", run_id).get(SENSOR) == "deferred", timeout=120,
                   what=f"{SENSOR} deferred")
    rows = stack.wait_for(lambda: _metadata(
        stack,
        "SELECT t.classpath, j.job_type FROM task_instance ti JOIN trigger t ON t.id = ti.trigger_id "
        "JOIN job j ON j.id = t.triggerer_id WHERE ti.dag_id = 'ingest' AND ti.run_id = %s AND ti.task_id = %s",
        (run_id, SENSOR)), timeout=60, what="the triggerer to pick up the trigger")  # fmt: skip
    assert rows == [(TRIGGER, "TriggererJob")]
    stack.wait_for_deferral_drained("ingest", run_id, SENSOR)  # apache/airflow#72716

    # The demo's enriched files land, each whole (rename), as an object store's PUT does.
    for path in sorted(batch.iterdir()):
        tmp = enriched / f".{path.name}.tmp"
        shutil.copy(path, tmp)
        tmp.rename(enriched / path.name)
    ingest = stack.wait_for_run("ingest", run_id, timeout=300)
    assert ingest["state"] == "success", stack.task_logs("ingest", run_id)

    # web_analytics runs because of ingest's Asset events, not because anything triggered it.
    web = stack.wait_for_run_of_type("web_analytics", "asset_triggered", timeout=300)
    web_events = stack.upstream_asset_events("web_analytics", web["dag_run_id"])
    assert {e["source_dag_id"] for e in web_events} == {"ingest"}, web_events
    assert {e["source_run_id"] for e in web_events} == {run_id}
    assert len(web_events) >= 3, web_events  # atomic.events, the web_page context, raw_crm.contacts

    sync = stack.wait_for_run_of_type("crm_sync", "asset_triggered", timeout=300)
    sync_events = stack.upstream_asset_events("crm_sync", sync["dag_run_id"])
    assert {e["source_dag_id"] for e in sync_events} == {"web_analytics"}, sync_events
    assert {e["source_run_id"] for e in sync_events} == {web["dag_run_id"]}

    with stack.local.postgres.connect(stack.warehouse_db) as conn:
        assert conn.execute("SELECT count(*) FROM atomic.events").fetchone()[0] == 1994
        assert conn.execute("SELECT count(*) FROM atomic.osds_bad_rows").fetchone()[0] == 6
        high_value = {r[0] for r in conn.execute("SELECT user_id FROM marts.high_value_users").fetchall()}
    assert len(high_value) == 3
    with stack.local.postgres.connect(CRM_SOURCE_DB) as conn:
        received = {r[0] for r in conn.execute("SELECT user_id FROM public.vip_customers").fetchall()}
    assert received == high_value, "the destination holds exactly the warehouse's high-value users"

    # The next continuous run waits again, in the triggerer, for files the ledger does not list.
    second = stack.wait_for(lambda: [r for r in stack.runs("ingest") if r["dag_run_id"] != run_id],
                            timeout=120, what="the next ingest run")[0]
    stack.wait_for(lambda: _healthy(stack, "ingest", second["dag_run_id"]).get(SENSOR) == "deferred",
                   timeout=120, what="the second run's sensor deferred")

    # The dashboard over the marts (they exist now), then dashboards joins the chain; a second batch lands.
    with SupersetClient(superset.base_url, *superset.admin) as client:
        publish_demo_dashboard(client, stack.local.postgres.uri(stack.warehouse_db, driver="psycopg2"))
    stack.unpause("dashboards")
    stack.wait_for_deferral_drained("ingest", second["dag_run_id"], SENSOR)
    later = dt.datetime(2026, 11, 25, 9, tzinfo=dt.UTC)
    generate.write(enriched / ".part-2.tmp", 200, gzip=True, seed=7, start=later)
    (enriched / ".part-2.tmp").rename(enriched / "part-2.tsv.gz")
    ingest2 = stack.wait_for_run("ingest", second["dag_run_id"], timeout=300)
    assert ingest2["state"] == "success", stack.task_logs("ingest", second["dag_run_id"])
    web2 = _newer_run(stack, "web_analytics", "asset_triggered", {web["dag_run_id"]})
    assert {e["source_run_id"] for e in stack.upstream_asset_events("web_analytics", web2["dag_run_id"])} == {
        second["dag_run_id"]}
    boards = _newer_run(stack, "dashboards", "asset_triggered", set())
    board_events = stack.upstream_asset_events("dashboards", boards["dag_run_id"])
    # Its first run counts every event since the marts' first rebuild: the one it was paused through too.
    assert {e["source_dag_id"] for e in board_events} == {"web_analytics"}, board_events
    assert {e["source_run_id"] for e in board_events} == {web["dag_run_id"], web2["dag_run_id"]}, board_events
    report = stack._request("GET", f"/api/v2/dags/dashboards/dagRuns/{boards['dag_run_id']}/taskInstances/"
                                   "warm_charts/xcomEntries/return_value")["value"]
    assert (report["warmed"], report["failed"]) == (3, 0), report
    assert {c["dataset"] for c in report["charts"]} == {"marts.sessions", "marts.daily_page_views",
                                                         "marts.high_value_users"}
    _newer_run(stack, "crm_sync", "asset_triggered", {sync["dag_run_id"]})
    with stack.local.postgres.connect(stack.warehouse_db) as conn:
        assert conn.execute("SELECT count(*) FROM atomic.events").fetchone()[0] == 1994 + 200
        high_value = {r[0] for r in conn.execute("SELECT user_id FROM marts.high_value_users").fetchall()}
    with stack.local.postgres.connect(CRM_SOURCE_DB) as conn:
        received = {r[0] for r in conn.execute("SELECT user_id FROM public.vip_customers").fetchall()}
    assert received == high_value

    seen = {run_id, second["dag_run_id"]}
    third = stack.wait_for(lambda: [r for r in stack.runs("ingest") if r["dag_run_id"] not in seen],
                           timeout=120, what="the third ingest run")[0]
    stack.wait_for(lambda: _healthy(stack, "ingest", third["dag_run_id"]).get(SENSOR) == "deferred",
                   timeout=120, what="the third run's sensor deferred")
    # A broken pipeline file while it all runs: an import error at its line and column; the rest stays.
    broken = enriched.parents[2] / "include" / "pipelines" / "broken.yml"
    broken.write_text("pipeline: broken\nschedule: \"@daily\"\nsteps:\n  a:\n    operatr: {}\n")
    errors = stack.wait_for(lambda: [e for e in stack.import_errors() if "broken.yml" in e["stack_trace"]],
                            timeout=120, what="the import error of broken.yml")
    assert "broken.yml:5:5" in errors[0]["stack_trace"], errors[0]["stack_trace"]
    assert {"ingest", "web_analytics", "crm_sync", "dashboards"} <= stack.dag_ids()
    assert _healthy(stack, "ingest", third["dag_run_id"]).get(SENSOR) == "deferred"
