"""A dbt source read only through an ephemeral model still wires the step: the step reads the source's
table (so it runs after the step loading it), the freshness check lists the source, and the model task's
inputs include it. Parsed by real dbt, planned by the factory; nothing runs."""

from __future__ import annotations

import textwrap
from pathlib import Path

from airflow_osds.assets import TableRef
from airflow_osds.dbt.manifest_build import parse_project
from airflow_osds.factory.compile import compile_pipeline
from airflow_osds.factory.project import load_project

FILES = {
    "dbt_project.yml": """\
        name: eph
        version: "1.0.0"
        config-version: 2
        profile: osds
        models:
          eph:
            +materialized: table
            intermediate: {+materialized: ephemeral}
        """,
    "models/sources.yml": """\
        version: 2
        sources:
          - name: raw
            schema: raw
            tables:
              - name: clicks
                loaded_at_field: clicked_at
                freshness: {warn_after: {count: 1, period: day}}
        """,
    "models/intermediate/int_clicks.sql": "select * from {{ source('raw', 'clicks') }}\n",
    "models/marts/clicks_daily.sql": "select clicked_at::date as day, count(*) as n from {{ ref('int_clicks') }} group by 1\n",
}


def test_a_source_behind_an_ephemeral_model_is_read_by_the_step(tmp_path: Path) -> None:
    project = tmp_path / "dbt" / "eph"
    for name, text in FILES.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(textwrap.dedent(text))
    parse_project(project, target_schema="public")
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / "clicks.yml").write_text(textwrap.dedent("""\
        pipeline: clicks
        steps:
          load:
            sql: "CREATE TABLE raw.clicks AS SELECT now() AS clicked_at"
          transform:
            dbt: {project: ../dbt/eph, granularity: model, wait_for_sources: true}
        """))
    loaded = load_project(pipelines)
    assert not loaded.errors, [str(e) for e in loaded.errors]
    plan = loaded.plans["clicks"]
    assert {r.qualified for r in plan.steps["transform"].reads} == {"raw.clicks"}
    assert plan.upstream["transform"] == {"load"}, "the dbt step runs after the step loading its source"
    (group,) = [n for n in compile_pipeline(plan, loaded).nodes if n.id == "transform"]
    tasks = {t.task_id: t for t in group.children}
    assert TableRef("warehouse", "raw", "clicks") in [a.ref for a in tasks["clicks_daily"].kwargs["inlets"]]
    sensors = [t for t in tasks.values() if "Sensor" in t.operator]
    assert [t.kwargs.get("sources") for t in sensors] == [["raw.clicks"]], [(t.operator, t.kwargs) for t in sensors]
