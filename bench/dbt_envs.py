"""The Cosmos venvs of shape E (like envs.ensure_dagfactory_venv).

* ``venv-cosmos``: Cosmos and Airflow only (the DAG-parse loops; Cosmos reads the manifest, no dbt).
* ``venv-cosmos-dbt``: the same plus dbt-core and dbt-postgres (the versions the project .venv pins),
  for the runtime part: with dbt importable, Cosmos's local execution invokes dbt in process
  (``InvocationMode.DBT_RUNNER``), as ours does by default.
"""

from __future__ import annotations

from pathlib import Path

from envs import WORK, ensure_venv

__all__ = ["COSMOS_DBT_VENV", "COSMOS_REQUIREMENTS", "COSMOS_VENV", "ensure_cosmos_dbt_venv", "ensure_cosmos_venv"]

COSMOS_VENV = WORK / "venv-cosmos"
COSMOS_DBT_VENV = WORK / "venv-cosmos-dbt"
COSMOS_REQUIREMENTS = (
    "apache-airflow==3.3.2",
    "apache-airflow-providers-common-sql",
    "apache-airflow-providers-postgres",
    "astronomer-cosmos==1.15.1",
)
# Versions from constraints.txt: the same dbt as the project .venv.
COSMOS_DBT_REQUIREMENTS = (*COSMOS_REQUIREMENTS, "dbt-core", "dbt-postgres")


def ensure_cosmos_venv() -> Path:
    """The Cosmos venv's python (Cosmos needs apache-airflow in its own environment)."""
    return ensure_venv(COSMOS_VENV, COSMOS_REQUIREMENTS, "Cosmos")


def ensure_cosmos_dbt_venv() -> Path:
    """The python of the Cosmos venv that also has dbt (the runtime part)."""
    return ensure_venv(COSMOS_DBT_VENV, COSMOS_DBT_REQUIREMENTS, "Cosmos + dbt")
