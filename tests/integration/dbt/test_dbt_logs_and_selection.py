"""Real dbt on the embedded PostgreSQL: a selection that matches nothing, and what the logs show of secrets.

A small project written by the test; both invocation modes (in process and the separate
virtualenv of ``_venv.py``). Each password is a real role's (:func:`tests.conftest.login_role`), there to be
(or, when weak, not to be) redacted.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from airflow_osds.dbt.errors import DbtConfigurationError, DbtNothingSelectedError
from airflow_osds.dbt.profiles import PostgresTarget
from airflow_osds.dbt.runner import run_dbt

from tests.conftest import login_role

from ._venv import ensure_dbt_venv

STRONG = "S3cr3t-long-value"
TOKEN = "T0ken-long-value-42"
MODELS = {
    "ok.sql": "select 1 as one\n",
    # Fails with PostgreSQL's error, which quotes the SQL: `LINE …: select 1 as one from …`.
    "broken.sql": "select 1 as one from no_such_table_xyz\n",
    "echo_token.sql": "{{ log('token is ' ~ env_var('API_TOKEN', 'unset'), info=True) }}\nselect 1 as one\n",
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dbt-logs") / "probe"
    (root / "models").mkdir(parents=True)
    (root / "dbt_project.yml").write_text(textwrap.dedent("""\
        name: probe
        version: "1.0.0"
        config-version: 2
        profile: osds
        model-paths: ["models"]
        models:
          probe:
            +materialized: view
    """))
    for name, sql in MODELS.items():
        (root / "models" / name).write_text(sql)
    return root


def target(warehouse, password: str) -> PostgresTarget:
    pg = warehouse.stack.postgres
    conn = pg.airflow_connection(warehouse.dbname)
    user = login_role(pg, "dbt_weak" if password == "select" else "dbt_strong", password)
    return PostgresTarget(
        host=conn["host"], port=conn["port"], user=user, dbname=warehouse.dbname, schema="public", password=password,
    )  # fmt: skip


def executable(mode: str) -> Path | None:
    return ensure_dbt_venv() if mode == "subprocess" else None


@pytest.mark.parametrize("mode", ["in_process", "subprocess"])
def test_a_selection_matching_nothing_is_a_configuration_error(warehouse, project: Path, mode: str) -> None:
    result = run_dbt(
        "build", project_dir=project, target=target(warehouse, STRONG), select=["no_such_model"],
        exclude=["tag:nothing"], dbt_executable=executable(mode),
    )  # fmt: skip
    # dbt itself only warns and succeeds, having run nothing.
    assert result.success and result.exit_code == 0 and result.node_statuses() == {}
    assert any("does not match any enabled nodes" in line for line in result.log_lines)
    assert result.ran_nothing
    with pytest.raises(DbtNothingSelectedError) as info:
        result.raise_for_status()
    error = info.value
    assert isinstance(error, DbtConfigurationError)  # operators fail the task without retry
    assert error.command == "build" and error.selection == "`--select no_such_model` `--exclude tag:nothing`"
    assert "dbt build selected no nodes with `--select no_such_model`" in str(error)


def test_a_selection_that_runs_something_is_not_flagged(warehouse, project: Path) -> None:
    result = run_dbt("run", project_dir=project, target=target(warehouse, STRONG), select=["ok", "no_such_model"])
    assert not result.ran_nothing and result.raise_for_status().node_statuses() == {"model.probe.ok": "success"}


@pytest.mark.parametrize("mode", ["in_process", "subprocess"])
def test_a_weak_password_does_not_mangle_the_log(warehouse, project: Path, mode: str) -> None:
    # Masking a password "select" everywhere would turn the quoted SQL into `*** 1 as one`.
    result = run_dbt(
        "run", project_dir=project, target=target(warehouse, "select"), select=["broken", "echo_token"],
        env={"API_TOKEN": TOKEN}, dbt_executable=executable(mode),
    )  # fmt: skip
    assert result.exit_code == 1 and result.failed_nodes() == ["model.probe.broken"]
    quoted = [line for line in result.log_lines if "select 1 as one from no_such_table_xyz" in line]
    assert quoted, result.log_lines
    assert not any("*** 1" in line or "***** 1" in line for line in result.log_lines)
    assert "select 1 as one from no_such_table_xyz" in str(result.failure())
    # The log says the password is not masked; a strong secret still is.
    assert any("too weak to mask" in line for line in result.log_lines)
    assert any(line.endswith("token is ***") for line in result.log_lines), result.log_lines
    assert not any(TOKEN in line for line in result.log_lines)


@pytest.mark.parametrize("mode", ["in_process", "subprocess"])
def test_a_strong_password_is_redacted(warehouse, project: Path, mode: str) -> None:
    # dbt echoes a selection criterion that matches nothing: make it the password.
    result = run_dbt(
        "run", project_dir=project, target=target(warehouse, STRONG), select=["ok", STRONG],
        dbt_executable=executable(mode),
    )  # fmt: skip
    echoed = [line for line in result.log_lines if "does not match any enabled nodes" in line]
    assert len(echoed) == 1 and "***" in echoed[0], result.log_lines
    assert not any(STRONG in line for line in result.log_lines)
    assert not any("too weak to mask" in line for line in result.log_lines)
    # The selection carries it here (the test's doing), so run_results.json's args do: scrubbed.
    assert result.run_results is not None and STRONG not in str(result.run_results)
    assert result.run_results["args"]["select"] == ["ok", "***"]
