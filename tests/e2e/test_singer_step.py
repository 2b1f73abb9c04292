"""The `singer` block through Airflow's task runner: a real PyPI tap (tap-jsonl, in its own virtualenv)
into osds-target-postgres on the warehouse; the state stored in the warehouse and passed back; a
step reading the stream's table wired after the sync; Asset events with record counts; a full
refresh; bad config and a missing executable failing the task with what to fix."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from airflow_osds.singer.plugins import PluginError, executable

from tests.e2e.test_snowplow_step import _asset_events, _return_value

TAP_JSONL = "tap-jsonl==0.3.1"

PIPELINE = """\
pipeline: {dag_id}
schedule: "@daily"
start_date: 2026-01-01
steps:
  extract:
    singer:
      tap:
        executable: tap-jsonl
        pip_url: {pip_url}
        config:
          path: "{data}/*.jsonl"
          stream_name: contacts
          primary_keys: [id]
      schema: raw_singer_e2e
      streams: [contacts]
      full_refresh: "{{{{ dag_run.conf.get('full_refresh', false) }}}}"
  contact_counts:
    sql: |
      DROP TABLE IF EXISTS public.contact_counts;
      CREATE TABLE public.contact_counts AS SELECT count(*) AS n FROM raw_singer_e2e.contacts;
"""


@pytest.fixture(scope="module")
def tap_jsonl() -> Path:
    try:
        return executable("tap-jsonl", pip_url=TAP_JSONL)
    except PluginError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"the {TAP_JSONL} virtualenv could not be built: {exc}")
        pytest.skip(f"the {TAP_JSONL} virtualenv could not be built: {exc}")


def _write(path: Path, ids: range) -> None:
    path.write_text("".join(json.dumps({"id": i, "email": f"u{i}@example.com", "plan": "pro" if i % 3 else "free"}) + "\n"
                            for i in ids))


def _project(tmp_path: Path, dag_id: str, **fields: str) -> tuple[Path, Path]:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir(exist_ok=True)
    (pipelines / f"{dag_id}.yml").write_text(PIPELINE.format(**{"dag_id": dag_id, "pip_url": TAP_JSONL, "data": data, **fields}))
    return pipelines, data


def test_a_singer_step_syncs_keeps_the_state_and_the_reader_of_its_table_runs_after_it(
    tap_jsonl: Path, warehouse: Any, pipeline_dags: Any, run_dag: Any, tmp_path: Path
) -> None:
    pipelines, data = _project(tmp_path, "singer_e2e")
    _write(data / "a.jsonl", range(1, 301))
    dag = pipeline_dags(pipelines)["singer_e2e"]
    assert dag.task_dict["contact_counts"].upstream_task_ids == {"extract"}, "wired by raw_singer_e2e.contacts"
    assert [o.uri for o in dag.task_dict["extract"].outlets] == ["osds://warehouse/raw_singer_e2e/contacts"]

    first = run_dag(dag)
    assert first.state == "success", first
    summary = _return_value("singer_e2e", "extract")
    assert summary["records"] == {"contacts": 300}
    assert summary["started_from"] == "no state"
    assert summary["state_id"] == "singer_e2e:extract:tap-jsonl-to-osds-target-postgres"
    assert warehouse.scalar("SELECT n FROM public.contact_counts") == 300
    stored = warehouse.scalar("SELECT state FROM osds_state.singer_state WHERE state_id = %s", (summary["state_id"],))
    assert stored == summary["state"] and "bookmarks" in stored
    assert [e["records"] for e in _asset_events("singer_e2e", "/raw_singer_e2e/contacts")] == [300]

    _write(data / "b.jsonl", range(301, 351))
    os.utime(data / "b.jsonl", (os.path.getmtime(data / "a.jsonl") + 60,) * 2)
    second = run_dag(dag)
    assert second.state == "success", second
    again = _return_value("singer_e2e", "extract")
    assert again["started_from"] == "stored state"
    # tap-jsonl bookmarks each file's mtime and compares with >=, so a.jsonl is re-sent: the key absorbs it.
    assert again["records"] == {"contacts": 350}
    assert again["state"] != summary["state"], "the bookmark moved on to b.jsonl"
    assert warehouse.scalar("SELECT count(*) FROM raw_singer_e2e.contacts") == 350
    assert warehouse.scalar("SELECT count(DISTINCT id) FROM raw_singer_e2e.contacts") == 350

    refreshed = run_dag(dag, run_conf={"full_refresh": True})
    assert refreshed.state == "success", refreshed
    full = _return_value("singer_e2e", "extract")
    assert (full["started_from"], full["records"]) == ("full refresh", {"contacts": 350})
    assert warehouse.scalar("SELECT count(*) FROM raw_singer_e2e.contacts") == 350


def test_bad_config_fails_the_task_naming_the_tap_and_its_error(
    tap_jsonl: Path, warehouse: Any, pipeline_dags: Any, run_dag: Any, tmp_path: Path, capfd: Any
) -> None:
    pipelines, data = _project(tmp_path, "singer_bad_config")
    text = (pipelines / "singer_bad_config.yml").read_text().replace("stream_name: contacts", "stream_name: 42")
    (pipelines / "singer_bad_config.yml").write_text(text.replace(f'path: "{data}/*.jsonl"', "paht: nowhere"))
    result = run_dag(pipeline_dags(pipelines)["singer_bad_config"])
    assert result.task_states["extract"] == "failed", result
    assert result.task_states["contact_counts"] == "upstream_failed"
    log = "".join(capfd.readouterr())
    assert "the tap (exit 1) failed" in log and "'path' is a required property" in log


def test_a_missing_executable_fails_the_task_saying_what_to_install(
    warehouse: Any, pipeline_dags: Any, run_dag: Any, tmp_path: Path, capfd: Any
) -> None:
    pipelines, _ = _project(tmp_path, "singer_missing")
    text = (pipelines / "singer_missing.yml").read_text()
    text = text.replace("executable: tap-jsonl", "executable: tap-nowhere-to-be-found")
    (pipelines / "singer_missing.yml").write_text(text.replace(f"        pip_url: {TAP_JSONL}\n", ""))
    result = run_dag(pipeline_dags(pipelines)["singer_missing"])
    assert result.task_states["extract"] == "failed", result
    log = "".join(capfd.readouterr())
    assert "AirflowFailException" in log and "no executable 'tap-nowhere-to-be-found' on PATH" in log
