"""Hook running dbt against the warehouse described by an Airflow PostgreSQL connection."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk import BaseHook

from airflow_osds.dbt.errors import DbtConfigurationError, ProfileError
from airflow_osds.dbt.profiles import PostgresTarget
from airflow_osds.dbt.state import WAREHOUSE
from airflow_osds.dbt.runner import DbtRunHandle, DbtRunResult, run_dbt
from airflow_osds.postgres import STATE_SCHEMA, create_once, relation_exists

__all__ = ["DbtHook"]

# Where a failed invocation's run_results.json waits for its retry. In the warehouse, not on
# the worker's disk: the retry may run on another worker.
STATE_TABLE = f"{STATE_SCHEMA}.dbt_run_results"
# The manifest of a step's last successful run, compared with by `state:` selectors.
STATE_MANIFESTS = f"{STATE_SCHEMA}.dbt_state_manifests"
_RUN_RESULTS_DDL = (f"CREATE SCHEMA IF NOT EXISTS {STATE_SCHEMA}; CREATE TABLE IF NOT EXISTS {STATE_TABLE} "
                    "(key text PRIMARY KEY, run_results jsonb NOT NULL, saved_at timestamptz NOT NULL DEFAULT now())")
_MANIFESTS_DDL = (f"CREATE SCHEMA IF NOT EXISTS {STATE_SCHEMA}; CREATE TABLE IF NOT EXISTS {STATE_MANIFESTS} "
                  "(key text PRIMARY KEY, manifest bytea NOT NULL, saved_at timestamptz NOT NULL DEFAULT now())")


class DbtHook(BaseHook):
    """
    Runs dbt commands with a ``profiles.yml`` rendered at run time from a ``postgres`` connection.

    The profile lives in a private temp directory removed after each command, and holds no
    secret: the password reaches dbt through the environment only. :meth:`stop` stops the
    command running (from another thread or a signal handler).

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
        self._running: DbtRunHandle | None = None

    def get_conn(self) -> PostgresTarget:
        """The connection's fields as a dbt-postgres target.

        :raises ProfileError: the connection cannot make a profile (no host, login or database,
            an invalid port …); the message names the connection.
        """
        conn = self.get_connection(self.warehouse_conn_id)
        extra = conn.extra_dejson
        options = {k: extra[k] for k in ("sslmode", "keepalives_idle", "connect_timeout") if k in extra}
        target = PostgresTarget(
            host=conn.host or "",
            port=int(conn.port or 5432),
            user=conn.login or "",
            password=conn.password or None,
            dbname=conn.schema or "",
            schema=self.target_schema or str(extra.get("dbt_schema", "public")),
            threads=self.threads,
            options=options,
        )
        try:
            target.profile_fields()  # validated here, where the error can name the connection
        except ProfileError as exc:
            raise exc.for_connection(self.warehouse_conn_id) from None
        return target

    def run(
        self,
        command: str,
        *,
        project_dir: str,
        env_vars: Mapping[str, str] | Sequence[str] | None = None,
        **kwargs: Any,
    ) -> DbtRunResult:
        """Run ``dbt <command>``; see :func:`airflow_osds.dbt.runner.run_dbt` for the arguments.

        :param env_vars: environment for the project's ``env_var()``: values by name, or names
            of variables to pass on from this process's environment (see :meth:`environment`).
        """
        self._running = handle = DbtRunHandle()
        return run_dbt(
            command,
            project_dir=project_dir,
            target=self.get_conn(),
            dbt_executable=self.dbt_executable,
            env=self.environment(env_vars),
            log_callback=self.log.info,
            handle=handle,
            **kwargs,
        )

    @property
    def current_run(self) -> DbtRunHandle | None:
        """The handle of the command :meth:`run` runs or ran last (its ``application_name`` names
        its warehouse connections), or ``None`` before the first."""
        return self._running

    def stop(self) -> None:
        """Stop the command :meth:`run` is running, if any (see :class:`~airflow_osds.dbt.runner.DbtRunHandle`)."""
        if self._running is not None:
            self.log.info("Stopping dbt")
            self._running.stop()

    @staticmethod
    def environment(env_vars: Mapping[str, str] | Sequence[str] | None) -> dict[str, str]:
        """The environment variables to give dbt: ``env_vars`` as a dict, or the values of the
        names it lists, read from this process's environment.

        :raises DbtConfigurationError: a listed name is not set here, or ``env_vars`` is neither.
        """
        if not env_vars:
            return {}
        if isinstance(env_vars, Mapping):
            return {str(name): str(value) for name, value in env_vars.items()}
        if isinstance(env_vars, str):
            raise DbtConfigurationError(
                f"env_vars must be a dict of values or a list of names, not the string {env_vars!r}."
            )
        missing = [name for name in env_vars if name not in os.environ]
        if missing:
            raise DbtConfigurationError(
                f"env_vars lists {missing}, which this worker's environment does not set: set them on the "
                "workers, or pass the values instead (env_vars={'NAME': '...'})."
            )
        return {name: os.environ[name] for name in env_vars}

    def create_schemas(self, schemas: Sequence[str]) -> list[str]:
        """Create those of ``schemas`` that do not exist (see ``DbtOperator``'s ``create_schemas``); returns them."""
        from psycopg import sql

        with self._warehouse() as conn:
            present = {r[0] for r in conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)", (list(schemas),)).fetchall()}
            missing = [s for s in dict.fromkeys(schemas) if s not in present]
            if missing:
                create_once(conn, [sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(s)) for s in missing])
        return missing

    # -- state kept for `dbt retry` ----------------------------------------------------------
    def save_run_results(self, key: Sequence[str], run_results: dict[str, Any]) -> None:
        """Keep a failed invocation's ``run_results.json`` for the task's next try."""
        with self._warehouse() as conn:
            create_once(conn, _RUN_RESULTS_DDL)
            conn.execute(
                f"INSERT INTO {STATE_TABLE} (key, run_results) VALUES (%s, %s) "
                "ON CONFLICT (key) DO UPDATE SET run_results = EXCLUDED.run_results, saved_at = now()",
                ("/".join(key), json.dumps(run_results)),
            )

    def load_run_results(self, key: Sequence[str]) -> dict[str, Any] | None:
        """The ``run_results.json`` a previous try saved, or ``None``."""
        with self._warehouse() as conn:
            if not relation_exists(conn, STATE_TABLE):
                return None
            row = conn.execute(f"SELECT run_results FROM {STATE_TABLE} WHERE key = %s", ("/".join(key),)).fetchone()
        if row is None:
            return None
        value = row[0]
        return value if isinstance(value, dict) else json.loads(value)

    def forget_run_results(self, key: Sequence[str]) -> None:
        """Remove what :meth:`save_run_results` kept, if anything."""
        with self._warehouse() as conn:
            if relation_exists(conn, STATE_TABLE):
                conn.execute(f"DELETE FROM {STATE_TABLE} WHERE key = %s", ("/".join(key),))

    # -- state manifests for `state:` selectors -------------------------------------------------
    def load_state_manifest(self, location: str, key: str) -> bytes | None:
        """The manifest :meth:`save_state_manifest` kept for ``key`` at ``location``, or ``None``.

        :param location: ``warehouse`` (table ``osds_state.dbt_state_manifests``) or a folder
            or object-store URL (``s3://…``), read through Airflow's ``ObjectStoragePath``.
        """
        if location == WAREHOUSE:
            with self._warehouse() as conn:
                if not relation_exists(conn, STATE_MANIFESTS):
                    return None
                found = conn.execute(f"SELECT manifest FROM {STATE_MANIFESTS} WHERE key = %s", (key,)).fetchone()
            return bytes(found[0]) if found else None
        path = _state_path(location, key)
        return path.read_bytes() if path.exists() else None

    def save_state_manifest(self, location: str, key: str, manifest: bytes) -> None:
        """Keep ``manifest`` (a successful run's) as the state the next run compares with."""
        if location == WAREHOUSE:
            with self._warehouse() as conn:
                create_once(conn, _MANIFESTS_DDL)
                conn.execute(
                    f"INSERT INTO {STATE_MANIFESTS} (key, manifest) VALUES (%s, %s) "
                    "ON CONFLICT (key) DO UPDATE SET manifest = EXCLUDED.manifest, saved_at = now()",
                    (key, manifest),
                )
            return
        path = _state_path(location, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(manifest)

    def _warehouse(self) -> Any:
        from airflow_osds.hooks.warehouse import connect

        return connect(self.get_connection(self.warehouse_conn_id), application_name="airflow-osds dbt")


def _state_path(location: str, key: str) -> Any:
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(location.rstrip("/") + "/" + key + "/manifest.json")
