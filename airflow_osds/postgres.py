"""Connecting to a PostgreSQL warehouse with psycopg 3 from an Airflow ``postgres`` connection's fields (no Airflow imports)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["LIBPQ_EXTRAS", "STATE_SCHEMA", "connect_kwargs", "create_once"]

# libpq parameters taken from a connection's extra; anything else there (dbt_schema …) is not libpq's.
LIBPQ_EXTRAS = (
    "sslmode", "sslcert", "sslkey", "sslrootcert", "sslcrl", "connect_timeout", "application_name",
    "options", "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count",
    "target_session_attrs",
)


def connect_kwargs(
    *,
    host: str | None,
    port: int | str | None,
    login: str | None,
    password: str | None,
    dbname: str | None,
    extra: Mapping[str, Any] | None = None,
    application_name: str = "airflow-osds",
) -> dict[str, Any]:
    """``psycopg.connect()`` keyword arguments from an Airflow ``postgres`` connection's fields.

    ``host`` may be a unix socket directory. A 10 s ``connect_timeout`` applies unless the
    connection's extra sets one: a hung warehouse must not hang a task or a poll for ever.
    """
    kwargs: dict[str, Any] = {
        "host": host or "localhost", "port": int(port or 5432), "user": login or None, "password": password or None,
        "dbname": dbname or None, "connect_timeout": 10, "application_name": application_name,
    }
    kwargs.update({k: (extra or {})[k] for k in LIBPQ_EXTRAS if k in (extra or {})})
    return {k: v for k, v in kwargs.items() if v is not None}


#: The schema of what airflow-osds keeps in the warehouse about its own runs (ledgers, Singer state).
STATE_SCHEMA = "osds_state"


def create_once(conn: Any, name: str, ddl: str) -> None:
    """Run ``ddl`` (``;``-separated, idempotent ``CREATE … IF NOT EXISTS``) in its own transaction, under a lock
    on ``name``: tasks starting together would otherwise race on the catalog."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (name,))
        for statement in ddl.split(";"):
            if statement.strip():
                conn.execute(statement)
