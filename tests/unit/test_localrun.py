from __future__ import annotations

import os
from pathlib import Path

import pytest

from airflow_osds.localrun import airflow_environ, apply_environ


def test_environ_is_isolated_under_home(tmp_path: Path) -> None:
    env = airflow_environ(
        home=tmp_path / "af", dags_folder=tmp_path / "dags", metadata_url="sqlite:////x.db",
        connections={"warehouse": {"conn_type": "postgres", "host": "/sock"}},
    )
    assert env["AIRFLOW_HOME"] == str(tmp_path / "af")
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert env["AIRFLOW_CONN_WAREHOUSE"] == '{"conn_type": "postgres", "host": "/sock"}'
    assert not any(str(Path.home()) in v for v in env.values() if str(Path.home()) != "/")
    # Secrets are stable for one home (every Airflow process must agree on them) and private.
    again = airflow_environ(home=tmp_path / "af", dags_folder=tmp_path / "dags", metadata_url="sqlite:////x.db")
    assert again["AIRFLOW__API_AUTH__JWT_SECRET"] == env["AIRFLOW__API_AUTH__JWT_SECRET"]
    assert len(env["AIRFLOW__API_AUTH__JWT_SECRET"]) >= 64
    assert oct((tmp_path / "af" / ".jwt_secret").stat().st_mode & 0o777) == "0o600"


def test_apply_environ_refuses_to_change_airflow_config_after_import(tmp_path: Path) -> None:
    import airflow  # noqa: F401  (the session already imported it)

    with pytest.raises(RuntimeError, match="Airflow was imported before its environment was set"):
        apply_environ({"AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__PLUGINS_FOLDER": str(tmp_path)})
    assert os.environ["AIRFLOW_HOME"] != str(tmp_path)
