"""A deferrable DbtSourceFreshnessSensor in Airflow's real scheduler stack (tests/e2e/conftest.py, ``freshness/``).

The sensor task defers, its trigger runs in the triggerer process and polls the warehouse
while the source table is stale; a fresh row lets the task, and then the DAG run, succeed.
"""

from __future__ import annotations

import time
from typing import Any

from airflow_osds.stack import AirflowStack, StackError
from tests.e2e.conftest import freshness_project

DAG_ID = "freshness_wait"
SENSOR = "wait_for_orders"
CLASSPATH = "airflow_osds.triggers.dbt.DbtSourceFreshnessTrigger"


def _warehouse(stack: AirflowStack, sql: str) -> None:
    with stack.local.postgres.connect(stack.warehouse_db, autocommit=True) as conn:
        conn.execute(sql)


def _metadata(stack: AirflowStack, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with stack.local.postgres.connect(stack.metadata_db) as conn:
        return conn.execute(sql, params).fetchall()


def _sensor_state(stack: AirflowStack, run_id: str) -> str | None:
    states = {ti["task_id"]: ti["state"] for ti in stack.task_instances(DAG_ID, run_id)}
    if states.get(SENSOR) in ("failed", "up_for_retry"):
        raise StackError(f"{SENSOR} is {states[SENSOR]}\n{stack.task_logs(DAG_ID, run_id)}\n{stack.component_logs()}")
    return states.get(SENSOR)


def _running_trigger(stack: AirflowStack, run_id: str) -> tuple[Any, ...] | None:
    """The sensor's trigger row once a triggerer picked it up: (id, classpath, job type of its triggerer)."""
    rows = _metadata(
        stack,
        "SELECT t.id, t.classpath, j.job_type FROM task_instance ti JOIN trigger t ON t.id = ti.trigger_id "
        "JOIN job j ON j.id = t.triggerer_id WHERE ti.dag_id = %s AND ti.run_id = %s AND ti.task_id = %s",
        (DAG_ID, run_id, SENSOR),
    )
    return rows[0] if rows else None


def _trigger_log(stack: AirflowStack, run_id: str) -> str:
    """What the trigger logged in the triggerer (``attempt=1.log.trigger.<job id>.log``)."""
    run_dir = stack.home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / f"task_id={SENSOR}"
    return "\n".join(p.read_text(errors="replace") for p in sorted(run_dir.glob("*.log.trigger.*.log")))


def test_deferred_sensor_waits_in_the_triggerer_until_the_source_is_fresh(airflow_stack: AirflowStack) -> None:
    from airflow_osds.dbt.manifest_build import parse_project

    stack = airflow_stack
    parse_project(freshness_project(stack))  # the real manifest the sensor reads when it runs
    _warehouse(stack, "CREATE SCHEMA shop_raw; CREATE TABLE shop_raw.orders (id int, loaded_at timestamptz);"
                      "INSERT INTO shop_raw.orders VALUES (1, now() - interval '3 days')")
    stack.wait_for_dags({DAG_ID}, unexpected_error=lambda f: "freshness/" in f)
    stack.unpause(DAG_ID)

    started = time.monotonic()
    run_id = stack.trigger(DAG_ID)
    stack.wait_for(lambda: _sensor_state(stack, run_id) == "deferred", timeout=90, what=f"{SENSOR} to be deferred")
    deferred_after = time.monotonic() - started

    # The trigger is a row of the metadata DB, assigned to the triggerer's job, and it polls.
    trigger_id, classpath, job_type = stack.wait_for(
        lambda: _running_trigger(stack, run_id), timeout=60, what="the triggerer to pick up the trigger"
    )
    assert (classpath, job_type) == (CLASSPATH, "TriggererJob")
    # Two polls (poke_interval=1), each logged by the trigger in the triggerer with the source's age.
    stack.wait_for(lambda: _trigger_log(stack, run_id).count("Still stale") >= 2, timeout=60, what="the trigger to poll")
    assert "shop_raw.orders: error, 3 d old (over error_after 1 day)" in _trigger_log(stack, run_id)
    assert _sensor_state(stack, run_id) == "deferred"  # still waiting, in no worker slot
    assert _running_trigger(stack, run_id) == (trigger_id, CLASSPATH, "TriggererJob")  # the same trigger throughout
    downstream = {ti["task_id"]: ti["state"] for ti in stack.task_instances(DAG_ID, run_id)}["build_orders_clean"]
    assert downstream is None, downstream

    stack.wait_for_deferral_drained(DAG_ID, run_id, SENSOR)  # apache/airflow#72716
    fresh_at = time.monotonic()
    _warehouse(stack, "INSERT INTO shop_raw.orders VALUES (2, now())")
    run = stack.wait_for_run(DAG_ID, run_id, timeout=90)
    resumed_after = time.monotonic() - fresh_at

    assert run["state"] == "success"
    tis = {ti["task_id"]: ti for ti in stack.task_instances(DAG_ID, run_id)}
    assert {t: ti["state"] for t, ti in tis.items()} == {SENSOR: "success", "build_orders_clean": "success"}
    assert tis[SENSOR]["try_number"] == 1  # resumed from the event, not retried
    xcom = stack._request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{SENSOR}/xcomEntries/return_value")
    (result,) = xcom["value"]
    assert (result["source"], result["status"], result["fresh"]) == ("shop_raw.orders", "pass", True)
    assert "Trigger fired event" in _trigger_log(stack, run_id) and "'status': 'fresh'" in _trigger_log(stack, run_id)
    print(f"deferred {deferred_after:.1f} s after the trigger; run succeeded {resumed_after:.1f} s after the fresh row")
