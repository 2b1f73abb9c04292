"""Plans become ordinary Airflow DAGs: schedules, task arguments, groups, mapping, Assets."""

from __future__ import annotations

import datetime as dt

import pendulum
import pytest
from airflow.sdk import Asset, AssetAll, AssetAny, AssetOrTimeSchedule, Param
from airflow.sdk.definitions.mappedoperator import MappedOperator

from airflow_osds.factory import load_pipelines
from airflow_osds.factory.build import build_dag
from airflow_osds.factory.compile import compile_pipeline

from .conftest import errors_of

MOD = "tests.unit.factory.sample_callables"


def _dag(project, pipeline_id):
    proj = project()
    assert not proj.errors, errors_of(proj)
    return build_dag(compile_pipeline(proj.plans[pipeline_id], proj), register=False)


def test_dag_arguments(write, project) -> None:
    write("p.yml", f"""\
        pipeline: p
        description: one line
        doc: "# Heading"
        schedule: "0 6 * * *"
        start_date: 2026-03-01
        end_date: 2026-12-31
        timezone: Europe/Paris
        catchup: true
        tags: [a, b]
        owners: [alice, bob]
        max_active_runs: 2
        dagrun_timeout: 2h
        params:
          limit: 10
          region: {{default: eu, type: string, enum: [eu, us], description: where}}
        callbacks:
          on_failure: [{MOD}.on_failure]
          on_success: [{{notifier: {MOD}.RecordingNotifier, args: {{label: ok}}}}]
        defaults:
          retries: 3
          retry_delay: 5m
          execution_timeout: 1h30m
          pool: etl
          queue: heavy
          priority_weight: 7
          callbacks: {{on_retry: [{MOD}.on_failure]}}
        steps:
          a:
            sql: SELECT 1
            doc: does a
            trigger_rule: all_done
            retries: 0
    """)
    dag = _dag(project, "p")
    assert dag.description == "one line"
    assert dag.doc_md.startswith("# Heading")
    assert (dag.timetable.expression, str(dag.timetable.timezone)) == ("0 6 * * *", "Europe/Paris")
    # Airflow keeps dates in UTC: midnight in Paris is 23:00 UTC the day before.
    assert dag.start_date == pendulum.datetime(2026, 3, 1, tz="Europe/Paris")
    assert dag.end_date == pendulum.datetime(2026, 12, 31, tz="Europe/Paris").end_of("day")
    assert dag.catchup is True
    assert set(dag.tags) == {"osds", "a", "b"}
    assert dag.max_active_runs == 2 and dag.dagrun_timeout == dt.timedelta(hours=2)
    assert dag.params["limit"] == 10
    region = dag.params.get_param("region")
    assert isinstance(region, Param) and region.value == "eu" and region.schema["enum"] == ["eu", "us"]
    assert dag.on_failure_callback[0].__name__ == "on_failure"
    assert type(dag.on_success_callback[0]).__name__ == "RecordingNotifier"
    task = dag.task_dict["a"]
    assert task.owner == "alice,bob"
    assert (task.retries, task.retry_delay, task.execution_timeout) == (0, dt.timedelta(minutes=5), dt.timedelta(hours=1, minutes=30))
    assert (task.pool, task.queue, task.priority_weight, task.trigger_rule) == ("etl", "heavy", 7, "all_done")
    assert task.doc_md == "does a"
    assert task.on_retry_callback[0].__name__ == "on_failure"


@pytest.mark.parametrize(
    ("schedule", "timetable", "detail"),
    [
        ("'@hourly'", "CronTriggerTimetable", ("expression", "0 * * * *")),
        ("{every: 30m}", "DeltaTriggerTimetable", ("delta", dt.timedelta(minutes=30))),
        ("null", "NullTimetable", None),
        ("'@continuous'", "ContinuousTimetable", None),
        ("'@once'", "OnceTimetable", None),
    ],
)
def test_time_schedules(write, project, schedule, timetable, detail) -> None:
    write("p.yml", f"pipeline: p\nstart_date: 2026-01-01\nschedule: {schedule}\nsteps:\n  a: {{sql: SELECT 1}}\n")
    dag = _dag(project, "p")
    assert type(dag.timetable).__name__ == timetable
    if detail:
        assert getattr(dag.timetable, detail[0]) == detail[1]


def test_continuous_runs_one_at_a_time(write, project) -> None:
    write("p.yml", "pipeline: p\nstart_date: 2026-01-01\nschedule: '@continuous'\nsteps:\n  a: {sql: SELECT 1}\n")
    assert _dag(project, "p").max_active_runs == 1  # Airflow refuses its default (16) for a continuous timetable
    write("p.yml", "pipeline: p\nschedule: '@continuous'\nmax_active_runs: 2\nsteps:\n  a: {sql: SELECT 1}\n")
    assert "`schedule: \"@continuous\"` runs one run at a time: drop `max_active_runs` or set it to 1" in "\n".join(errors_of(project()))
    write("p.yml", "pipeline: p\nschedule: {cron: '@continuous', data: any}\nsteps:\n  a: {sql: SELECT 1}\n")
    assert "`@continuous` cannot be combined with `data`" in "\n".join(errors_of(project()))


def _producers(write) -> None:
    write("orders.yml", "pipeline: orders\nsteps:\n  a: {sql: 'INSERT INTO shop.orders SELECT 1'}\n")
    write("users.yml", "pipeline: users\nsteps:\n  a: {sql: 'INSERT INTO shop.users SELECT 1'}\n")


ORDERS = Asset(name="warehouse.shop.orders", uri="osds://warehouse/shop/orders", group="table")
USERS = Asset(name="warehouse.shop.users", uri="osds://warehouse/shop/users", group="table")


def test_data_schedule_all_and_any(write, project) -> None:
    _producers(write)
    body = "steps:\n  a: {sql: 'INSERT INTO shop.report SELECT * FROM shop.orders JOIN shop.users USING (id)'}\n"
    write("all.yml", "pipeline: all_\nschedule: data\n" + body)
    write("any.yml", "pipeline: any_\nschedule: {data: any}\n" + body)
    assert _dag(project, "all_").timetable.asset_condition == AssetAll(ORDERS, USERS)
    assert _dag(project, "any_").timetable.asset_condition == AssetAny(ORDERS, USERS)


def test_data_or_time_and_explicit_conditions(write, project) -> None:
    _producers(write)
    write("c.yml", """\
        pipeline: c
        start_date: 2026-01-01
        schedule: {cron: "@daily", data: {any_of: [shop.orders, {all_of: [shop.users, "other:x.y"]}]}}
        steps:
          a: {sql: SELECT 1}
    """)
    dag = _dag(project, "c")
    assert isinstance(dag.timetable, AssetOrTimeSchedule)
    other = Asset(name="other.x.y", uri="osds://other/x/y", group="table")
    assert dag.timetable.asset_condition == AssetAny(ORDERS, AssetAll(USERS, other))


def test_outlets_inlets_groups_and_edges(write, project) -> None:
    write("p.yml", """\
        pipeline: p
        steps:
          load: {sql: "INSERT INTO shop.orders SELECT 1"}
          marts:
            group:
              steps:
                daily: {sql: "INSERT INTO shop.daily SELECT count(*) FROM shop.orders"}
    """)
    dag = _dag(project, "p")
    assert set(dag.task_dict) == {"load", "marts.daily"}
    daily = dag.task_dict["marts.daily"]
    assert daily.upstream_task_ids == {"load"}
    assert daily.outlets == [Asset(name="warehouse.shop.daily", uri="osds://warehouse/shop/daily", group="table")]
    assert daily.inlets == [ORDERS]
    assert dag.task_dict["load"].outlets == [ORDERS]
    assert dag.task_group_dict["marts"].tooltip == ""


def test_mapping_over_lists_and_other_steps(write, project) -> None:
    write("p.yml", f"""\
        pipeline: p
        steps:
          nums:
            python: {{callable: {MOD}.numbers}}
          doubled:
            python:
              callable: {MOD}.double
              expand: {{x: {{from: nums}}}}
          grid:
            operator:
              class: airflow.providers.standard.operators.bash.BashOperator
              kwargs: {{env: {{A: "1"}}}}
              expand: {{bash_command: ["echo 1", "echo 2"]}}
          literal:
            python:
              callable: {MOD}.double
              expand: {{x: [1, 2, 3]}}
    """)
    dag = _dag(project, "p")
    for task_id in ("doubled", "grid", "literal"):
        assert isinstance(dag.task_dict[task_id], MappedOperator), task_id
    assert dag.task_dict["doubled"].upstream_task_ids == {"nums"}
    assert dag.task_dict["literal"].expand_input.value["op_kwargs"] == [{"x": 1}, {"x": 2}, {"x": 3}]


def test_sensors(write, project, tmp_path) -> None:
    write("p.yml", """\
        pipeline: p
        steps:
          rows: {sensor: {sql: "SELECT count(*) > 0 FROM raw.orders", poke_interval: 10s, timeout: 5m, mode: poke}}
          file: {sensor: {path: "data/*.csv"}}
          other: {sensor: {pipeline: upstream, step: load}}
    """)
    dag = _dag(project, "p")
    rows, file, other = (dag.task_dict[t] for t in ("rows", "file", "other"))
    assert type(rows).__name__ == "SqlSensor" and rows.poke_interval == 10 and rows.timeout == 300 and rows.mode == "poke"
    assert rows.inlets == [Asset(name="warehouse.raw.orders", uri="osds://warehouse/raw/orders", group="table")]
    assert type(file).__name__ == "PathSensor" and file.mode == "reschedule"
    assert (other.external_dag_id, other.external_task_id) == ("upstream", "load")


def test_load_pipelines_builds_only_the_dag_airflow_asks_for(write, tmp_path, monkeypatch) -> None:
    write("a.yml", "pipeline: a\nsteps:\n  s: {sql: SELECT 1}\n")
    write("b.yml", "pipeline: b\nsteps:\n  s: {sql: SELECT 1}\n")
    write("bad.yml", "pipeline: bad\nsteps:\n  s: {sqll: SELECT 1}\n")
    assert set(load_pipelines(tmp_path / "pipelines")) == {"a", "b"}
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "b")
    namespace: dict = {}
    assert set(load_pipelines(tmp_path / "pipelines", namespace)) == {"b"}
    assert set(namespace) == {"b"}


def test_report_pipeline_errors_includes_what_airflow_rejects(write, tmp_path) -> None:
    from airflow_osds.exceptions import PipelineFolderError
    from airflow_osds.factory import report_pipeline_errors

    write("ok.yml", "pipeline: ok\nsteps:\n  s: {sql: SELECT 1}\n")
    write("badkw.yml", """\
        pipeline: badkw
        steps:
          s:
            operator:
              class: airflow.providers.standard.operators.bash.BashOperator
              kwargs: {bash_command: echo, no_such_argument: 1}
    """)
    with pytest.raises(PipelineFolderError) as info:
        report_pipeline_errors(tmp_path / "pipelines")
    assert [e.path.endswith("badkw.yml") for e in info.value.errors] == [True]
    assert "no_such_argument" in str(info.value)


def test_report_pipeline_errors_builds_nothing(write, tmp_path, monkeypatch) -> None:
    from airflow_osds import factory
    from airflow_osds.factory import build as build_module

    write("sql.yml", "pipeline: only_sql\nsteps:\n  s: {sql: SELECT 1}\n")
    write("op.yml", "pipeline: with_op\nsteps:\n  s: {operator: {class: airflow.providers.standard.operators.empty.EmptyOperator}}\n")
    built: list[str] = []
    real = build_module.build_dag

    def spy(pipeline, **kwargs):
        built.append(pipeline.dag_id)
        return real(pipeline, **kwargs)

    monkeypatch.setattr(build_module, "build_dag", spy)  # observes which pipelines get built
    factory.report_pipeline_errors(tmp_path / "pipelines")
    assert built == []
    factory.load_pipelines(tmp_path / "pipelines")
    assert sorted(built) == ["only_sql", "with_op"], "the spy does observe builds"


def test_operator_arguments_are_checked_against_the_class(write, project) -> None:
    write("p.yml", """\
        pipeline: p
        steps:
          typo:
            operator:
              class: airflow.providers.standard.operators.bash.BashOperator
              kwargs: {bash_command: echo, retires: 2}
          missing:
            operator: {class: airflow.providers.standard.operators.bash.BashOperator}
          mapped:
            operator:
              class: airflow.providers.standard.operators.bash.BashOperator
              expand: {bash_comand: [a, b]}
          fine:
            operator:
              class: airflow.providers.standard.operators.bash.BashOperator
              kwargs: {bash_command: echo, env: {A: "1"}, retries: 1}
          not_an_operator:
            operator: {class: pathlib.Path}
    """)
    assert errors_of(project()) == [
        "p.yml:6:36: BashOperator takes no argument `retires`: did you mean `retries`? (steps.typo.operator.kwargs.retires)",
        "p.yml:8:15: BashOperator needs `bash_command` in `kwargs` (steps.missing.operator.kwargs)",
        "p.yml:12:16: BashOperator takes no argument `bash_comand`: did you mean `bash_command`? (steps.mapped.operator.expand.bash_comand)",
        "p.yml:18:23: `pathlib.Path` is not an Airflow operator (a subclass of airflow.sdk.BaseOperator) (steps.not_an_operator.operator.class)",
    ]


def test_a_loader_file_safe_mode_would_skip_is_warned_about(write, tmp_path, caplog) -> None:
    write("a.yml", "pipeline: a\nsteps:\n  s: {sql: SELECT 1}\n")
    quiet, fine = tmp_path / "quiet.py", tmp_path / "fine.py"
    quiet.write_text("from airflow_osds.factory import load_pipelines\nload_pipelines('x', globals())\n")
    fine.write_text("# Airflow DAG file\nfrom airflow_osds.factory import load_pipelines\n")
    load_pipelines(tmp_path / "pipelines", {"__file__": str(fine)})
    assert "safe mode" not in caplog.text
    load_pipelines(tmp_path / "pipelines", {"__file__": str(quiet)})
    assert f"{quiet} does not contain the words 'airflow' and 'dag'" in caplog.text


def test_the_shipped_dag_files_pass_airflows_safe_mode() -> None:
    from pathlib import Path

    from airflow.utils.file import might_contain_dag_via_default_heuristic

    dags = Path(__file__).resolve().parents[3] / "dags"
    files = sorted(dags.glob("*.py"))
    assert len(files) == 2 and all(might_contain_dag_via_default_heuristic(str(f)) for f in files)


def test_edges_set_directly_serialize_as_the_same_dag_as_with_rshift(write, project, monkeypatch) -> None:
    """A differential test: ``link`` writes the id sets itself between two plain tasks; the DAG must
    serialize exactly as when every edge is set with ``>>`` (forced by declaring no class plain)."""
    from airflow.serialization.serialized_objects import DagSerialization

    from airflow_osds.factory import build

    write("p.yml", f"""\
        pipeline: p
        steps:
          a: {{sql: "INSERT INTO s.a SELECT 1"}}
          b: {{sql: "INSERT INTO s.b SELECT * FROM s.a"}}
          c: {{after: [a], operator: {{class: airflow.providers.standard.operators.bash.BashOperator,
                                       kwargs: {{bash_command: "echo c"}}}}}}
          nums: {{after: [b, c], python: {{callable: {MOD}.numbers}}}}
          doubled: {{python: {{callable: {MOD}.double, expand: {{x: {{from: nums}}}}}}}}
          marts:
            after: [doubled]
            group:
              steps:
                first: {{sql: "INSERT INTO s.m1 SELECT * FROM s.b"}}
                second: {{sql: "INSERT INTO s.m2 SELECT * FROM s.m1"}}
          last: {{after: [marts], sql: "SELECT 1"}}
    """)
    fast = _dag(project, "p")
    monkeypatch.setattr(build, "_plain_edges", lambda cls: False)
    reference = _dag(project, "p")
    assert fast.task_dict["b"].upstream_task_ids == {"a"}
    assert fast.task_dict["marts.second"].upstream_task_ids == {"marts.first"}
    assert fast.task_dict["nums"].upstream_task_ids == {"b", "c"}
    assert DagSerialization.to_dict(fast) == DagSerialization.to_dict(reference)


def test_a_class_that_changes_rshift_keeps_it() -> None:
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import TaskGroup

    from airflow_osds.factory.build import _plain_edges

    class Custom(BashOperator):
        def set_downstream(self, *args, **kwargs):  # pragma: no cover - never called here
            return super().set_downstream(*args, **kwargs)

    assert _plain_edges(BashOperator)
    assert not _plain_edges(Custom)
    assert not _plain_edges(MappedOperator)
    assert not _plain_edges(TaskGroup)
