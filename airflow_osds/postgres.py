"""Connecting to a PostgreSQL warehouse with psycopg 3 from an Airflow ``postgres`` connection's fields (no Airflow imports)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["DDL_LOCK", "LIBPQ_EXTRAS", "STATE_SCHEMA", "connect_kwargs", "create_once", "relation_exists"]

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


#: Every ``CREATE … IF NOT EXISTS`` airflow-osds runs takes this one lock (per database) first. PostgreSQL
#: checks ``IF NOT EXISTS`` without a lock, so two sessions creating the same schema or table at once
#: collide on the catalog's unique index and one fails — e.g. a Singer sync, a dbt build and a reverse-ETL
#: sync starting together, each creating ``osds_state`` for its own table. A lock per table would not
#: serialize their shared schema; DDL is rare and short, so one lock costs nothing.
DDL_LOCK = "SELECT pg_advisory_xact_lock(hashtext('airflow-osds catalog ddl'))"


def create_once(conn: Any, ddl: str | Sequence[Any]) -> None:
    """Run ``ddl`` (idempotent ``CREATE … IF NOT EXISTS`` statements: a list of strings or psycopg ``sql``
    objects, or ``;``-separated text with no ``;`` inside a name) in its own transaction, under
    :data:`DDL_LOCK`. ``conn``: a psycopg 3 connection."""
    with conn.transaction():
        conn.execute(DDL_LOCK)
        run_ddl(conn, ddl)


def run_ddl(conn: Any, ddl: str | Sequence[Any]) -> None:
    """The statements of :func:`create_once`, for a caller already holding :data:`DDL_LOCK` in a transaction
    that does more around them (a migration that must happen first)."""
    for statement in ddl.split(";") if isinstance(ddl, str) else ddl:
        if not isinstance(statement, str) or statement.strip():
            conn.execute(statement)


def relation_exists(conn: Any, name: str) -> bool:
    """Whether the table or view ``name`` (``schema.table``, quoted where needed) exists. ``conn``: psycopg 3."""
    return bool(conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0])
