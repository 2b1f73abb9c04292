"""Airflow itself discovers the provider: ProvidersManager and the `airflow providers` CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from airflow_osds import __version__

AIRFLOW = str(Path(sys.executable).parent / "airflow")


def _airflow_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AIRFLOW, *args], capture_output=True, text=True, env=os.environ.copy(), timeout=180)


def _json_from(stdout: str) -> object:
    # The CLI may print log lines before the JSON document.
    start = min(i for i in (stdout.find("["), stdout.find("{")) if i >= 0)
    return json.loads(stdout[start:])


def test_providers_manager_registers_provider_hooks_and_config() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert manager.providers["airflow-osds"].version == __version__
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    hooks = ProvidersManagerTaskRuntime().hooks
    assert hooks["superset"].hook_class_name == "airflow_osds.hooks.superset.SupersetHook"
    assert hooks["reverse_etl_http"].hook_class_name == "airflow_osds.hooks.reverse_etl.HttpDestinationHook"
    widgets = manager.connection_form_widgets
    assert "extra__superset__auth_provider" in widgets
    assert "extra__reverse_etl_http__auth_type" in widgets
    behaviours = manager.field_behaviours
    assert behaviours["superset"]["relabeling"]["host"] == "Base URL"

    from airflow.sdk import conf

    assert conf.get("osds", "default_warehouse_conn_id") == "warehouse"


def test_cli_providers_get() -> None:
    result = _airflow_cli("providers", "get", "airflow-osds", "-o", "json")
    assert result.returncode == 0, result.stderr
    rows = _json_from(result.stdout)
    assert rows == [{"Provider": "airflow-osds", "Version": __version__}]


def test_cli_providers_hooks_lists_our_connection_types_without_errors() -> None:
    result = _airflow_cli("providers", "hooks", "-o", "json")
    assert result.returncode == 0, result.stderr
    ours = {row["connection_type"]: row for row in _json_from(result.stdout) if row["package_name"] == "airflow-osds"}
    assert set(ours) == {"superset", "reverse_etl_http"}
    for row in ours.values():
        # The CLI shows an error marker instead of the class when the hook fails to import.
        assert row["class"].startswith("airflow_osds.hooks."), row


def test_cli_plugins_lists_the_osds_plugin() -> None:
    result = _airflow_cli("plugins", "-o", "json")
    assert result.returncode == 0, result.stderr
    names = {row["name"] for row in _json_from(result.stdout)}
    assert "osds" in names
