"""Apache Superset engine code, without Airflow: a local Superset for the tests and the demo."""

from __future__ import annotations

from airflow_osds.superset.local import (
    DEFAULT_ADMIN,
    SUPERSET_REQUIREMENTS,
    SUPERSET_VERSION,
    LocalSuperset,
    LocalSupersetError,
    ensure_superset_template,
    ensure_superset_venv,
)

__all__ = [
    "DEFAULT_ADMIN",
    "SUPERSET_REQUIREMENTS",
    "SUPERSET_VERSION",
    "LocalSuperset",
    "LocalSupersetError",
    "ensure_superset_template",
    "ensure_superset_venv",
]
