"""Argument building, validation and the secret rules of the dbt runner (no database, no dbt invocation).

Every refusal here happens before dbt starts, which is why no database is needed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from airflow_osds.dbt.errors import (
    DbtConfigurationError,
    DbtNotInstalledError,
    DbtProjectError,
    DbtSecretExposureError,
)
from airflow_osds.dbt.profiles import (
    PASSWORD_ENV_VAR,
    WEAK_PASSWORD_ENV_VAR,
    PostgresTarget,
    ProfileError,
    is_maskable,
    looks_secret,
    render_profile_yaml,
    rendered_profile,
)
from airflow_osds.dbt.runner import DbtCommandError, build_args, redact, run_dbt, scrub

PROJECT = Path(__file__).resolve().parents[3] / "include" / "dbt" / "web_analytics"
TARGET = PostgresTarget(host="/tmp/pg", port=5432, user="etl", dbname="wh", schema="public", password="pw-123")


def test_build_args_full() -> None:
    with rendered_profile(TARGET) as profile:
        args = build_args(
            "source freshness",
            project_dir=PROJECT,
            profile=profile,
            target_path=Path("/t"),
            log_path=Path("/l"),
            select=["source:snowplow"],
            exclude=["tag:x"],
            vars={"b": 1, "a": True},
            threads=2,
        )
    assert args[:2] == ["source", "freshness"]
    assert args[args.index("--select") + 1] == "source:snowplow"
    assert json.loads(args[args.index("--vars") + 1]) == {"a": True, "b": 1}
    assert args[args.index("--target-path") + 1] == "/t" and args[args.index("--log-path") + 1] == "/l"
    assert args[-2:] == ["--threads", "2"]
    assert "pw-123" not in " ".join(args)


@pytest.mark.parametrize(
    ("command", "kwargs", "message"),
    [
        ("clean", {}, "Unsupported dbt command"),
        ("retry", {"select": ["x"]}, "retry re-uses"),
        ("test", {"full_refresh": True}, "full_refresh"),
    ],
)
def test_refused_commands_and_options(command: str, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(DbtCommandError, match=message) as info:
        run_dbt(command, project_dir=PROJECT, target=TARGET, **kwargs)  # type: ignore[arg-type]
    assert isinstance(info.value, DbtConfigurationError)  # operators fail such a task without retry


def test_missing_executable_is_a_configuration_error() -> None:
    with pytest.raises(DbtNotInstalledError, match="not found") as info:
        run_dbt("build", project_dir=PROJECT, target=TARGET, dbt_executable="/nonexistent/venv")
    assert isinstance(info.value, DbtConfigurationError) and info.value.executable == "/nonexistent/venv"


def test_a_folder_without_dbt_project_yml_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(DbtProjectError, match="no dbt_project.yml") as info:
        run_dbt("build", project_dir=tmp_path, target=TARGET)
    assert isinstance(info.value, DbtConfigurationError) and info.value.project_dir == str(tmp_path)


def test_profile_rejects_jinja_and_unknown_options() -> None:
    with pytest.raises(ProfileError, match="Jinja"):
        render_profile_yaml(PostgresTarget(host="{{ x }}", user="u", dbname="d", schema="s"))
    with pytest.raises(ProfileError, match="sslpassword") as info:
        render_profile_yaml(PostgresTarget(host="h", user="u", dbname="d", schema="s", options={"sslpassword": "x"}))
    assert info.value.field == "options" and isinstance(info.value, DbtConfigurationError)
    assert "pw-123" not in repr(TARGET)


@pytest.mark.parametrize(("missing", "hint"), [("host", "Host"), ("user", "Login"), ("dbname", "database name")])
def test_profile_names_the_missing_connection_field(missing: str, hint: str) -> None:
    fields = {"host": "h", "user": "u", "dbname": "d", "schema": "s", missing: ""}
    with pytest.raises(ProfileError, match=hint) as info:
        PostgresTarget(**fields).profile_fields()
    assert info.value.field == missing
    assert "connection 'wh'" in str(info.value.for_connection("wh"))


# -- secrets --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "maskable"),
    [("select", False), ("postgres", False), ("warehouse", False), ("S3cr3t-long-value", True),
     ("Dummy-s3cret-pw-4711", True), ("correcthorsebatterystaple", True)],
)  # fmt: skip
def test_which_secrets_are_masked(secret: str, maskable: bool) -> None:
    assert is_maskable(secret) is maskable


def test_redaction_leaves_weak_secrets_and_the_words_they_are_alone() -> None:
    # A password that is a common word would turn every line of SQL or every name into ***.
    assert redact("select 1 as one", ["select"]) == "select 1 as one"
    assert redact("Registered adapter: postgres=1.11.0", ["postgres"]) == "Registered adapter: postgres=1.11.0"
    assert redact("password=S3cr3t-long-value host=h", ["S3cr3t-long-value"]) == "password=*** host=h"
    # Longest first, so a secret containing another one is not half-replaced.
    assert redact("a S3cr3t-long-value-2 b S3cr3t-long-value", ["S3cr3t-long-value", "S3cr3t-long-value-2"]) == (
        "a *** b ***"
    )
    assert redact("nothing", ["", "x-y"]) == "nothing"


def test_a_weak_password_is_not_a_dbt_env_secret() -> None:
    # dbt replaces every occurrence of a DBT_ENV_SECRET_* value in its own output: a weak
    # password travels under another name, so dbt does not mangle its log either.
    weak = PostgresTarget(host="h", user="u", dbname="d", schema="s", password="select")
    strong = PostgresTarget(host="h", user="u", dbname="d", schema="s", password="S3cr3t-long-value")
    assert weak.env() == {WEAK_PASSWORD_ENV_VAR: "select"} and strong.env() == {PASSWORD_ENV_VAR: "S3cr3t-long-value"}
    output = yaml.safe_load(render_profile_yaml(weak))["osds"]["outputs"]["osds"]
    assert output["password"] == f"{{{{ env_var('{WEAK_PASSWORD_ENV_VAR}') }}}}"
    assert "select" not in render_profile_yaml(weak)


@pytest.mark.parametrize(
    ("name", "secret"),
    [("API_TOKEN", True), ("db_password", True), ("snowplowApiKey", True), ("AIRFLOW__CORE__FERNET_KEY", True),
     ("aws_secret_access_key", True), ("unique_key", False), ("partition_key", False), ("use_seeds", False)],
)  # fmt: skip
def test_which_names_look_secret(name: str, secret: bool) -> None:
    assert looks_secret(name) is secret


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"vars": {"api_token": "t"}}, "vars.api_token"),
        ({"vars": {"snowplow": {"db_password": "t"}}}, "vars.snowplow.db_password"),
        ({"vars": {"note": "the password is pw-123-long!"}}, "vars.note"),  # the connection's password
        ({"env": {"AIRFLOW__CORE__FERNET_KEY": "k"}}, "AIRFLOW__CORE__FERNET_KEY"),
        ({"env": {"AIRFLOW_CONN_WAREHOUSE": "postgres://x"}}, "AIRFLOW_CONN_WAREHOUSE"),
        ({"extra_args": ["--empty", "pw-123-long!"]}, "extra_args"),
    ],
)
def test_secrets_are_refused_where_they_would_leak(kwargs: dict[str, object], match: str) -> None:
    target = PostgresTarget(host="/tmp/pg", user="etl", dbname="wh", schema="public", password="pw-123-long!")
    with pytest.raises(DbtSecretExposureError, match=match) as info:
        run_dbt("build", project_dir=PROJECT, target=target, **kwargs)  # type: ignore[arg-type]
    assert isinstance(info.value, DbtConfigurationError)
    assert "pw-123-long!" not in str(info.value)


def test_vars_in_extra_args_are_refused() -> None:
    with pytest.raises(DbtCommandError, match="vars="):
        run_dbt("build", project_dir=PROJECT, target=TARGET, extra_args=["--vars", "{a: 1}"])


def test_scrub_redacts_artifacts_and_secret_looking_vars() -> None:
    document = {
        "args": {"which": "build", "select": ["select"], "vars": {"api_token": "t0k", "use_seeds": True}},
        "results": [{"unique_id": "model.p.m", "message": "login failed for S3cr3t-long-value"}],
    }
    clean = scrub(document, ["S3cr3t-long-value", "select"])
    assert clean["args"] == {"which": "build", "select": ["select"], "vars": {"api_token": "***", "use_seeds": True}}
    assert clean["results"][0]["message"] == "login failed for ***"
    assert document["args"]["vars"]["api_token"] == "t0k", "the input is not modified"


def test_engine_modules_import_without_airflow_or_dbt() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "class B:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('airflow', 'dbt'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, B())\n"
        "import airflow_osds.dbt.profiles, airflow_osds.dbt.runner\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
