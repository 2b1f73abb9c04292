"""Hook running dbt against the warehouse described by an Airflow PostgreSQL connection."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseHook

from airflow_osds.dbt.profiles import PostgresTarget
from airflow_osds.dbt.runner import DbtRunResult, run_dbt

__all__ = ["DbtHook"]

# Where a failed invocation's run_results.json waits for its retry. In the warehouse, not on
# the worker's disk: the retry may run on another worker.
STATE_TABLE = "osds_state.dbt_run_results"


class DbtHook(BaseHook):
    """
    Runs dbt commands with a ``profiles.yml`` rendered at run time from a ``postgres`` connection.

    The profile lives in a private temp directory removed after each command, and holds no
    secret: the password reaches dbt through the environment only.

    :param warehouse_conn_id: Airflow connection (type ``postgres``) of the warehouse.
    :param target_schema: schema dbt builds into; default: the connection's extra
        ``dbt_schema``, else ``public``.
    :param threads: dbt threads.
    :param dbt_executable: a ``dbt`` executable or virtualenv directory to run dbt as a
        subprocess from; default: in process with ``dbtRunner``.
    """

    conn_name_attr = "warehouse_conn_id"
    default_conn_name = "warehouse"
    conn_type = "postgres"
    hook_name = "dbt (on a PostgreSQL connection)"

    def __init__(
        self,
        warehouse_conn_id: str = default_conn_name,
        *,
        target_schema: str | None = None,
        threads: int = 4,
        dbt_executable: str | None = None,
    ) -> None:
        super().__init__()
        self.warehouse_conn_id = warehouse_conn_id
        self.target_schema = target_schema
        self.threads = threads
        self.dbt_executable = dbt_executable

    def get_conn(self) -> PostgresTarget:
        conn = self.get_connection(self.warehouse_conn_id)
        extra = conn.extra_dejson
        options = {k: extra[k] for k in ("sslmode", "keepalives_idle", "connect_timeout") if k in extra}
        return PostgresTarget(
            host=conn.host or "localhost",
            port=int(conn.port or 5432),
            user=conn.login or "",
            password=conn.password or None,
            dbname=conn.schema or "",
            schema=self.target_schema or str(extra.get("dbt_schema", "public")),
            threads=self.threads,
            options=options,
        )

    def run(self, command: str, *, project_dir: str, **kwargs: Any) -> DbtRunResult:
        """Run ``dbt <command>``; see :func:`airflow_osds.dbt.runner.run_dbt` for the arguments."""
        return run_dbt(
            command,
            project_dir=project_dir,
            target=self.get_conn(),
            dbt_executable=self.dbt_executable,
            log_callback=self.log.info,
            **kwargs,
        )

    # -- state kept for `dbt retry` ----------------------------------------------------------
    def save_run_results(self, key: Sequence[str], run_results: dict[str, Any]) -> None:
        """Keep a failed invocation's ``run_results.json`` for the task's next try."""
        # Straight through the connection: DbApiHook.run would log the whole document.
        with self._sql().get_conn() as conn, conn.cursor() as cursor:
            cursor.execute("CREATE SCHEMA IF NOT EXISTS osds_state")
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} (key text PRIMARY KEY, run_results jsonb NOT NULL, "
                "saved_at timestamptz NOT NULL DEFAULT now())"
            )
            cursor.execute(
                f"INSERT INTO {STATE_TABLE} (key, run_results) VALUES (%s, %s) "
                "ON CONFLICT (key) DO UPDATE SET run_results = EXCLUDED.run_results, saved_at = now()",
                ("/".join(key), json.dumps(run_results)),
            )
            conn.commit()

    def load_run_results(self, key: Sequence[str]) -> dict[str, Any] | None:
        """The ``run_results.json`` a previous try saved, or ``None``."""
        hook = self._sql()
        if not _state_table_exists(hook):
            return None
        row = hook.get_first(f"SELECT run_results FROM {STATE_TABLE} WHERE key = %s", parameters=("/".join(key),))
        if row is None:
            return None
        value = row[0]
        return value if isinstance(value, dict) else json.loads(value)

    def forget_run_results(self, key: Sequence[str]) -> None:
        hook = self._sql()
        if _state_table_exists(hook):
            hook.run(f"DELETE FROM {STATE_TABLE} WHERE key = %s", parameters=("/".join(key),))

    def _sql(self) -> Any:
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        return PostgresHook(postgres_conn_id=self.warehouse_conn_id)


def _state_table_exists(hook: Any) -> bool:
    row = hook.get_first("SELECT to_regclass(%s) IS NOT NULL", parameters=(STATE_TABLE,))
    return bool(row and row[0])
