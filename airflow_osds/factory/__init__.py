"""YAML pipelines → Airflow DAGs.

Two thin DAG files in Airflow's DAG folder use this module:

- ``load_pipelines(folder, globals())`` builds one DAG per *valid* pipeline file;
- ``report_pipeline_errors(folder)`` raises, listing every invalid file with line and
  column, so Airflow shows it as an import error.

Airflow drops all DAGs of a DAG file that raises, so the two jobs need two files: a
broken pipeline is never silent and never hides the healthy ones.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_osds.exceptions import PipelineFolderError
from airflow_osds.factory.project import Project, load_project

if TYPE_CHECKING:
    from airflow.sdk import DAG

__all__ = ["load_pipelines", "load_project", "report_pipeline_errors"]

log = logging.getLogger(__name__)


def load_pipelines(folder: str | Path | None = None, globals_dict: dict[str, Any] | None = None) -> dict[str, DAG]:
    """Build a DAG for each valid pipeline file under ``folder`` and bind it into ``globals_dict``.

    When Airflow parses the file to run one task (``get_parsing_context().dag_id`` is set),
    only that pipeline's DAG is built.

    :param folder: folder of pipeline files; default ``[osds] pipelines_folder``, else
        ``<dags_folder>/../include/pipelines``.
    :param globals_dict: the calling DAG file's ``globals()``.
    """
    from airflow.sdk import get_parsing_context

    from airflow_osds.factory.build import build_dag

    project = _project(folder)
    for error in project.errors:
        log.warning("Skipping invalid pipeline file (see report_pipeline_errors):\n%s", error)
    wanted = get_parsing_context().dag_id
    dags: dict[str, DAG] = {}
    for plan in project.plans.values():
        if wanted is None or wanted == plan.id:
            dags[plan.id] = build_dag(plan, project)
    if globals_dict is not None:
        globals_dict.update(dags)
    return dags


def report_pipeline_errors(folder: str | Path | None = None) -> None:
    """Raise ``PipelineFolderError`` if any pipeline file under ``folder`` is invalid or does not build.

    Every rule of the language is checked; DAGs are built only for pipelines with blocks
    whose arguments only Airflow can check (``operator``), without registering them.
    """
    from airflow_osds.exceptions import PipelineSpecError
    from airflow_osds.factory.blocks import BLOCKS
    from airflow_osds.factory.build import build_dag

    project = _project(folder)
    errors = list(project.errors)
    for plan in project.plans.values():
        # Validation vouches for every block but the ones handing arbitrary arguments to
        # Airflow; only pipelines using those are built here, to keep this file cheap to parse.
        if not any(BLOCKS[step.spec.block_name].build_can_fail for step in plan.tasks()):
            continue
        try:
            build_dag(plan, project, register=False)
        except Exception as exc:  # what Airflow itself rejects (operator arguments, …)
            errors.append(PipelineSpecError(str(plan.parsed.path), [plan.parsed.problem(f"{type(exc).__name__}: {exc}")]))
    if errors:
        raise PipelineFolderError(str(project.folder), errors)


# Both DAG files read the same folder; when one process parses both (a DagBag over the
# DAG folder, `airflow dags test`), the second reuses the first's work while nothing changed.
_PROJECTS: dict[tuple[Any, ...], Project] = {}


def _project(folder: str | Path | None) -> Project:
    from airflow.sdk import conf

    pipelines_dir = (Path(folder) if folder else _default_folder(conf)).resolve()
    default_warehouse = conf.get("osds", "default_warehouse_conn_id", fallback="warehouse")
    key = (pipelines_dir, default_warehouse, _folder_signature(pipelines_dir), hash(frozenset(os.environ.items())))
    project = _PROJECTS.get(key)
    if project is None:
        _PROJECTS.clear()
        project = _PROJECTS[key] = load_project(pipelines_dir, default_warehouse=default_warehouse)
    return project


def _folder_signature(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """Every file under ``folder`` (pipelines, defaults, SQL) with its mtime and size."""
    if folder.is_file():
        stat = folder.stat()
        return ((str(folder), stat.st_mtime_ns, stat.st_size),)
    signature = []
    for path in sorted(folder.rglob("*")):
        try:
            stat = path.stat()
        except OSError:
            continue
        signature.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(signature)


def _default_folder(conf: Any) -> Path:
    configured = conf.get("osds", "pipelines_folder", fallback="")
    if configured:
        return Path(configured)
    return Path(conf.get("core", "dags_folder")).parent / "include" / "pipelines"
