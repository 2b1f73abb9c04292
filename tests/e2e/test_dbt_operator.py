"""dbt through Airflow's task runner: a build that fails a test, then resumes with `dbt retry`."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

from tests.conftest import DAGS_FOLDER

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
                vars='{{"use_seed_events": true, "fail_test": {{{{ "true" if ti.try_number == 1 else "false" }}}}}}',
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
    assert warehouse.scalar("SELECT count(*) FROM marts.high_value_users") >= 0
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
