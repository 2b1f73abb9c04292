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
    write_fingerprint(project / "target", project_fingerprint(project))
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
    assert totals.select[0] == "path:models/marts/customer_totals.sql"
    assert totals.indirect_selection == "cautious"
    assert totals.outlets == [_asset("marts.customer_totals_v1")]
    assert dag.task_dict["transform.stg_events"].upstream_task_ids == {"load_events"}


def test_project_and_folder_granularity(write, project, dbt_project) -> None:
    write("shop.yml", PIPELINE.format(granularity="project").replace("shop.snowplow.events", "snowplow.events"))
    proj = project()
    dag = build_dag(compile_pipeline(proj.plans["shop"], proj), register=False)
    assert [t for t in dag.task_dict if t.startswith("transform.")] == ["transform.project"]
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
    write("shop.yml", PIPELINE.format(granularity="model").replace("granularity: model", "select: ['state:modified']"))
    (error,) = errors_of(project())
    assert error.startswith("shop.yml:8:15:") and "state:modified" in error


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
    assert all(s.startswith("path:models/staging/") for s in staging.select if s.startswith("path:"))
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
