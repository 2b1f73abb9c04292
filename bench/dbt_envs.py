"""The Cosmos venv for the dbt rendering benchmark (like envs.ensure_dagfactory_venv)."""

from __future__ import annotations

from pathlib import Path

from envs import WORK, ensure_venv

__all__ = ["COSMOS_REQUIREMENTS", "COSMOS_VENV", "ensure_cosmos_venv"]

COSMOS_VENV = WORK / "venv-cosmos"
COSMOS_REQUIREMENTS = (
    "apache-airflow==3.3.2",
    "apache-airflow-providers-common-sql",
    "apache-airflow-providers-postgres",
    "astronomer-cosmos==1.15.1",
)


def ensure_cosmos_venv() -> Path:
    """The Cosmos venv's python (Cosmos needs apache-airflow in its own environment)."""
    return ensure_venv(COSMOS_VENV, COSMOS_REQUIREMENTS, "Cosmos")
