"""`state:modified+`: a dbt step runs only what changed since its last successful run (real dbt, real task runner)."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def _summary(dag_id: str, task_id: str) -> dict[str, Any]:
    from sqlalchemy import select

    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        value = session.execute(
            select(XComModel.value).where(XComModel.dag_id == dag_id, XComModel.task_id == task_id,
                                          XComModel.key == "return_value")
        ).scalars().all()[-1]
    return json.loads(value) if isinstance(value, str) else value


def test_a_state_step_runs_what_changed_since_its_last_success(warehouse, pipeline_dags, run_dag, tmp_path: Path) -> None:
    from airflow_osds.dbt.manifest_build import parse_project
    from airflow_osds.hooks.dbt import DbtHook

    project = tmp_path / "dbt" / "web_analytics"
    shutil.copytree(REPO / "include" / "dbt" / "web_analytics", project, ignore=shutil.ignore_patterns("target", "logs"))
    # Parsed for the warehouse, as `osds dbt-parse --connection` does: the step's runs reuse the parse.
    connection = DbtHook("warehouse").get_conn()
    parse_project(project, vars={"use_seeds": True}, connection=connection)
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / "changed.yml").write_text(textwrap.dedent("""\
        pipeline: changed_only
        steps:
          transform:
            dbt:
              project: ../dbt/web_analytics
              granularity: project
              select: ["state:modified+"]
              state: warehouse
              vars: {use_seeds: true}
    """))

    def run() -> dict[str, Any]:
        result = run_dag(pipeline_dags(pipelines)["changed_only"])
        assert result.state == "success", result
        return _summary("changed_only", "transform.project")

    first = run()  # no stored state yet: everything, then its manifest is stored
    assert first["compared_with_state"] is False
    assert "model.web_analytics.sessions" in first["nodes"] and len(first["nodes"]) > 10
    assert warehouse.scalar("SELECT count(*) FROM osds_state.dbt_state_manifests") == 1

    sessions = project / "models" / "marts" / "web" / "sessions.sql"
    sessions.write_text(sessions.read_text() + "\n-- a change to this model\n")
    parse_project(project, vars={"use_seeds": True}, connection=connection)  # the deployment step after a change
    second = run()
    assert second["compared_with_state"] is True
    models = {n for n in second["nodes"] if n.startswith("model.")}
    assert models == {"model.web_analytics.sessions", "model.web_analytics.high_value_users"}, second["nodes"]

    third = run()  # nothing changed since the second run's stored state
    assert third.get("nothing_changed") is True
