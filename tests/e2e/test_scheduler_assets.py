"""Data-driven scheduling through Airflow's real scheduler: a producer's table write starts its consumer.

Both scenarios share the session's stack (tests/e2e/conftest.py). Unpause consumers BEFORE
triggering producers: Airflow does not queue asset events for a paused DAG.
"""

from __future__ import annotations

import re

from airflow_osds.stack import AirflowStack


def test_stack_runs_an_asset_triggered_dag(airflow_stack: AirflowStack) -> None:
    """The harness itself: a plain-Python producer's Asset event starts its consumer."""
    stack = airflow_stack
    stack.wait_for_dags({"smoke_producer", "smoke_consumer"}, unexpected_error=lambda f: "smoke/" in f)
    stack.unpause("smoke_consumer")
    stack.unpause("smoke_producer")

    run_id = stack.trigger("smoke_producer")
    stack.wait_for_run("smoke_producer", run_id)
    consumer_run = stack.wait_for_run_of_type("smoke_consumer", "asset_triggered")

    events = stack.upstream_asset_events("smoke_consumer", consumer_run["dag_run_id"])
    assert [(e["source_dag_id"], e["source_run_id"], e["extra"]) for e in events] == [
        ("smoke_producer", run_id, {"rows": 1})
    ]


def test_yaml_consumer_runs_when_its_producer_writes_the_table(airflow_stack: AirflowStack) -> None:
    stack = airflow_stack
    # osds_pipeline_errors.py is meant to fail (broken.yml); any other import error is a bug.
    stack.wait_for_dags({"producer", "consumer"}, unexpected_error=lambda f: not f.endswith("osds_pipeline_errors.py"))
    stack.unpause("consumer")
    stack.unpause("producer")

    run_id = stack.trigger("producer")
    stack.wait_for_run("producer", run_id)
    consumer_run = stack.wait_for_run_of_type("consumer", "asset_triggered")

    events = stack.upstream_asset_events("consumer", consumer_run["dag_run_id"])
    assert [(e["uri"], e["source_dag_id"], e["source_run_id"]) for e in events] == [
        ("osds://warehouse/shop/orders", "producer", run_id)
    ]
    with stack.local.postgres.connect(stack.warehouse_db) as conn:
        rows = conn.execute("SELECT orders FROM shop.order_counts").fetchall()
    assert rows == [(3,)]

    # The broken pipeline is an import error of the errors file only, located in the YAML.
    (error,) = stack.import_errors()
    assert error["filename"].endswith("osds_pipeline_errors.py"), error
    # broken.yml line 4, column 5 is the misspelled `sqll` key (tests/e2e/conftest.py).
    assert re.search(r"broken\.yml:4:5: .*did you mean", error["stack_trace"]), error["stack_trace"]

    dag_ids = stack.dag_ids()
    assert {"producer", "consumer"} <= dag_ids
    assert "broken" not in dag_ids
