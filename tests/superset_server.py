"""The session's real Apache Superset 6.1.0 (:class:`airflow_osds.superset.LocalSuperset`) for the tests.

One server for the whole test session, under the session's state directory, stopped at its end.
Its virtualenv and metadata template are built on first use (once per machine, in the component
cache) and never skipped for: a test that skips because a component is missing fails CI.
Enable it in ``tests/conftest.py`` with ``from tests.superset_server import superset  # noqa: F401``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_osds.superset import LocalSuperset
from airflow_osds.superset.client import SupersetClient
from airflow_osds.superset.provision import ensure_database

__all__ = ["add_warehouse_database", "superset"]

log = logging.getLogger(__name__)


@pytest.fixture(scope="session")
def superset() -> Iterator[LocalSuperset]:
    """A running local Superset; ``superset.base_url``, ``superset.admin`` (username, password)."""
    # Imported here, not at module level: conftest imports this module while it is still loading.
    from tests.conftest import SESSION_DIR

    server = LocalSuperset(SESSION_DIR / "superset")
    server.start()
    log.info("superset for the session: %s, timings %s", server.base_url, server.timings)
    try:
        yield server
    finally:
        server.stop()


def add_warehouse_database(client: SupersetClient, warehouse: Any, name: str) -> int:
    """A Superset database over the session's embedded warehouse (psycopg2, as Superset needs)."""
    return ensure_database(client, name, warehouse.stack.postgres.uri(warehouse.dbname, driver="psycopg2"))
