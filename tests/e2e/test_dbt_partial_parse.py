"""Model tasks reuse the parse `osds dbt-parse --connection` wrote, as dbt's own log shows; and say why when they cannot."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path
from typing import Any

from tests.conftest import DAGS_FOLDER, copy_web_analytics

REPO = Path(__file__).resolve().parents[2]


def _return_values(dag_id: str) -> dict[str, Any]:
    from sqlalchemy import select

    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.execute(
            select(XComModel.task_id, XComModel.value).where(XComModel.dag_id == dag_id, XComModel.key == "return_value")
        ).all()
    return {task: json.loads(value) if isinstance(value, str) else value for task, value in rows}


def _parse_for_the_warehouse(project: Path) -> None:
    from airflow_osds.dbt.manifest_build import parse_project
    from airflow_osds.hooks.dbt import DbtHook

    # What `osds dbt-parse --connection warehouse` does.
    parse_project(project, connection=DbtHook("warehouse", target_schema="public").get_conn())


def test_every_model_task_reuses_the_recorded_parse(warehouse, pipeline_dags, run_dag, tmp_path: Path) -> None:
    pipelines = copy_web_analytics(tmp_path)
    project = tmp_path / "dbt" / "web_analytics"
    _parse_for_the_warehouse(project)

    dags = pipeline_dags(pipelines)
    assert run_dag(dags["ingest"]).state == "success"  # the sources
    result = run_dag(dags["web_analytics"])
    assert result.state == "success", result
    dbt_tasks = {task: value for task, value in _return_values("web_analytics").items() if task.startswith("transform.")}
    assert len(dbt_tasks) >= 5
    # partial_parse comes from dbt.log ("Partial parsing enabled: 0 files deleted …"): dbt did not re-parse.
    assert {task: v["partial_parse"] for task, v in dbt_tasks.items()} == dict.fromkeys(dbt_tasks, True)


def test_a_task_that_cannot_reuse_the_parse_parses_fully_and_says_why(warehouse, run_dag, tmp_path: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    project = tmp_path / "web_analytics"
    shutil.copytree(REPO / "include" / "dbt" / "web_analytics", project, ignore=shutil.ignore_patterns("target", "logs"))
    _parse_for_the_warehouse(project)
    dag_file = DAGS_FOLDER / "dbt_partial_parse_dag.py"
    dag_file.write_text(textwrap.dedent(f"""\
        # airflow dag file written by the test
        from airflow.sdk import DAG
        from airflow_osds.operators.dbt import DbtBuildOperator

        with DAG("dbt_partial_parse", schedule=None):
            same = DbtBuildOperator(task_id="same_vars", project_dir={str(project)!r}, select=["stg_page_views"])
            other = DbtBuildOperator(task_id="other_vars", project_dir={str(project)!r}, select=["stg_page_views"],
                                     vars={{"use_seeds": True}})
            same >> other
    """))
    try:
        result = run_dag(DagBag(dag_folder=str(dag_file)).dags["dbt_partial_parse"])
    finally:
        dag_file.unlink()
    assert result.task_states == {"same_vars": "success", "other_vars": "success"}, result
    values = _return_values("dbt_partial_parse")
    assert values["same_vars"]["partial_parse"] is True
    assert values["other_vars"]["partial_parse"] is False
    assert "vars differ from the parse's" in values["other_vars"]["parse_note"]
