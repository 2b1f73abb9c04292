"""Airflow DAG file: shows invalid pipeline files in include/pipelines/ as an import error.

It builds no DAG; the valid pipelines are built by osds_pipelines.py, so one broken
file never hides the others.
"""

from pathlib import Path

from airflow_osds.factory import report_pipeline_errors

report_pipeline_errors(Path(__file__).resolve().parent.parent / "include" / "pipelines")
