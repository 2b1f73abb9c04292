"""What a tap or target inherits from the task's environment: not Airflow's settings or secrets."""

from __future__ import annotations

from airflow_osds.hooks.singer import plugin_environment


def test_airflow_settings_connections_and_interpreter_paths_are_withheld() -> None:
    environ = {
        "PATH": "/usr/bin", "HOME": "/home/a", "AWS_PROFILE": "etl", "TAP_TOKEN": "t",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://airflow:pw@db/airflow",
        "AIRFLOW_CONN_WAREHOUSE": "postgres://etl:pw@wh/db", "AIRFLOW_VAR_API_KEY": "k",
        "__AIRFLOW_SUPERVISOR_FD": "7", "_AIRFLOW_PARSING_CONTEXT_DAG_ID": "d",
        "PYTHONPATH": "/opt/airflow/dags", "VIRTUAL_ENV": "/opt/airflow/venv",
    }
    assert plugin_environment(environ) == {"PATH": "/usr/bin", "HOME": "/home/a", "AWS_PROFILE": "etl", "TAP_TOKEN": "t"}
