"""Fixtures for the dbt engine tests: a real manifest and run results from ``data/project``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_osds.dbt.artifacts import Manifest, RunResults

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def manifest() -> Manifest:
    return Manifest.from_path(DATA / "manifest.json")


@pytest.fixture(scope="session")
def run_results(manifest: Manifest) -> RunResults:
    return RunResults.from_path(DATA / "run_results.json", manifest=manifest)


def node(
    uid: str,
    *,
    deps: tuple[str, ...] = (),
    path: str | None = None,
    tags: tuple[str, ...] = (),
    materialized: str = "table",
    attached: str | None = None,
) -> dict[str, Any]:
    """A minimal manifest v12 node dictionary, for hand-made graphs."""
    resource_type, package, name = uid.split(".")[:3]
    folder = "tests" if resource_type == "test" else "models"
    return {
        "unique_id": uid,
        "resource_type": resource_type,
        "name": name,
        "package_name": package,
        "original_file_path": path or f"{folder}/{name}.sql",
        "path": f"{name}.sql",
        "fqn": [package, name],
        "tags": list(tags),
        "depends_on": {"nodes": list(deps), "macros": []},
        "database": "db",
        "schema": "s",
        "alias": name,
        "config": {"materialized": "test" if resource_type == "test" else materialized},
        "attached_node": attached,
    }


def manifest_of(*nodes: dict[str, Any]) -> Manifest:
    return Manifest.from_dict(
        {"metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json"},
         "nodes": {n["unique_id"]: n for n in nodes}, "sources": {}}
    )
