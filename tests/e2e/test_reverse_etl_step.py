"""The `reverse_etl` block through Airflow's task runner: a model's rows synced to a real HTTP endpoint on
127.0.0.1 (tests/reverse_etl_servers.JsonSink), only the changes sent on later runs, the counts on the
destination's Asset event, rejections stored and failing the task past the threshold, a run with nothing
to send skipped, credentials kept out of the log, and ``osds sync --dry-run`` previewing without sending."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_snowplow_step import _asset_events, _return_value
from tests.reverse_etl_servers import JsonSink

TOKEN = "sink-token-0123"

PIPELINE = """\
pipeline: {dag_id}
schedule: "@daily"
start_date: 2026-01-01
steps:
  vips:
    sql: |
      DROP TABLE IF EXISTS marts.{dag_id}_vips;
      CREATE TABLE marts.{dag_id}_vips AS
      SELECT id, email, plan, ltv FROM crm.{dag_id}_users WHERE ltv >= 100;
  to_sink:
    reverse_etl:
      source: {{table: marts.{dag_id}_vips, key: id}}
      fields:
        email: email
        plan: {{sql: upper(plan)}}
        source: {{value: "{{{{ dag.dag_id }}}}"}}
      groups: {{whale: "ltv >= 1000"}}
      group_field: segments
      destination: {{kind: http, connection: retl_sink, path: /hooks/records}}
      mode: mirror
      max_rejected: 0
"""


@pytest.fixture
def sink(monkeypatch: pytest.MonkeyPatch) -> Iterator[JsonSink]:
    with JsonSink(token=TOKEN) as server:
        monkeypatch.setenv("AIRFLOW_CONN_RETL_SINK", json.dumps({
            "conn_type": "reverse_etl_http", "host": server.base_url, "password": TOKEN,
            "extra": {"auth_type": "bearer", "timeout": 5}}))
        yield server



def _project(tmp_path: Path, warehouse: Any, dag_id: str) -> Path:
    warehouse.execute("CREATE SCHEMA IF NOT EXISTS crm; CREATE SCHEMA IF NOT EXISTS marts")
    warehouse.execute(f"DROP TABLE IF EXISTS crm.{dag_id}_users")
    warehouse.execute(f"CREATE TABLE crm.{dag_id}_users (id int, email text, plan text, ltv numeric)")
    warehouse.execute(f"INSERT INTO crm.{dag_id}_users VALUES (1, 'ada@x.io', 'pro', 1500), (2, 'alan@x.io', 'free', 100), "
                        "(3, 'grace@x.io', 'pro', 400), (4, 'edsger@x.io', 'free', 10), (5, 'barbara@x.io', 'pro', 2000)")
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir(exist_ok=True)
    (pipelines / f"{dag_id}.yml").write_text(PIPELINE.format(dag_id=dag_id))
    return pipelines


def test_a_sync_sends_everything_then_only_the_changes_and_skips_when_nothing_changed(
    warehouse: Any, sink: JsonSink, pipeline_dags: Any, run_dag: Any, tmp_path: Path, capfd: Any
) -> None:
    dag_id = "retl_e2e"
    dag = pipeline_dags(_project(tmp_path, warehouse, dag_id))[dag_id]
    assert dag.task_dict["to_sink"].upstream_task_ids == {"vips"}, "wired by the table the sql step writes"
    assert [o.uri for o in dag.task_dict["to_sink"].outlets] == ["osds+destination://retl_sink/hooks%2Frecords"]

    first = run_dag(dag)
    assert first.state == "success", first
    assert sink.records == {
        "1": {"fields": {"email": "ada@x.io", "plan": "PRO", "source": dag_id, "segments": ["whale"]}, "groups": ["whale"]},
        "2": {"fields": {"email": "alan@x.io", "plan": "FREE", "source": dag_id, "segments": []}, "groups": []},
        "3": {"fields": {"email": "grace@x.io", "plan": "PRO", "source": dag_id, "segments": []}, "groups": []},
        "5": {"fields": {"email": "barbara@x.io", "plan": "PRO", "source": dag_id, "segments": ["whale"]},
              "groups": ["whale"]},
    }
    counts = _return_value(dag_id, "to_sink")
    assert {k: counts[k] for k in ("created", "updated", "deleted", "rejected", "unchanged")} == {
        "created": 4, "updated": 0, "deleted": 0, "rejected": 0, "unchanged": 0}
    assert [e["created"] for e in _asset_events(dag_id, "hooks%2Frecords")] == [4]
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in sink.received)

    # Grace becomes a whale, Alan falls below the threshold (mirror deletes him), Edsger qualifies.
    warehouse.execute(f"UPDATE crm.{dag_id}_users SET ltv = 4000 WHERE id = 3; UPDATE crm.{dag_id}_users SET ltv = 0 "
                        f"WHERE id = 2; UPDATE crm.{dag_id}_users SET ltv = 150 WHERE id = 4")
    sink.applied.clear()
    second = run_dag(dag)
    assert second.state == "success", second
    assert sorted(sink.applied) == [("2", "delete"), ("3", "update"), ("4", "create")]
    assert set(sink.records) == {"1", "3", "4", "5"} and sink.records["3"]["groups"] == ["whale"]
    counts = _return_value(dag_id, "to_sink")
    assert {k: counts[k] for k in ("created", "updated", "deleted", "unchanged")} == {
        "created": 1, "updated": 1, "deleted": 1, "unchanged": 2}
    log = "".join(capfd.readouterr())
    assert f"sync {dag_id}.to_sink (mirror → retl_sink/hooks/records): 1 created, 1 updated, 1 deleted, 0 rejected, " \
           "2 unchanged" in log
    assert TOKEN not in log

    requests = len(sink.received)
    third = run_dag(dag)
    assert third.task_states["to_sink"] == "skipped", third
    assert len(sink.received) == requests, "nothing was sent"
    assert "nothing to send" in "".join(capfd.readouterr())
    assert len(_asset_events(dag_id, "hooks%2Frecords")) == 2, "a skipped sync emits no Asset event"


def test_rejections_fail_the_task_past_the_threshold_and_are_sent_again_next_run(
    warehouse: Any, sink: JsonSink, pipeline_dags: Any, run_dag: Any, tmp_path: Path, capfd: Any
) -> None:
    dag_id = "retl_e2e_reject"
    dag = pipeline_dags(_project(tmp_path, warehouse, dag_id))[dag_id]
    sink.reject = {"3": "email domain is blocked"}  # the endpoint refuses the request carrying it: 422
    failed = run_dag(dag)
    assert failed.task_states["to_sink"] == "failed", failed
    log = "".join(capfd.readouterr())
    assert "AirflowFailException" in log and "4 of 4 records rejected, more than max_rejected=0" in log
    rejected = dict(warehouse.query(
        "SELECT key, reason FROM osds_state.reverse_etl_rejections WHERE sync_id = %s", (f"{dag_id}.to_sink",)))
    assert set(rejected) == {"1", "2", "3", "5"} and all("HTTP 422" in r and "email domain is blocked" in r
                                                         for r in rejected.values())
    assert sink.records == {}

    sink.reject = {}
    retried = run_dag(dag)
    assert retried.state == "success", retried
    assert set(sink.records) == {"1", "2", "3", "5"}
    assert warehouse.scalar("SELECT count(*) FROM osds_state.reverse_etl_rejections WHERE sync_id = %s",
                            (f"{dag_id}.to_sink",)) == 0


def test_refused_credentials_fail_without_the_secret_in_the_log(
    warehouse: Any, sink: JsonSink, pipeline_dags: Any, run_dag: Any, tmp_path: Path, capfd: Any,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    dag_id = "retl_e2e_auth"
    wrong = "wrong-token-9876"
    monkeypatch.setenv("AIRFLOW_CONN_RETL_SINK", json.dumps({
        "conn_type": "reverse_etl_http", "host": sink.base_url, "password": wrong, "extra": {"auth_type": "bearer"}}))
    result = run_dag(pipeline_dags(_project(tmp_path, warehouse, dag_id))[dag_id])
    assert result.task_states["to_sink"] == "failed", result
    log = "".join(capfd.readouterr())
    assert "credentials are refused" in log
    assert wrong not in log, "the server echoes the token it got; the destination must not repeat it"


def test_osds_sync_dry_run_shows_what_would_be_sent_and_sends_nothing(
    warehouse: Any, sink: JsonSink, tmp_path: Path
) -> None:
    dag_id = "retl_e2e_preview"
    pipelines = _project(tmp_path, warehouse, dag_id)
    # The model the sync reads, as the sql step would build it; the `source` constant is a template,
    # which only Airflow renders, so the preview refuses that step: a copy without it is previewed.
    warehouse.execute(f"DROP TABLE IF EXISTS marts.{dag_id}_vips; CREATE TABLE marts.{dag_id}_vips AS "
                        f"SELECT id, email, plan, ltv FROM crm.{dag_id}_users WHERE ltv >= 100")
    osds = str(Path(sys.executable).parent / "osds")
    env = {**os.environ}
    templated = subprocess.run([osds, "sync", str(pipelines), f"{dag_id}.to_sink", "--dry-run"],
                               capture_output=True, text=True, env=env, timeout=120)
    assert templated.returncode == 2 and "has templates in fields, which only Airflow renders" in templated.stderr
    text = (pipelines / f"{dag_id}.yml").read_text().replace('source: {value: "{{ dag.dag_id }}"}', "source: {value: crm}")
    (pipelines / f"{dag_id}.yml").write_text(text)
    result = subprocess.run([osds, "sync", str(pipelines), f"{dag_id}.to_sink", "--dry-run", "--limit", "2"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"{dag_id}.to_sink (sync id {dag_id}.to_sink, mirror → http on retl_sink); dry run, nothing sent:",
        "would send 4: 4 create, 0 update, 0 delete; 0 unchanged",
        # (fields in jsonb's order: shorter names first)
        '  create 1: plan="PRO", email="ada@x.io", source="crm", segments=["whale"]  groups=[\'whale\']',
        '  create 2: plan="FREE", email="alan@x.io", source="crm", segments=[]',
        "  … and 2 more",
    ]
    assert sink.received == []
    assert warehouse.scalar("SELECT count(*) FROM osds_state.reverse_etl_delivered WHERE sync_id = %s",
                            (f"{dag_id}.to_sink",)) == 0
    unknown = subprocess.run([osds, "sync", str(pipelines), f"{dag_id}.nope", "--dry-run"],
                             capture_output=True, text=True, env=env, timeout=120)
    assert unknown.returncode == 2 and f"sync steps: {dag_id}.to_sink" in unknown.stderr
