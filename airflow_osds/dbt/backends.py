"""Naming a dbt invocation's warehouse connections, and terminating the queries it leaves running when stopped.

A client that dies mid-query (dbt killed by ``SIGTERM``/``SIGKILL`` before its Ctrl-C path
ran) does not stop its query: PostgreSQL notices the closed socket only when it next writes
to it, so a ``pg_sleep(60)`` or a long ``CREATE TABLE … AS`` runs on. To find such queries,
each invocation's connections carry an ``application_name`` of their own
(:func:`new_application_name`), and :func:`terminate_leftovers` ends, through a connection of
ours, every non-idle backend still using that name.

The name travels in ``PGAPPNAME`` (libpq reads it for every connection that sets no
``application_name``), not in ``profiles.yml``: dbt's partial-parse check hashes every
connection field of the profile, ``application_name`` included, so a name unique per
invocation there would make every task parse the whole project again. The rendered profile
therefore says ``application_name: ''`` (dbt-postgres then passes none and libpq takes
``PGAPPNAME``), the same for every invocation and for ``osds dbt-parse``.

In process, ``PGAPPNAME`` is set in this process's environment for the length of the dbt
call, so another libpq connection this process opens meanwhile carries the name too; only
non-idle backends of the same database and role are ever terminated, and only when the
invocation is being stopped. A target whose options set ``application_name`` keeps it, and
no leftovers can be told apart: none are terminated.

No Airflow imports; psycopg is imported when a connection is made.
"""

from __future__ import annotations

import secrets

from airflow_osds.dbt.profiles import PostgresTarget

__all__ = ["APPLICATION_NAME_ENV", "APPLICATION_NAME_PREFIX", "STOPPER_APPLICATION_NAME", "new_application_name",
           "terminate_leftovers"]

#: The libpq environment variable carrying an invocation's name into dbt's connections.
APPLICATION_NAME_ENV = "PGAPPNAME"
#: How every invocation's name starts (at most 63 bytes in all: PostgreSQL truncates beyond).
APPLICATION_NAME_PREFIX = "osds-dbt-"
#: The name of the connection that terminates leftovers (never one of an invocation's).
STOPPER_APPLICATION_NAME = "osds-dbt-stop"

# Seconds to wait for the warehouse when stopping: on_kill must not hang on an unreachable one.
_CONNECT_TIMEOUT = 5

_TERMINATE = """
SELECT pid, pg_terminate_backend(pid)
FROM pg_stat_activity
WHERE application_name = %s
  AND pid <> pg_backend_pid()
  AND datname = current_database()
  AND usename = current_user
  AND backend_type = 'client backend'
  AND state <> 'idle'
"""


def new_application_name() -> str:
    """A name for one invocation's connections: ``osds-dbt-`` and 16 random hex digits."""
    return APPLICATION_NAME_PREFIX + secrets.token_hex(8)


def terminate_leftovers(target: PostgresTarget, application_name: str) -> list[int]:
    """Terminate the non-idle backends of ``target``'s database and role named ``application_name``.

    :return: the pids of the backends terminated.
    :raises psycopg.Error: the warehouse could not be reached or refused the query.
    """
    import psycopg

    from airflow_osds.postgres import connect_kwargs

    extra = {k: v for k, v in target.options.items() if k != "application_name"}
    extra.setdefault("connect_timeout", _CONNECT_TIMEOUT)
    kwargs = connect_kwargs(
        host=target.host, port=target.port, login=target.user, password=target.password, dbname=target.dbname,
        extra=extra, application_name=STOPPER_APPLICATION_NAME,
    )
    with psycopg.connect(**kwargs, autocommit=True) as conn:
        rows = conn.execute(_TERMINATE, (application_name,)).fetchall()
    return [int(pid) for pid, terminated in rows if terminated]
