"""The built wheel (what Astro images and deployments install) carries the package and its entry points."""

from __future__ import annotations

import zipfile
from pathlib import Path

from tests.wheel import build_wheel


def test_wheel_contents_and_entry_points(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        entry_points = zf.read(f"{dist_info}/entry_points.txt").decode()
        metadata = zf.read(f"{dist_info}/METADATA").decode()
    assert {"airflow_osds/get_provider_info.py", "airflow_osds/py.typed", "airflow_osds/factory/build.py"} <= names
    assert not any(n.startswith(("tests/", "dags/", "include/")) for n in names)
    assert "[apache_airflow_provider]\nprovider_info = airflow_osds.get_provider_info:get_provider_info" in entry_points
    assert "[airflow.plugins]\nosds = airflow_osds.plugins:OsdsPlugin" in entry_points
    assert "[console_scripts]\nosds = airflow_osds.cli:main" in entry_points
    assert "Name: airflow-osds" in metadata
    assert "Requires-Dist: apache-airflow<3.4,>=3.3.0" in metadata
    assert "Requires-Dist: dbt-core~=1.11.0; extra == \"dbt\"" in metadata
