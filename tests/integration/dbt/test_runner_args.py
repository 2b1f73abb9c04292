"""Argument building and validation of the dbt runner (no database, no dbt invocation)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_osds.dbt.profiles import PostgresTarget, ProfileError, render_profile_yaml, rendered_profile
from airflow_osds.dbt.runner import DbtCommandError, build_args, redact, run_dbt

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
    with pytest.raises(DbtCommandError, match=message):
        run_dbt(command, project_dir=PROJECT, target=TARGET, **kwargs)  # type: ignore[arg-type]


def test_missing_executable_is_an_error() -> None:
    with pytest.raises(DbtCommandError, match="not found"):
        run_dbt("build", project_dir=PROJECT, target=TARGET, dbt_executable="/nonexistent/venv")


def test_profile_rejects_jinja_and_unknown_options() -> None:
    with pytest.raises(ProfileError, match="Jinja"):
        render_profile_yaml(PostgresTarget(host="{{ x }}", user="u", dbname="d", schema="s"))
    with pytest.raises(ProfileError, match="sslpassword"):
        render_profile_yaml(PostgresTarget(host="h", user="u", dbname="d", schema="s", options={"sslpassword": "x"}))
    assert "pw-123" not in repr(TARGET)


def test_redact_longest_first() -> None:
    assert redact("a pw-123456 b pw-123", ["pw-123", "pw-123456"]) == "a *** b ***"
    assert redact("nothing", ["", "x-y"]) == "nothing"


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
