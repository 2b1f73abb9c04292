"""Interpreters and subprocess environments: the dag-factory venv, the isolated Airflow env, one child run."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = [
    "BENCH_DIR",
    "CHILD",
    "ChildFailed",
    "PROJECT_PYTHON",
    "REPO",
    "WORK",
    "child_env",
    "ensure_dagfactory_venv",
    "ensure_venv",
    "package_versions",
    "run_child",
]

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
WORK = BENCH_DIR / ".work"  # git-ignored: generated inputs, Airflow homes, the dag-factory venv
CHILD = BENCH_DIR / "child.py"
PROJECT_PYTHON = REPO / ".venv" / "bin" / "python"
CONSTRAINTS = REPO / "constraints.txt"
DAGFACTORY_VENV = WORK / "venv-dagfactory"
DAGFACTORY_REQUIREMENTS = (
    "apache-airflow==3.3.2",
    "apache-airflow-providers-common-sql",
    "apache-airflow-providers-postgres",
    "dag-factory==1.1.0",
)
_MARKER = ".bench-installed"

WAREHOUSE_CONN = '{"conn_type":"postgres","host":"localhost","schema":"x"}'


class ChildFailed(RuntimeError):
    """A measured subprocess failed or did not report a result."""


def ensure_venv(venv: Path, requirements: tuple[str, ...], label: str) -> Path:
    """A benchmark venv's python, (re)installing only when the requirements or constraints changed.

    Installed with ``-c constraints.txt`` so Airflow, the providers and every shared
    dependency are the versions the project .venv runs. The marker holds a hash of
    everything that decides the install, so a fresh machine installs once and later runs
    skip pip entirely.
    """
    python = venv / "bin" / "python"
    # The project venv's base interpreter: same Python version on both sides of the comparison.
    base_python = getattr(sys, "_base_executable", None) or sys.executable
    key = hashlib.sha256(json.dumps([requirements, CONSTRAINTS.read_text(), sys.version]).encode()).hexdigest()
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


def child_env(airflow_home: Path, dags_folder: Path) -> dict[str, str]:
    """The environment of a measured subprocess: Airflow sees only this benchmark's settings."""
    # Drop the caller's Airflow settings (and anything that changes imports) so a developer's
    # shell cannot change what is measured.
    drop = ("PYTHONPATH", "PYTHONSTARTUP", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW") and k not in drop}
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


def run_child(
    python: Path,
    dags_folder: Path,
    expected: Path,
    env: dict[str, str],
    *,
    profile_out: Path | None = None,
    child: Path = CHILD,
) -> dict[str, Any]:
    """Parse ``dags_folder`` in a fresh ``python`` running ``child``; its result plus ``whole_s``."""
    cmd = [str(python), str(child), str(dags_folder), str(expected)]
    if profile_out is not None:
        cmd += ["--profile", str(profile_out)]
    # CLOCK_MONOTONIC is system-wide on Linux: comparable with the child's reading.
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800, cwd=str(WORK))
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ChildFailed(f"{python} {child.name} {dags_folder}: {exc}") from exc
    lines = [line for line in proc.stdout.splitlines() if line.startswith("BENCH_RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise ChildFailed(f"{python} {child.name} {dags_folder} exited {proc.returncode}:\n{tail}")
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("BENCH_RESULT "))
    result["whole_s"] = result["done_mono"] - start
    return result


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
