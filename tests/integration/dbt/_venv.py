"""A separate virtualenv holding dbt, for the runner's subprocess mode.

Kept in the component-environment cache (:mod:`airflow_osds.venvs`: ``$OSDS_VENV_CACHE/dbt-1.11``,
default ``${XDG_CACHE_HOME:-~/.cache}/airflow-osds/venvs``), or exactly ``$OSDS_TEST_VENV_DIR``
when that is set. Runnable as a script to pre-build it: ``python tests/integration/dbt/_venv.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

from airflow_osds.venvs import ensure_venv

# dbt-postgres only requires dbt-core>=1.8, and plain dbt-core 1.12 cannot be installed
# offline (its parser's sdist downloads a wheel from GitHub): always pin core.
REQUIREMENTS = ("dbt-core~=1.11.0", "dbt-postgres~=1.11.0")


def ensure_dbt_venv() -> Path:
    """Return the ``dbt`` executable of the separate virtualenv, creating it if needed.

    :raises airflow_osds.venvs.VenvError: the virtualenv could not be created (the caller's test must fail).
    """
    override = os.environ.get("OSDS_TEST_VENV_DIR")
    root = ensure_venv("dbt-1.11", REQUIREMENTS, root=Path(override) if override else None,
                       check=["-c", "import dbt.adapters.postgres"])
    return root / "bin" / "dbt"


if __name__ == "__main__":
    print(ensure_dbt_venv())
