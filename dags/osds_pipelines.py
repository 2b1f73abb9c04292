"""Airflow DAG file: one DAG per YAML pipeline in include/pipelines/ (built by airflow-osds)."""

from pathlib import Path

from airflow_osds.factory import load_pipelines

load_pipelines(Path(__file__).resolve().parent.parent / "include" / "pipelines", globals())
