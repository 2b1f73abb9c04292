"""The `superset` block at parse time: by default it reads every table the pipeline's other steps write
(so it runs after them and refreshes the charts over them), named dashboards are its outlet Assets, and
a pipeline that gives it nothing to refresh is an error at the step's line; no Superset involved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow_osds.factory.compile import compile_project

from .conftest import errors_of


def _compiled(project: Any) -> Any:
    return compile_project(project)


def _task(compiled: Any, pipeline: str, step: str) -> Any:
    return next(n for n in compiled.pipelines[pipeline].nodes if n.id == step)


def _plan(project: Any, pipeline: str, step: str) -> Any:
    return next(s for s in project.plans[pipeline].tasks() if s.id == step)


def test_by_default_it_refreshes_what_the_other_steps_wrote_and_runs_after_them(write, project) -> None:
    write("p.yml", """\
        pipeline: web
        steps:
          sessions:
            sql: CREATE TABLE marts.sessions AS SELECT 1 AS n
          users:
            sql: CREATE TABLE marts.users AS SELECT 1 AS n
          export:
            reverse_etl:
              source: {table: marts.users, key: n}
              fields: {n: n}
              destination: {kind: postgres, connection: crm, table: public.users}
          dashboards:
            superset: {connection: bi, concurrency: 4}
          after_refresh:
            sql: CREATE TABLE marts.refreshed_at AS SELECT now() AS t
            after: [dashboards]
        """)
    loaded = project()
    assert errors_of(loaded) == []
    step = _plan(loaded, "web", "dashboards")
    assert sorted(r.uri for r in step.reads) == ["osds://warehouse/marts/sessions", "osds://warehouse/marts/users"], \
        "the tables the others write; not the destination, nor what a step running after it writes"
    assert loaded.plans["web"].upstream["dashboards"] == {"sessions", "users"}
    task = _task(_compiled(loaded), "web", "dashboards")
    assert task.operator == "airflow_osds.operators.superset.SupersetRefreshOperator"
    assert task.kwargs["tables"] == ["marts.sessions", "marts.users"]
    assert (task.kwargs["superset_conn_id"], task.kwargs["concurrency"], task.kwargs["on_chart_error"]) == ("bi", 4, "fail")


def test_named_dashboards_are_outlets_and_explicit_tables_replace_the_default(write, project) -> None:
    write("p.yml", """\
        pipeline: web
        steps:
          sessions:
            sql: CREATE TABLE marts.sessions AS SELECT 1 AS n
          boards:
            superset:
              dashboards: [web-analytics, 12]
              charts: ["Sessions per day"]
              on_chart_error: warn
              refresh_columns: true
          one_table:
            superset: {tables: [marts.sessions, "other:public.t"], database: warehouse}
        """)
    loaded = project()
    assert errors_of(loaded) == []
    boards = _plan(loaded, "web", "boards")
    assert sorted(r.uri for r in boards.writes) == ["osds+dashboard://superset_default/12",
                                                    "osds+dashboard://superset_default/web-analytics"]
    assert sorted(r.uri for r in boards.reads) == ["osds://warehouse/marts/sessions"], "still runs after the writers"
    compiled = _compiled(loaded)
    task = _task(compiled, "web", "boards")
    assert "tables" not in task.kwargs, "named dashboards and charts: only those are refreshed"
    assert (task.kwargs["dashboards"], task.kwargs["charts"]) == (["web-analytics", 12], ["Sessions per day"])
    assert (task.kwargs["on_chart_error"], task.kwargs["refresh_columns"]) == ("warn", True)
    table_step = _plan(loaded, "web", "one_table")
    assert sorted(r.uri for r in table_step.reads) == ["osds://other/public/t", "osds://warehouse/marts/sessions"]
    assert _task(compiled, "web", "one_table").kwargs["tables"] == ["marts.sessions", "other:public.t"]


def test_nothing_to_refresh_and_bad_settings_are_errors_at_their_line(write, project) -> None:
    write("alone.yml", """\
        pipeline: alone
        steps:
          refresh:
            superset: {}
        """)
    write("bad.yml", """\
        pipeline: bad
        steps:
          refresh:
            superset: {concurrency: 0, on_chart_error: ignore}
        """)
    loaded = project()
    assert errors_of(loaded) == [
        "bad.yml:4:29: Input should be greater than or equal to 1 (steps.refresh.superset.concurrency)",
        "bad.yml:4:48: Input should be 'fail' or 'warn' (steps.refresh.superset.on_chart_error)",
    ]
    compiled = _compiled(loaded)
    problems = [p.render(Path(e.path).name) for e in compiled.errors for p in e.problems if "alone" in e.path]
    assert problems == ["alone.yml:3:3: `superset` refreshes the charts over the tables this pipeline's other steps "
                        "write, and none writes one: name `tables`, `dashboards` or `charts` (steps.refresh)"]
    assert "alone" not in compiled.pipelines
