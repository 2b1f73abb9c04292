"""Interpreters and subprocess environments: the benchmark venvs and the isolated Airflow environment."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

__all__ = [
    "BENCH_DIR",
    "ChildFailed",
    "DAGFACTORY_VENV",
    "DEPLOYMENT_VENV",
    "PROJECT_PYTHON",
    "REPO",
    "WORK",
    "base_env",
    "child_env",
    "ensure_dagfactory_venv",
    "ensure_deployment_venv",
    "ensure_venv",
    "package_versions",
]

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
WORK = BENCH_DIR / ".work"  # git-ignored: generated inputs, Airflow homes, the dag-factory venv
PROJECT_PYTHON = REPO / ".venv" / "bin" / "python"
CONSTRAINTS = REPO / "constraints.txt"
DAGFACTORY_VENV = WORK / "venv-dagfactory"
DAGFACTORY_REQUIREMENTS = (
    "apache-airflow==3.3.2",
    "apache-airflow-providers-common-sql",
    "apache-airflow-providers-postgres",
    "dag-factory==1.1.0",
)
# airflow-osds as a deployment installs it (editable, so the working tree is what runs): its base
# requirements and [dbt], none of [dev]'s test-only packages. The project .venv has the amazon
# provider for the s3:// tests; every DAG file that creates an Asset imports each provider's asset
# module once per process, and amazon's pulls in boto3 (~110 ms per file): a cost of the test
# environment, not of hand-written files in a deployment.
DEPLOYMENT_VENV = WORK / "venv-osds"
DEPLOYMENT_REQUIREMENTS = ("-e", f"{REPO}[dbt]")
_MARKER = ".bench-installed"

WAREHOUSE_CONN = '{"conn_type":"postgres","host":"localhost","schema":"x"}'


class ChildFailed(RuntimeError):
    """A measured subprocess failed or did not report a result."""


def ensure_venv(venv: Path, requirements: tuple[str, ...], label: str, *, inputs: tuple[Path, ...] = ()) -> Path:
    """A benchmark venv's python, (re)installing only when the requirements or constraints changed.

    Installed with ``-c constraints.txt`` so Airflow, the providers and every shared
    dependency are the versions the project .venv runs. The marker holds a hash of
    everything that decides the install, so a fresh machine installs once and later runs
    skip pip entirely.
    """
    python = venv / "bin" / "python"
    # The project venv's base interpreter: same Python version on both sides of the comparison.
    base_python = getattr(sys, "_base_executable", None) or sys.executable
    decided_by = [requirements, CONSTRAINTS.read_text(), sys.version, *(path.read_text() for path in inputs)]
    key = hashlib.sha256(json.dumps(decided_by).encode()).hexdigest()
    marker = venv / _MARKER
    if python.exists() and marker.exists() and marker.read_text() == key:
        return python
    print(f"bench: installing {label} venv in {venv} (once)…", file=sys.stderr, flush=True)
    if not python.exists():
        subprocess.run([base_python, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", "-c", str(CONSTRAINTS), *requirements],
        check=True,
    )
    marker.write_text(key)
    return python


def ensure_dagfactory_venv() -> Path:
    """The dag-factory venv: dag-factory needs apache-airflow in its own environment."""
    return ensure_venv(DAGFACTORY_VENV, DAGFACTORY_REQUIREMENTS, "dag-factory")


def ensure_deployment_venv() -> Path:
    """airflow-osds installed the way a deployment has it (see DEPLOYMENT_VENV); reinstalled when setup.cfg changes."""
    return ensure_venv(DEPLOYMENT_VENV, DEPLOYMENT_REQUIREMENTS, "airflow-osds deployment",
                       inputs=(REPO / "setup.cfg", REPO / "pyproject.toml"))


def base_env() -> dict[str, str]:
    """The caller's environment without its Airflow settings and anything that changes imports, so a
    developer's shell cannot change what is measured."""
    drop = ("PYTHONPATH", "PYTHONSTARTUP", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE")
    return {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW") and k not in drop}


def child_env(airflow_home: Path, dags_folder: Path) -> dict[str, str]:
    """The environment of a measured subprocess: Airflow sees only this benchmark's settings."""
    env = base_env()
    env.update(
        AIRFLOW_HOME=str(airflow_home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(dags_folder),
        AIRFLOW_CONN_WAREHOUSE=WAREHOUSE_CONN,
        # The default 30 s per-file import timeout would turn a slow parse into an import
        # error; the benchmark wants the time, however long.
        AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT="900",
        # dag-factory sends usage telemetry on import unless told not to (set for every
        # variant so the environments differ only in the interpreter).
        DO_NOT_TRACK="1",
        SCARF_NO_ANALYTICS="true",
        AIRFLOW__DAG_FACTORY__ENABLE_TELEMETRY="False",
    )
    return env


def package_versions(python: Path, packages: tuple[str, ...]) -> dict[str, str]:
    """Installed versions in the venv of ``python`` ("-" when absent), plus its Python version."""
    code = (
        "import importlib.metadata as m, json, platform, sys\n"
        "out = {'python': platform.python_version()}\n"
        "for p in sys.argv[1:]:\n"
        "    try: out[p] = m.version(p)\n"
        "    except m.PackageNotFoundError: out[p] = '-'\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run([str(python), "-c", code, *packages], capture_output=True, text=True, check=True)
    versions: dict[str, str] = json.loads(proc.stdout)
    return versions
