"""A psycopg 3 connection from an Airflow ``postgres`` connection: the one way our hooks and CLI reach the warehouse."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

__all__ = ["connect"]


def connect(connection: Any, *, application_name: str) -> psycopg.Connection[Any]:
    """Connect, in autocommit mode (callers open their own transactions), to what ``connection`` describes.

    :param connection: an Airflow ``Connection`` (``host``, ``port``, ``login``, ``password``,
        ``schema`` = the database, libpq parameters in the extras).
    """
    import psycopg

    from airflow_osds.postgres import connect_kwargs

    kwargs = connect_kwargs(host=connection.host, port=connection.port, login=connection.login,
                            password=connection.password, dbname=connection.schema, extra=connection.extra_dejson,
                            application_name=application_name)
    return psycopg.connect(autocommit=True, **kwargs)
