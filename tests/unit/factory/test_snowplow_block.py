"""The ``snowplow`` block: one load task, or, with ``wait_for_files``, a deferrable new-files sensor then the load."""

from __future__ import annotations

from airflow_osds.factory.build import build_dag
from airflow_osds.factory.compile import compile_pipeline

from .conftest import errors_of

PIPELINE = """\
pipeline: events
schedule: "@continuous"
defaults: {{retries: 2}}
steps:
  load:
    snowplow:
      source: ../landing/
      iglu: [../iglu]
      entities: [com.snowplowanalytics.snowplow/web_page/jsonschema/1]
{wait}
  count:
    sql: INSERT INTO marts.counts SELECT count(*) FROM atomic.events
"""


def _dag(project):
    proj = project()
    assert not proj.errors, errors_of(proj)
    return build_dag(compile_pipeline(proj.plans["events"], proj), register=False)


def test_without_waiting_the_step_is_one_load_task(write, project) -> None:
    write("events.yml", PIPELINE.format(wait=""))
    dag = _dag(project)
    assert type(dag.task_dict["load"]).__name__ == "SnowplowLoadOperator"
    assert dag.task_dict["count"].upstream_task_ids == {"load"}


def test_the_parse_helper_is_on_unless_the_step_turns_it_off(write, project) -> None:
    from airflow_osds.snowplow import DEFAULT_HELPER_AFTER_LINES

    write("events.yml", PIPELINE.format(wait=""))
    assert _dag(project).task_dict["load"].options().helper_after_lines == DEFAULT_HELPER_AFTER_LINES
    write("events.yml", PIPELINE.format(wait="      parse_helper: false"))
    assert _dag(project).task_dict["load"].options().helper_after_lines is None


def test_wait_for_files_puts_a_deferrable_sensor_before_the_load(write, project, tmp_path) -> None:
    write("events.yml", PIPELINE.format(wait="      wait_for_files: {poke_interval: 5s, timeout: 2h, soft_fail: false}"))
    dag = _dag(project)
    sensor, load = dag.task_dict["load.new_files"], dag.task_dict["load.load"]
    assert type(sensor).__name__ == "SnowplowNewFilesSensor"
    assert (sensor.deferrable, sensor.poke_interval, sensor.timeout, sensor.soft_fail) == (True, 5.0, 7200.0, False)
    # Both look at the same folder, resolved against the pipeline file, with the same ledger.
    assert (sensor.source, sensor.base_dir) == (load.source, load.base_dir) == ("../landing/", str(tmp_path / "pipelines"))
    assert (sensor.warehouse_conn_id, sensor.schema) == (load.warehouse_conn_id, load.schema)
    assert load.upstream_task_ids == {"load.new_files"}
    # The step's outputs are the load's: what reads atomic.events runs after the load, not after the sensor.
    assert {o.uri for o in load.outlets} >= {"osds://warehouse/atomic/events",
                                             "osds://warehouse/atomic/com_snowplowanalytics_snowplow_web_page_1"}
    assert sensor.outlets == []
    assert dag.task_dict["count"].upstream_task_ids == {"load.load"}
    assert sensor.retries == load.retries == 2  # the step's settings reach both
    assert dag.max_active_runs == 1


def test_wait_for_files_true_takes_the_defaults(write, project) -> None:
    write("events.yml", PIPELINE.format(wait="      wait_for_files: true"))
    sensor = _dag(project).task_dict["load.new_files"]
    assert (sensor.poke_interval, sensor.timeout, sensor.soft_fail) == (30.0, 3600.0, True)


def test_a_wrong_wait_setting_is_located(write, project) -> None:
    write("events.yml", PIPELINE.format(wait="      wait_for_files: {poke: 5s}"))
    assert errors_of(project()) == [
        "events.yml:10:24: unknown key `poke`: allowed keys: poke_interval, soft_fail, timeout "
        "(steps.load.snowplow.wait_for_files.poke)"
    ]
