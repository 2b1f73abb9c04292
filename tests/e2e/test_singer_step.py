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

from tests.e2e.test_snowplow_step import _asset_events, _return_value
from tests.singer_plugins import TAP_JSONL, plugin

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
    return plugin("tap-jsonl", TAP_JSONL)


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


MELTANO_YML = """\
default_environment: dev
project_id: e2e
send_anonymous_usage_stats: false
state_backend:
  uri: file://${MELTANO_PROJECT_ROOT}/.meltano/state
environments:
  - name: dev
plugins:
  extractors:
    - name: tap-crm
      inherit_from: tap-postgres
      config:
        database: crm_source
      select: ["public-contacts.*", "!public-contacts.plan"]
      metadata:
        public-contacts: {replication-key: updated_at}
    - name: tap-postgres
      namespace: tap_postgres
      pip_url: meltanolabs-tap-postgres==0.10.0
      executable: tap-postgres
      capabilities: [catalog, discover, state]
      settings:
        - {name: password, kind: password}
        - {name: port, kind: integer}
        - {name: filter_schemas, kind: array}
      config:
        host: 127.0.0.1
        port: $CRM_PORT
        user: postgres
        password: $CRM_PASSWORD
        filter_schemas: '["public"]'
  loaders:
    - name: target-osds
      namespace: target_osds
      executable: osds-target-postgres
      config:
        default_target_schema: raw_meltano_e2e
"""

MELTANO_PIPELINE = """\
pipeline: singer_meltano_e2e
schedule: "@daily"
start_date: 2026-01-01
steps:
  extract:
    singer:
      meltano: {project: ../meltano/meltano.yml, extractor: tap-crm, loader: target-osds}
"""


def test_a_meltano_projects_extractor_and_loader_run_without_meltano_from_meltanos_state(
    warehouse: Any, pipeline_dags: Any, run_dag: Any, tmp_path: Path, monkeypatch: Any, capfd: Any
) -> None:
    from airflow_osds.demo import seed_crm_source

    from tests.conftest import REPO_ROOT

    stack = warehouse.stack
    seed_crm_source(stack, REPO_ROOT / "include" / "data" / "crm" / "crm_source.sql")
    project = tmp_path / "meltano"
    project.mkdir()
    (project / "meltano.yml").write_text(MELTANO_YML)
    # What `meltano run tap-crm target-osds` left in its file state backend: contacts up to 2026-11-22.
    bookmark = {"bookmarks": {"public-contacts": {"replication_key": "updated_at",
                                                  "replication_key_value": "2026-11-22T00:00:00+00:00"}}}
    state_dir = project / ".meltano" / "state" / "dev:tap-crm-to-target-osds"
    state_dir.mkdir(parents=True)
    (state_dir / "state.json").write_text(json.dumps({"completed": {"singer_state": bookmark}}))
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    (pipelines / "singer_meltano_e2e.yml").write_text(MELTANO_PIPELINE)
    monkeypatch.setenv("CRM_PORT", str(stack.postgres.port))  # a string cast to the setting's kind (integer)
    monkeypatch.setenv("CRM_PASSWORD", stack.postgres.password)  # the server's own: it must never be printed

    dag = pipeline_dags(pipelines)["singer_meltano_e2e"]
    assert [o.uri for o in dag.task_dict["extract"].outlets] == ["osds://warehouse/raw_meltano_e2e/contacts"]
    result = run_dag(dag)
    assert result.state == "success", result
    summary = _return_value("singer_meltano_e2e", "extract")
    assert summary["started_from"] == "imported state"
    assert summary["state_id"] == "singer_meltano_e2e:extract:tap-crm-to-target-osds"
    # From Meltano's bookmark on: the 4 contacts updated on 2026-11-22 or later, without the deselected plan.
    with stack.postgres.connect("crm_source") as source:
        expected = source.execute("SELECT user_id FROM contacts WHERE updated_at >= '2026-11-22' ORDER BY 1").fetchall()
    assert len(expected) == 4 and summary["records"] == {"public-contacts": 4}
    with stack.postgres.connect(warehouse.dbname) as conn:
        assert conn.execute("SELECT user_id FROM raw_meltano_e2e.contacts ORDER BY 1").fetchall() == expected
    columns = warehouse.scalar("SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM "
                               "information_schema.columns WHERE table_schema = 'raw_meltano_e2e' AND table_name = 'contacts'")
    assert "plan" not in columns.split(",") and "email" in columns.split(",")
    assert summary["state"]["bookmarks"]["public-contacts"]["replication_key_value"].startswith("2026-11-23")
    log = "".join(capfd.readouterr())
    assert "s3cr3t-pw-e2e" not in log
