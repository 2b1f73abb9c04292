"""YAML pipelines → Airflow DAGs.

A DAG file in Airflow's DAG folder calls :func:`load_pipelines`; each pipeline file
becomes one DAG bound into that file's globals.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_osds.exceptions import PipelineFolderError, PipelineSpecError
from airflow_osds.factory.loader import find_pipeline_files, parse_pipeline_file

if TYPE_CHECKING:
    from airflow.sdk import DAG

__all__ = ["load_pipelines"]


def load_pipelines(folder: str | Path | None = None, globals_dict: dict[str, Any] | None = None) -> dict[str, DAG]:
    """Build a DAG for each pipeline YAML file under ``folder`` and bind it into ``globals_dict``.

    :param folder: folder of pipeline files; default ``[osds] pipelines_folder``, else
        ``<dags_folder>/../include/pipelines``.
    :param globals_dict: the calling DAG file's ``globals()``.
    :raises PipelineFolderError: after building the healthy pipelines, listing every broken file.
    """
    from airflow.sdk import conf

    from airflow_osds.factory.build import build_dag

    pipelines_dir = Path(folder) if folder else _default_folder(conf)
    default_warehouse = conf.get("osds", "default_warehouse_conn_id", fallback="warehouse")
    dags: dict[str, DAG] = {}
    errors: list[PipelineSpecError] = []
    for path in find_pipeline_files(pipelines_dir):
        try:
            spec = parse_pipeline_file(path)
        except PipelineSpecError as exc:
            errors.append(exc)
            continue
        dags[spec.pipeline] = build_dag(spec, source=path, default_warehouse=default_warehouse)
    if globals_dict is not None:
        globals_dict.update(dags)
    if errors:
        raise PipelineFolderError(str(pipelines_dir), errors)
    return dags


def _default_folder(conf: Any) -> Path:
    configured = conf.get("osds", "pipelines_folder", fallback="")
    if configured:
        return Path(configured)
    return Path(conf.get("core", "dags_folder")).parent / "include" / "pipelines"
