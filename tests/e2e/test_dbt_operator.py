"""dbt through Airflow's task runner: a build that fails a test, then resumes with `dbt retry`."""

from __future__ import annotations

import re
import shutil
import textwrap
from pathlib import Path

from tests.conftest import DAGS_FOLDER, copy_web_analytics

REPO_DBT = Path(__file__).resolve().parents[2] / "include" / "dbt" / "web_analytics"


def test_failed_build_resumes_with_dbt_retry(warehouse, run_dag, tmp_path: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    project = tmp_path / "web_analytics"
    shutil.copytree(REPO_DBT, project)
    dag_file = DAGS_FOLDER / "dbt_retry_dag.py"
    # The singular test fails on the first try only (var fail_test), as a flaky upstream would.
    dag_file.write_text(textwrap.dedent(f"""\
        # airflow dag file written by the test
        import datetime as dt
        from airflow.sdk import DAG
        from airflow_osds.operators.dbt import DbtBuildOperator

        with DAG("dbt_retry", schedule=None):
            DbtBuildOperator(
                task_id="build",
                project_dir={str(project)!r},
                target_schema="analytics",
                vars='{{"use_seeds": true, "fail_test": {{{{ "true" if ti.try_number == 1 else "false" }}}}}}',
                retries=1,
                retry_delay=dt.timedelta(seconds=0),
            )
    """))
    try:
        dag = DagBag(dag_folder=str(dag_file)).dags["dbt_retry"]
        result = run_dag(dag)
    finally:
        dag_file.unlink()
    assert result.state == "success", result
    # Try 1 built sessions, failed its singular test and skipped high_value_users (downstream);
    # try 2's `dbt retry` ran only the failed test and the skipped nodes.
    retry_counts = _return_value("dbt_retry", "build")["status_counts"]
    assert retry_counts.get("success") == 1, retry_counts  # high_value_users, nothing rebuilt
    assert "fail" not in retry_counts and sum(retry_counts.values()) < 10, retry_counts
    assert warehouse.scalar("SELECT count(*) FROM marts.sessions") > 0
    assert warehouse.scalar("SELECT to_regclass('marts.high_value_users') IS NOT NULL") is True  # built on try 2
    assert warehouse.scalar("SELECT count(*) FROM osds_state.dbt_run_results") == 0, "state is dropped on success"


def _return_value(dag_id: str, task_id: str) -> dict:
    import json

    from sqlalchemy import select

    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        value = session.execute(
            select(XComModel.value).where(
                XComModel.dag_id == dag_id, XComModel.task_id == task_id, XComModel.key == "return_value"
            )
        ).scalar_one()
    return json.loads(value) if isinstance(value, str) else value


def test_dbt_step_runs_after_its_source_and_emits_an_asset_per_model(
        warehouse, pipeline_dags, run_dag, tmp_path: Path, capfd) -> None:
    """The demo's web_analytics pipeline, after ingest has loaded its sources: a task per dbt model, each with its Asset."""
    from airflow_osds.dbt.manifest_build import parse_project
    from airflow_osds.hooks.dbt import DbtHook

    pipelines = copy_web_analytics(tmp_path)
    # Parsed for the warehouse, as `osds dbt-parse --connection` does: each model's task reuses the parse.
    parse_project(tmp_path / "dbt" / "web_analytics", connection=DbtHook("warehouse").get_conn())

    dags = pipeline_dags(pipelines)
    ingest, dag = dags["ingest"], dags["web_analytics"]
    # The dbt step reads atomic.events and its web_page table (load_events) and raw_crm.contacts
    # (replicate_crm), which the ingest pipeline writes: `schedule: data` waits for all three.
    sources = {"osds://warehouse/atomic/events", "osds://warehouse/atomic/com_snowplowanalytics_snowplow_web_page_1",
               "osds://warehouse/raw_crm/contacts"}
    assert {a.uri for a in dag.timetable.asset_condition.objects} == sources
    assert sources <= {o.uri for t in ingest.tasks for o in t.outlets}
    assert dag.task_dict["transform.stg_page_views"].upstream_task_ids == set()
    assert run_dag(ingest).state == "success"
    # The schemas the models build into are new (the module's first test built this project too).
    warehouse.execute("DROP SCHEMA IF EXISTS staging CASCADE; DROP SCHEMA IF EXISTS marts CASCADE")
    capfd.readouterr()
    result = run_dag(dag)
    assert result.state == "success", result
    # The first model tasks of the fresh warehouse created its schemas before dbt could race on them.
    log = "".join(capfd.readouterr())
    assert re.search(r"Created schema\(s\) (staging|marts) before dbt runs", log), log[-3000:]
    assert warehouse.scalar("SELECT count(*) FROM marts.sessions") == warehouse.scalar(
        "SELECT count(DISTINCT domain_sessionid) FROM atomic.events WHERE event_name = 'page_view'"
    )
    assert warehouse.scalar("SELECT count(*) FROM marts.high_value_users") == 3  # from the replicated CRM
    extras = _asset_event_extras("osds://warehouse/marts/sessions")
    assert extras and extras[-1] == {"rows_affected": warehouse.scalar("SELECT count(*) FROM marts.sessions")}


def _asset_event_extras(uri: str) -> list[dict]:
    from sqlalchemy import select

    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.execute(
            select(AssetEvent.extra).join(AssetModel, AssetModel.id == AssetEvent.asset_id).where(AssetModel.uri == uri)
        ).all()
    return [r[0] for r in rows]


def test_failure_names_the_failing_test_and_its_message(warehouse, run_dag, tmp_path: Path, capfd) -> None:
    from airflow.dag_processing.dagbag import DagBag

    project = tmp_path / "web_analytics"
    shutil.copytree(REPO_DBT, project, ignore=shutil.ignore_patterns("target", "logs"))
    dag_file = DAGS_FOLDER / "dbt_fail_dag.py"
    dag_file.write_text(textwrap.dedent(f"""\
        # airflow dag file written by the test
        from airflow.sdk import DAG
        from airflow_osds.operators.dbt import DbtBuildOperator

        with DAG("dbt_fail", schedule=None):
            DbtBuildOperator(task_id="build", project_dir={str(project)!r},
                             vars={{"use_seeds": True, "fail_test": True}})
    """))
    try:
        result = run_dag(DagBag(dag_folder=str(dag_file)).dags["dbt_fail"])
    finally:
        dag_file.unlink()
    assert result.task_states == {"build": "failed"}
    output = capfd.readouterr()
    assert "test.web_analytics.assert_no_future_sessions (fail): Got 7 results, configured to fail if != 0" in (
        output.out + output.err
    )
