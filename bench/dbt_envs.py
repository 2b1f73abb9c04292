"""The Cosmos venv for the dbt rendering benchmark (like envs.ensure_dagfactory_venv)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from envs import CONSTRAINTS, WORK

__all__ = ["COSMOS_REQUIREMENTS", "COSMOS_VENV", "ensure_cosmos_venv"]

COSMOS_VENV = WORK / "venv-cosmos"
COSMOS_REQUIREMENTS = (
    "apache-airflow==3.3.2",
    "apache-airflow-providers-common-sql",
    "apache-airflow-providers-postgres",
    "astronomer-cosmos==1.15.1",
)
_MARKER = ".bench-installed"


def ensure_cosmos_venv() -> Path:
    """The Cosmos venv's python, (re)installing only when the requirements or constraints changed.

    Installed with ``-c constraints.txt`` so Airflow, the providers and every shared
    dependency are the versions the project .venv runs.
    """
    python = COSMOS_VENV / "bin" / "python"
    base_python = getattr(sys, "_base_executable", None) or sys.executable
    key = hashlib.sha256(
        json.dumps([COSMOS_REQUIREMENTS, CONSTRAINTS.read_text(), sys.version]).encode()
    ).hexdigest()
    marker = COSMOS_VENV / _MARKER
    if python.exists() and marker.exists() and marker.read_text() == key:
        return python
    print(f"bench: installing Cosmos venv in {COSMOS_VENV} (once)…", file=sys.stderr, flush=True)
    if not python.exists():
        subprocess.run([base_python, "-m", "venv", str(COSMOS_VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q",
         "-c", str(CONSTRAINTS), *COSMOS_REQUIREMENTS],
        check=True,
    )
    marker.write_text(key)
    return python


if __name__ == "__main__":
    print(ensure_cosmos_venv())
