"""A deferrable SnowplowNewFilesSensor in Airflow's real scheduler stack (tests/e2e/conftest.py, ``snowplow/``).

The sensor defers; its trigger lists the folder and queries the ledger in the triggerer process while
nothing new is there. A file landing lets the sensor succeed with its URI, and the load runs.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow_osds.snowplow import generate

from airflow_osds.stack import AirflowStack, StackError
from tests.e2e.conftest import snowplow_paths

DAG_ID = "snowplow_wait"
SENSOR = "wait_for_files"
CLASSPATH = "airflow_osds.triggers.snowplow.SnowplowNewFilesTrigger"


def _metadata(stack: AirflowStack, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with stack.local.postgres.connect(stack.metadata_db) as conn:
        return conn.execute(sql, params).fetchall()


def _states(stack: AirflowStack, run_id: str) -> dict[str, str | None]:
    states = {ti["task_id"]: ti["state"] for ti in stack.task_instances(DAG_ID, run_id)}
    if "failed" in states.values() or "up_for_retry" in states.values():
        raise StackError(f"{states}\n{stack.task_logs(DAG_ID, run_id)}\n{stack.component_logs()}")
    return states


def _trigger_log(stack: AirflowStack, run_id: str) -> str:
    run_dir = stack.home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / f"task_id={SENSOR}"
    return "\n".join(p.read_text(errors="replace") for p in sorted(run_dir.glob("*.log.trigger.*.log")))


def test_deferred_sensor_waits_in_the_triggerer_for_new_files_then_the_load_runs(airflow_stack: AirflowStack) -> None:
    stack = airflow_stack
    source, _ = snowplow_paths(stack)
    stack.wait_for_dags({DAG_ID}, unexpected_error=lambda f: "snowplow/" in f)
    stack.unpause(DAG_ID)
    run_id = stack.trigger(DAG_ID)
    stack.wait_for(lambda: _states(stack, run_id).get(SENSOR) == "deferred", timeout=90, what=f"{SENSOR} deferred")
    rows = stack.wait_for(lambda: _metadata(
        stack,
        "SELECT t.classpath, j.job_type FROM task_instance ti JOIN trigger t ON t.id = ti.trigger_id "
        "JOIN job j ON j.id = t.triggerer_id WHERE ti.dag_id = %s AND ti.run_id = %s AND ti.task_id = %s",
        (DAG_ID, run_id, SENSOR)), timeout=60, what="the triggerer to pick up the trigger")  # fmt: skip
    assert rows == [(CLASSPATH, "TriggererJob")]
    stack.wait_for(lambda: _trigger_log(stack, run_id).count("nothing new") >= 2, timeout=60, what="two polls")
    assert _states(stack, run_id).get("load_events") is None, "the load waits for the sensor"

    stack.wait_for_deferral_drained(DAG_ID, run_id, SENSOR)  # apache/airflow#72716

    start = dt.datetime(2026, 11, 24, 10, tzinfo=dt.UTC)
    landed = source / "part-0001.tsv.gz"
    generate.write(landed.with_suffix(".tmp"), 300, gzip=True, seed=21, start=start)
    landed.with_suffix(".tmp").rename(landed)  # appears whole, as an object store's PUT does
    run = stack.wait_for_run(DAG_ID, run_id, timeout=120)
    assert run["state"] == "success", stack.task_logs(DAG_ID, run_id)
    xcom = stack._request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{SENSOR}/xcomEntries/return_value")
    assert xcom["value"] == [str(landed)]
    with stack.local.postgres.connect(stack.warehouse_db) as conn:
        assert conn.execute("SELECT count(*) FROM atomic.events").fetchone()[0] == 300
        done = conn.execute("SELECT uri, status FROM osds_state.snowplow_files").fetchall()
    assert done == [(str(landed), "done")]
