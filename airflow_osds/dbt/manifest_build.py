"""Write a project's ``manifest.json`` with ``dbt parse``, and the fingerprint that dates it.

Runs outside DAG parsing: in CI or a deployment step (``osds dbt-parse``), in ``osds demo``
and in tests. ``dbt parse`` does not connect to the database, so the profile it gets points
nowhere; only the target schema matters (it names the schema of models without a custom one).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from airflow_osds.dbt.artifacts import Manifest

from airflow_osds.dbt.partial_parse import connection_fields
from airflow_osds.dbt.fingerprint import installed_dbt_packages, project_fingerprint, read_parse_record, write_fingerprint
from airflow_osds.dbt.profiles import PostgresTarget
from airflow_osds.dbt.runner import run_dbt

__all__ = ["parse_project", "parse_stale_projects"]


def parse_project(
    project_dir: str | os.PathLike[str],
    *,
    target_schema: str = "public",
    target_path: str | os.PathLike[str] | None = None,
    dbt_executable: str | None = None,
    vars: Mapping[str, Any] | None = None,
    connection: PostgresTarget | None = None,
) -> Path:
    """Run ``dbt parse``; return the path of the manifest written (with its parse record beside it).

    :param target_schema: the schema models without a custom schema build into; it names
        their relations, so steps using this manifest run with it.
    :param vars: dbt ``--vars`` the project needs to parse (e.g. to enable models); steps
        must run with the same values.
    :param connection: the warehouse the steps will run on (no password needed: parsing does
        not connect). dbt's partial-parse check hashes the connection's fields, so a task may
        reuse this parse only when they are the ones it runs with; without it the parse
        points nowhere and every task parses the project again.
    """
    project = Path(project_dir).resolve()
    target = Path(target_path).resolve() if target_path else project / "target"
    target.mkdir(parents=True, exist_ok=True)
    fingerprint = project_fingerprint(project)  # before parsing: a file edited meanwhile makes it stale
    if connection is None:
        profile_target = PostgresTarget(host="localhost", user="osds", dbname="osds", schema=target_schema)
    else:
        profile_target = dataclasses.replace(connection, schema=target_schema, password=None)
    run_dbt(
        "parse", project_dir=project, target=profile_target, target_path=target, dbt_executable=dbt_executable,
        vars=vars,
    ).raise_for_status()
    manifest = target / "manifest.json"
    write_fingerprint(
        target, fingerprint, target_schema=target_schema, vars=dict(vars or {}),
        dbt_version=Manifest.from_path(manifest).dbt_version,
        connection=connection_fields(profile_target) if connection is not None else {},
        dbt_packages=installed_dbt_packages() if dbt_executable is None else {},
    )
    return manifest


def parse_stale_projects(dbt_dir: str | os.PathLike[str], *, connection: PostgresTarget | None = None) -> list[Path]:
    """Parse every project under ``dbt_dir`` (``*/dbt_project.yml``) whose files changed since its last parse.

    :param connection: parse for this warehouse (see :func:`parse_project`); a project parsed
        for another connection is parsed again.
    :return: the projects that were parsed.
    """
    parsed = []
    for project_file in sorted(Path(dbt_dir).glob("*/dbt_project.yml")):
        project = project_file.parent
        record = read_parse_record(project / "target")
        schema = record.target_schema if record is not None and record.target_schema else "public"
        wanted = connection_fields(dataclasses.replace(connection, schema=schema)) if connection is not None else {}
        if record is None or record.fingerprint != project_fingerprint(project) or dict(record.connection) != wanted:
            parse_project(project, target_schema=schema, connection=connection)
            parsed.append(project)
    return parsed
