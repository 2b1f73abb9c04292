"""The `singer` block at parse time: what it declares (tables named from the YAML alone), what it
compiles to, and its errors at file:line:column — no process, connection or network involved."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from airflow_osds.factory.compile import compile_project

from .conftest import errors_of

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "meltano"


def _task(project: Any, pipeline: str, step: str) -> Any:
    compiled = compile_project(project)
    return next(n for n in compiled.pipelines[pipeline].nodes if n.id == step)


def _writes(project: Any, pipeline: str, step: str) -> list[str]:
    plan = project.plans[pipeline]
    return sorted(ref.uri for s in plan.tasks() if s.id == step for ref in s.writes)


def _warnings(project: Any) -> list[str]:
    return [p.render(Path(f).name) for f, p in project.warnings]


def test_a_tap_step_declares_the_tables_its_select_names_and_compiles_to_the_operator(write, project) -> None:
    write("crm.yml", """\
        pipeline: crm
        steps:
          extract:
            singer:
              tap:
                executable: tap-postgres
                pip_url: meltanolabs-tap-postgres==0.10.0
                connection: crm_db
                select: [public-contacts.*, "!public-contacts.email", public-Order_Lines.id]
              schema: raw_crm
              streams: [public-notes]
              state_id: crm-main
              timeout: 30m
          count:
            sql: SELECT count(*) FROM raw_crm.contacts
        """)
    loaded = project()
    assert errors_of(loaded) == []
    assert _writes(loaded, "crm", "extract") == [
        "osds://warehouse/raw_crm/contacts", "osds://warehouse/raw_crm/notes", "osds://warehouse/raw_crm/order_lines"]
    task = _task(loaded, "crm", "extract")
    assert task.operator == "airflow_osds.operators.singer.SingerOperator"
    assert {k: task.kwargs[k] for k in ("tap", "target", "schema", "warehouse_conn_id", "state_id", "timeout")} == {
        "tap": {"name": "tap-postgres", "executable": "tap-postgres", "pip_url": "meltanolabs-tap-postgres==0.10.0",
                "connection": "crm_db", "select": ["public-contacts.*", "!public-contacts.email", "public-Order_Lines.id"]},
        "target": {"executable": "osds-target-postgres", "name": "osds-target-postgres", "connection": "warehouse"},
        "schema": "raw_crm", "warehouse_conn_id": "warehouse", "state_id": "crm-main", "timeout": 1800.0,
    }
    compiled = compile_project(loaded)
    assert ("extract", "count") in compiled.pipelines["crm"].edges, "the reader of raw_crm.contacts runs after"


def test_streams_known_only_after_discovery_are_a_warning_naming_what_to_write(write, project) -> None:
    write("p.yml", """\
        pipeline: p
        steps:
          extract:
            singer:
              tap: {executable: tap-github, select: ["*.*"]}
        """)
    loaded = project()
    assert errors_of(loaded) == []
    assert _warnings(loaded) == [
        "p.yml:5:7: step `extract`: the tables of streams matching *.* are known only after discovery, so they are "
        "not declared as outputs: list the streams under `streams:` to declare them (steps.extract.singer)"]


def test_a_given_catalog_names_its_selected_streams_and_a_missing_one_is_an_error_at_its_field(write, project, tmp_path) -> None:
    catalog = {"streams": [
        {"tap_stream_id": s, "stream": s, "schema": {"properties": {"id": {"type": "integer"}}},
         "metadata": [{"breadcrumb": [], "metadata": {"selected": s != "skipped"}}]} for s in ("users", "skipped")]}
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "catalog.json").write_text(json.dumps(catalog))
    write("p.yml", "pipeline: p\nsteps:\n  extract:\n    singer:\n      tap: {executable: tap-x, catalog: catalog.json}\n")
    write("q.yml", "pipeline: q\nsteps:\n  extract:\n    singer:\n      tap: {executable: tap-x, catalog: nowhere.json}\n")
    loaded = project()
    assert _writes(loaded, "p", "extract") == ["osds://warehouse/raw/users"]
    assert _task(loaded, "p", "extract").kwargs["tap"]["catalog"] == str(tmp_path / "pipelines" / "catalog.json")
    (error,) = errors_of(loaded)
    assert error.startswith("q.yml:5:41: cannot read ") and "nowhere.json" in error
    assert error.endswith("(steps.extract.singer.tap.catalog)")


def test_a_step_without_a_tap_or_a_project_says_what_to_write(write, project) -> None:
    write("p.yml", "pipeline: p\nsteps:\n  extract:\n    singer: {schema: raw}\n")
    assert errors_of(project()) == [
        "p.yml:4:13: a singer step needs a `tap` (executable, pip_url, config…) or a `meltano` project (steps.extract.singer)"]


def test_a_meltano_project_gives_the_plugins_and_its_settings_stay_for_run_time(write, project, tmp_path) -> None:
    shutil.copytree(FIXTURE, tmp_path / "meltano")
    write("m.yml", """\
        pipeline: m
        steps:
          extract:
            singer:
              meltano: {project: ../meltano/meltano.yml, extractor: tap-jsonl-orders, loader: target-osds}
              streams: [orders]
        """)
    loaded = project()
    assert errors_of(loaded) == []
    task = _task(loaded, "m", "extract")
    assert task.kwargs["tap"] == {"name": "tap-jsonl-orders", "executable": "tap-jsonl", "pip_url": "tap-jsonl==0.3.1",
                                  "select": ["orders.*"], "metadata": {"events": {"replication-method": "INCREMENTAL"}},
                                  "catalog_arg": "--catalog"}
    assert task.kwargs["target"] == {"name": "target-osds", "executable": "osds-target-postgres", "pip_url": None,
                                     "connection": "warehouse"}
    assert task.kwargs["schema"] == "singer_dev", "the loader's default_target_schema in the default environment"
    assert task.kwargs["meltano"] == {"project": str(tmp_path / "meltano" / "meltano.yml"), "environment": None,
                                      "extractor": "tap-jsonl-orders", "loader": "target-osds", "import_state": True}
    assert _writes(loaded, "m", "extract") == ["osds://warehouse/singer_dev/orders"]
    assert "DATA_DIR" not in repr(task.kwargs) and "PG_URL" not in repr(task.kwargs), "settings are read at run time"


def test_a_misspelled_meltano_plugin_is_an_error_at_the_step_with_a_suggestion(write, project, tmp_path) -> None:
    shutil.copytree(FIXTURE, tmp_path / "meltano")
    write("m.yml", "pipeline: m\nsteps:\n  extract:\n    singer:\n      meltano: {project: ../meltano/meltano.yml, extractor: tap-jsnl}\n")
    (error,) = errors_of(project())
    assert error.startswith("m.yml:5:16: ") and error.endswith("(steps.extract.singer.meltano)")
    assert "tap-jsnl" in error and "did you mean `tap-jsonl`" in error.replace("'", "`"), error
