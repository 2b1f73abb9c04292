"""The `dbt` block: rendered from the manifest at parse time, wired by the data, located errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from airflow.sdk import Asset

from airflow_osds.dbt.fingerprint import project_fingerprint, write_fingerprint
from airflow_osds.factory.build import build_dag
from airflow_osds.factory.compile import compile_pipeline

from .conftest import errors_of

FIXTURE = Path(__file__).resolve().parents[1] / "dbt" / "data"


@pytest.fixture
def dbt_project(tmp_path: Path) -> Path:
    """The unit fixture project with its real manifest (from `dbt parse`) and a current fingerprint."""
    project = tmp_path / "dbt" / "shop"
    shutil.copytree(FIXTURE / "project", project, ignore=shutil.ignore_patterns("target", "logs"))
    (project / "target").mkdir()
    shutil.copy(FIXTURE / "manifest.json", project / "target" / "manifest.json")
    write_fingerprint(project / "target", project_fingerprint(project), target_schema="public")
    return project


PIPELINE = """\
pipeline: shop
steps:
  load_events:
    sql: "INSERT INTO analytics.events SELECT 1"
  transform:
    dbt:
      project: ../dbt/shop
      granularity: {granularity}
      sources: {{shop.snowplow.events: analytics.events}}
"""


def _asset(table: str) -> Asset:
    return Asset(name=f"warehouse.{table}", uri=f"osds://warehouse/{table.replace('.', '/')}", group="table")


def test_step_reads_sources_writes_models_and_runs_after_the_loader(write, project, dbt_project) -> None:
    write("shop.yml", PIPELINE.format(granularity="model").replace("shop.snowplow.events", "snowplow.events"))
    proj = project()
    assert not proj.errors, errors_of(proj)
    plan = proj.plans["shop"]
    assert plan.upstream["transform"] == {"load_events"}, "the dbt source is the table load_events writes"
    assert {r.qualified for r in plan.steps["transform"].reads} == {"analytics.events"}  # via `sources:`
    assert {r.qualified for r in plan.steps["transform"].writes} == {
        "marts.customer_totals_v1", "marts.events_daily", "marts.orders_enriched", "raw.raw_customers",
        "raw.raw_orders", "snapshots.customers_snapshot", "staging.stg_customers", "staging.stg_events",
        "staging.stg_orders",
    }


def test_without_mapping_the_source_is_its_schema_and_identifier(write, project, dbt_project) -> None:
    write("shop.yml", PIPELINE.format(granularity="model").replace("      sources: {shop.snowplow.events: analytics.events}\n", ""))
    plan = project().plans["shop"]
    assert {r.qualified for r in plan.steps["transform"].reads} == {"atomic.events"}
    assert plan.upstream["transform"] == set(), "load_events writes analytics.events, not atomic.events"


def test_model_granularity_builds_a_task_per_model_with_its_tests(write, project, dbt_project) -> None:
    write("shop.yml", PIPELINE.format(granularity="model").replace("shop.snowplow.events", "snowplow.events"))
    proj = project()
    dag = build_dag(compile_pipeline(proj.plans["shop"], proj), register=False)
    tasks = {t for t in dag.task_dict if t.startswith("transform.")}
    assert "transform.int_order_totals" not in tasks, "ephemeral models run inside their children"
    assert {"transform.stg_orders", "transform.customer_totals", "transform.orders_enriched"} <= tasks
    totals = dag.task_dict["transform.customer_totals"]
    # through the ephemeral int_order_totals: customer_totals runs after stg_orders
    assert {"transform.stg_customers", "transform.stg_orders"} <= totals.upstream_task_ids
    assert totals.select[0] == "fqn:shop.marts.customer_totals,file:customer_totals.sql,package:shop"
    assert totals.indirect_selection == "cautious"
    assert totals.populate_cache is False  # a one-model task does not list every schema's relations
    assert totals.outlets == [_asset("marts.customer_totals_v1")]
    assert totals.create_schemas == ["marts"]  # created before dbt runs: parallel tasks do not race on it
    assert dag.task_dict["transform.stg_orders"].create_schemas == ["staging"]
    # its lineage inputs: what it and its tests read, stg_orders through the ephemeral int_order_totals
    assert totals.inlets == [_asset("staging.stg_customers"), _asset("staging.stg_orders")]
    assert dag.task_dict["transform.stg_events"].upstream_task_ids == {"load_events"}
    assert dag.task_dict["transform.stg_events"].inlets == [_asset("analytics.events")]  # the source, as mapped


def test_project_and_folder_granularity(write, project, dbt_project) -> None:
    write("shop.yml", PIPELINE.format(granularity="project").replace("shop.snowplow.events", "snowplow.events"))
    proj = project()
    dag = build_dag(compile_pipeline(proj.plans["shop"], proj), register=False)
    assert [t for t in dag.task_dict if t.startswith("transform.")] == ["transform.project"]
    assert dag.task_dict["transform.project"].populate_cache is True
    assert set(dag.task_dict["transform.project"].create_schemas) >= {"marts", "staging"}
    write("shop.yml", PIPELINE.format(granularity="folder").replace("shop.snowplow.events", "snowplow.events"))
    proj = project()
    dag = build_dag(compile_pipeline(proj.plans["shop"], proj), register=False)
    folder_tasks = sorted(t for t in dag.task_dict if t.startswith("transform."))
    assert "transform.models_marts" in folder_tasks and "transform.models_staging" in folder_tasks
    assert "transform.models_staging" in dag.task_dict["transform.models_marts"].upstream_task_ids


def test_missing_manifest_is_a_located_error_with_the_fix(write, project, dbt_project) -> None:
    (dbt_project / "target" / "manifest.json").unlink()
    write("shop.yml", PIPELINE.format(granularity="model"))
    (error,) = errors_of(project())
    assert error.startswith("shop.yml:7:16: cannot read ") and "no dbt manifest; run `osds dbt-parse " in error


def test_stale_manifest_is_an_error(write, project, dbt_project) -> None:
    with (dbt_project / "models" / "marts" / "events_daily.sql").open("a") as handle:
        handle.write("\n-- edited\n")
    write("shop.yml", PIPELINE.format(granularity="model"))
    (error,) = errors_of(project())
    assert "is older than the project's files; run `osds dbt-parse" in error


def test_bad_selector_is_a_located_error(write, project, dbt_project) -> None:
    write("shop.yml", PIPELINE.format(granularity="model").replace("granularity: model", "select: ['result:error']"))
    (error,) = errors_of(project())
    assert error.startswith("shop.yml:8:15:") and "result:error" in error


def test_state_selectors_need_one_task_and_a_state_location(write, project, dbt_project) -> None:
    write("shop.yml", PIPELINE.format(granularity="model").replace("granularity: model", "select: ['state:modified+']"))
    assert errors_of(project()) == [
        "shop.yml:7:7: `state:` selectors need `granularity: project`: what changed is known only when dbt runs, "
        "so the step is one task (steps.transform.dbt)"
    ]


def test_selector_matching_nothing_says_so(write, project, dbt_project) -> None:
    write("shop.yml", PIPELINE.format(granularity="model").replace("granularity: model", "select: [tag:nope]"))
    (error,) = errors_of(project())
    assert "tag:nope" in error


def test_selector_granularity_makes_a_task_per_group(write, project, dbt_project) -> None:
    write("shop.yml", PIPELINE.format(granularity="selector").replace(
        "      sources:", "      groups: {loading: ['path:seeds'], staging: ['path:models/staging'], marts: ['path:models', 'path:snapshots']}\n      sources:"
    ))
    proj = project()
    assert not proj.errors, errors_of(proj)
    dag = build_dag(compile_pipeline(proj.plans["shop"], proj), register=False)
    assert sorted(t for t in dag.task_dict if t.startswith("transform.")) == [
        "transform.loading", "transform.marts", "transform.staging",
    ]
    staging = dag.task_dict["transform.staging"]
    assert staging.select and all(s.startswith("fqn:shop.staging.") for s in staging.select), staging.select
    assert staging.upstream_task_ids == {"transform.loading"}
    assert "transform.staging" in dag.task_dict["transform.marts"].upstream_task_ids
    assert _asset("staging.stg_orders") in staging.outlets


def test_selector_groups_in_a_cycle_are_an_error(write, project, dbt_project) -> None:
    write("shop.yml", PIPELINE.format(granularity="selector").replace(
        "      sources:", "      groups: {staging: ['path:models/staging'], rest: ['path:models', 'path:seeds', 'path:snapshots']}\n      sources:"
    ))
    (error,) = errors_of(project())
    assert "selector groups depend on each other in a cycle" in error and "regroup the selectors" in error


def test_selector_granularity_needs_groups(write, project, dbt_project) -> None:
    write("shop.yml", PIPELINE.format(granularity="selector"))
    (error,) = errors_of(project())
    assert "`granularity: selector` goes with `groups: {name: [selectors]}`" in error and error.startswith("shop.yml:7:7:")


def _parse_again(dbt_project: Path, **settings: object) -> None:
    """Rewrite the parse record as `osds dbt-parse` with these settings would."""
    write_fingerprint(dbt_project / "target", project_fingerprint(dbt_project), **settings)  # type: ignore[arg-type]


def test_the_step_runs_with_the_schema_the_manifest_was_parsed_with(write, project, dbt_project) -> None:
    _parse_again(dbt_project, target_schema="analytics")
    write("shop.yml", PIPELINE.format(granularity="project"))
    proj = project()
    assert not proj.errors, errors_of(proj)
    dag = build_dag(compile_pipeline(proj.plans["shop"], proj), register=False)
    assert dag.task_dict["transform.project"].target_schema == "analytics"


@pytest.mark.parametrize(
    ("settings", "step", "expected"),
    [
        ({"target_schema": "public"}, "      target_schema: analytics\n",
         "shop.yml:10:22: the manifest was parsed with target schema `public`, so its relations (and this step's "
         "Assets) are named for it; run `osds dbt-parse {project} --target-schema analytics` or drop "
         "`target_schema` (steps.transform.dbt.target_schema)"),
        ({"target_schema": None}, "",
         "shop.yml:7:16: the manifest does not say which target schema it was parsed with (plain `dbt parse`?); "
         "run `osds dbt-parse {project} --target-schema <schema>` (steps.transform.dbt.project)"),
        ({"target_schema": "public", "vars": {"enable_web": True}}, "      vars: {enable_web: false}\n",
         "shop.yml:10:13: the manifest was parsed with vars {\"enable_web\": true}, not the step's; run "
         "`osds dbt-parse {project} --vars '{\"enable_web\": false}'` (steps.transform.dbt.vars)"),
    ],
    ids=["schema-mismatch", "schema-unknown", "vars-mismatch"],
)
def test_parse_settings_that_differ_are_located_errors(write, project, dbt_project, settings, step, expected) -> None:
    _parse_again(dbt_project, **settings)
    write("shop.yml", PIPELINE.format(granularity="project") + step)
    assert errors_of(project()) == [expected.replace("{project}", str(dbt_project))]


def test_templated_vars_match_any_parse_value(write, project, dbt_project) -> None:
    _parse_again(dbt_project, target_schema="public", vars={"day": "2026-01-01"})
    write("shop.yml", PIPELINE.format(granularity="project") + "      vars: {day: '{{ ds }}'}\n")
    assert not project().errors


def test_the_fingerprint_covers_what_dbt_reads_only(dbt_project) -> None:
    before = project_fingerprint(dbt_project)
    (dbt_project / "profiles.yml").write_text("shop: {target: dev}\n")  # dbt never reads a project's profiles.yml
    (dbt_project / "notes.md").write_text("# not in any docs path\n")
    assert project_fingerprint(dbt_project) == before
    (dbt_project / "models" / "staging" / "new_model.sql").write_text("select 1")
    assert project_fingerprint(dbt_project) != before
    package = dbt_project / "dbt_packages" / "pkg"
    (package / "models").mkdir(parents=True)
    (package / "dbt_project.yml").write_text("name: pkg\nversion: '1'\n")
    with_package = project_fingerprint(dbt_project)
    (package / "models" / "m.sql").write_text("select 2")  # an installed package's model
    assert project_fingerprint(dbt_project) != with_package


def test_wait_for_sources_starts_the_group_with_a_deferrable_freshness_sensor(write, project, dbt_project) -> None:
    from airflow_osds.dbt.manifest_build import parse_project

    (dbt_project / "models" / "sources.yml").write_text(
        "version: 2\nsources:\n  - name: snowplow\n    schema: atomic\n    loaded_at_field: collector_tstamp\n"
        "    freshness: {error_after: {count: 1, period: hour}}\n    tables:\n      - name: events\n"
    )
    parse_project(dbt_project, target_schema="public")  # real dbt parse: freshness lands in the manifest
    write("shop.yml", PIPELINE.format(granularity="model").replace("shop.snowplow.events", "snowplow.events")
          + "      wait_for_sources: {poke_interval: 30s}\n")
    proj = project()
    assert not proj.errors, errors_of(proj)
    dag = build_dag(compile_pipeline(proj.plans["shop"], proj), register=False)
    sensor = dag.task_dict["transform.sources_fresh"]
    assert type(sensor).__name__ == "DbtSourceFreshnessSensor"
    assert (sensor.sources, sensor.deferrable, sensor.poke_interval) == (["snowplow.events"], True, 30)
    assert sensor.inlets == [_asset("analytics.events")]
    reading = {t for t, task in dag.task_dict.items() if t.startswith("transform.") and not task.upstream_task_ids - {"load_events"}}
    assert reading == {"transform.sources_fresh"}, "every other task of the group waits for the sensor"
    assert "transform.sources_fresh" in dag.task_dict["transform.stg_events"].upstream_task_ids


def test_wait_for_sources_without_freshness_in_the_project_is_a_located_error(write, project, dbt_project) -> None:
    write("shop.yml", PIPELINE.format(granularity="model") + "      wait_for_sources: true\n")
    (error,) = errors_of(project())
    assert error.startswith("shop.yml:10:25: none of the dbt sources this step reads declares `loaded_at_field`"), error


def test_a_manifest_with_another_file_name_is_read(write, project, dbt_project) -> None:
    elsewhere = dbt_project.parent / "artifacts"
    elsewhere.mkdir()
    (dbt_project / "target" / "manifest.json").rename(elsewhere / "shop-manifest.json")
    (dbt_project / "target" / "osds_fingerprint.json").rename(elsewhere / "osds_fingerprint.json")
    write("shop.yml", PIPELINE.format(granularity="project") + "      manifest: ../dbt/artifacts/shop-manifest.json\n")
    proj = project()
    assert not proj.errors, errors_of(proj)
    dag = build_dag(compile_pipeline(proj.plans["shop"], proj), register=False)
    assert dag.task_dict["transform.project"].parse_state == str(elsewhere)
