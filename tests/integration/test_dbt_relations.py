"""A dbt step's tasks select exactly their own nodes and its Assets name the relations dbt really builds.

Real dbt-core/dbt-postgres on the embedded PostgreSQL, on tests/data/dbt/relations: dbt's
default ``generate_schema_name`` (``<target>_<custom>``), a custom schema, an alias, a model
named like a folder, and an installed ``local:`` package holding a model of the same name as
one of the root project's.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_osds.dbt.artifacts import Manifest
from airflow_osds.dbt.manifest_build import parse_project
from airflow_osds.dbt.profiles import PostgresTarget
from airflow_osds.dbt.runner import run_dbt
from airflow_osds.factory.compile import compile_pipeline
from airflow_osds.factory.project import load_project
from airflow_osds.localrun import LocalStack

DATA = Path(__file__).resolve().parents[1] / "data" / "dbt"
DBT = str(Path(sys.executable).with_name("dbt"))
TARGET_SCHEMA = "analytics"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dbt-relations")
    for name in ("relations", "shared_pkg"):
        shutil.copytree(DATA / name, root / name)
    profiles = root / "no-profiles"  # deps needs none; never read the user's ~/.dbt
    profiles.mkdir()
    deps = subprocess.run(
        [DBT, "deps", "--project-dir", str(root / "relations"), "--profiles-dir", str(profiles)],
        capture_output=True, text=True,
    )
    assert deps.returncode == 0, deps.stdout + deps.stderr
    parse_project(root / "relations", target_schema=TARGET_SCHEMA)
    return root / "relations"


@pytest.fixture(scope="module")
def tasks(project: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    pipelines = tmp_path_factory.mktemp("pipelines")
    (pipelines / "rel.yml").write_text(textwrap.dedent(f"""\
        pipeline: rel
        steps:
          transform:
            dbt: {{project: {project}, granularity: model, select: ["fqn:*"]}}  # all (not the default selector)
    """))
    loaded = load_project(pipelines)
    assert not loaded.errors, [str(e) for e in loaded.errors]
    (group,) = compile_pipeline(loaded.plans["rel"], loaded).nodes
    return group.children


@pytest.fixture(scope="module")
def target(postgres: LocalStack, warehouse: Any) -> Iterator[PostgresTarget]:
    pg = postgres.postgres
    yield PostgresTarget(host=str(pg.socket_dir), port=pg.port, user=pg.user, password=pg.password,
                         dbname=warehouse.dbname, schema=TARGET_SCHEMA)


def _ls(project: Path, target: PostgresTarget, select: list[str]) -> set[str]:
    result = run_dbt(
        "ls", project_dir=project, target=target, select=select,
        extra_args=["--indirect-selection", "cautious", "--output", "json", "--output-keys", "unique_id"],
    )
    assert result.success, result.log_lines[-20:]
    return {json.loads(line)["unique_id"] for line in result.log_lines if line.startswith("{")}


def test_every_task_selects_exactly_its_node_and_its_tests(project: Path, tasks: list[Any], target: PostgresTarget) -> None:
    manifest = Manifest.from_path(project / "target" / "manifest.json")
    runnable = {uid for uid, n in manifest.nodes.items() if n.resource_type == "model"}
    assert {"model.relations.orders", "model.shared_pkg.orders", "model.relations.marts"} <= runnable
    owned: set[str] = set()
    for task in tasks:
        selected = _ls(project, target, task.kwargs["select"])
        (node,) = selected & runnable  # one model per task, whatever package it is in
        tests = {uid for uid, n in manifest.nodes.items() if n.resource_type == "test" and n.attached_node == node}
        assert selected == {node} | tests, (task.task_id, task.kwargs["select"])
        owned.add(node)
    assert owned == runnable, "every model has its task"


def test_assets_name_the_relations_dbt_builds(project: Path, tasks: list[Any], target: PostgresTarget, warehouse: Any) -> None:
    uris = {ref.ref.uri for task in tasks for ref in task.kwargs["outlets"]}
    # dbt's default generate_schema_name: <target>_<custom>; the alias names the table.
    assert uris == {
        "osds://warehouse/analytics/orders",
        "osds://warehouse/analytics/dim_customers",
        "osds://warehouse/analytics_marts/marts",  # dbt configures by fqn: `marts:` also names this model
        "osds://warehouse/analytics_marts/orders_by_day",
        "osds://warehouse/analytics_pkg/orders",
    }
    assert {task.kwargs["target_schema"] for task in tasks} == {TARGET_SCHEMA}, "the schema the manifest was parsed with"
    built = run_dbt("build", project_dir=project, target=target, select=["fqn:*"])  # as the step selects
    assert built.success, built.log_lines[-30:]
    catalog = {
        f"osds://warehouse/{schema}/{table}"
        for schema, table in warehouse.query(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema LIKE 'analytics%'"
        )
    }
    assert uris == catalog


@pytest.mark.parametrize("name", ["marts_and_up", "root_without_marts", "orders_everywhere", "via_other"])
def test_yaml_selectors_select_what_dbt_ls_does(project: Path, target: PostgresTarget, name: str) -> None:
    from airflow_osds.dbt.yaml_selectors import load_selectors, resolve_selector

    manifest = Manifest.from_path(project / "target" / "manifest.json")
    result = run_dbt("ls", project_dir=project, target=target, selector=name,
                     extra_args=["--output", "json", "--output-keys", "unique_id"])
    assert result.success, result.log_lines[-20:]
    listed = {json.loads(line)["unique_id"] for line in result.log_lines if line.startswith("{")}
    expected = {uid for uid in listed if uid in manifest.nodes and manifest.nodes[uid].resource_type in
                ("model", "seed", "snapshot", "test")}
    assert expected, "the selector selects something"
    assert resolve_selector(manifest, name, load_selectors(project)) == expected


def test_the_default_yaml_selector_is_what_a_step_without_selection_runs(project: Path, tmp_path: Path) -> None:
    (tmp_path / "p.yml").write_text(f"pipeline: p\nsteps:\n  t:\n    dbt: {{project: {project}, granularity: model}}\n")
    loaded = load_project(tmp_path)
    names = sorted(task.task_id for task in compile_pipeline(loaded.plans["p"], loaded).nodes[0].children)
    # `via_other` is `default: true`: the marts folder (not models/marts.sql), what it reads, and customers.
    assert names == ["customers", "orders", "orders_by_day"]
