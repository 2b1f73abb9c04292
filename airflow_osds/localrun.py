"""Run Airflow locally on the embedded PostgreSQL: the shared base of ``osds demo`` and the tests.

Airflow reads its configuration when it is first imported, so :func:`airflow_environ`
builds the whole environment up front and :func:`apply_environ` refuses to run after
``import airflow``. Nothing here points ``AIRFLOW_HOME`` at the user's home.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_osds.embedded import EmbeddedPostgres

if TYPE_CHECKING:
    from airflow.sdk import DAG

__all__ = [
    "DagRunResult",
    "LocalStack",
    "airflow_environ",
    "apply_environ",
    "migrate_metadata_db",
    "run_dag",
]

METADATA_DB = "airflow"
WAREHOUSE_DB = "warehouse"
#: The demo's application database (the "CRM") that its Singer step replicates, and its connection id.
CRM_SOURCE_DB = "crm_source"


def airflow_environ(
    *,
    home: Path,
    dags_folder: Path,
    metadata_url: str,
    connections: Mapping[str, Mapping[str, Any]] = {},
    extra: Mapping[str, str] = {},
) -> dict[str, str]:
    """Environment variables for an isolated Airflow installation under ``home``."""
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url,
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        # Long enough not to trigger InsecureKeyLengthWarning; local use only.
        "AIRFLOW__API_AUTH__JWT_SECRET": _stable_secret(home, "jwt_secret", 64),
        "AIRFLOW__API__SECRET_KEY": _stable_secret(home, "api_secret", 32),
    }
    for conn_id, conn in connections.items():
        env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(dict(conn))
    env.update(extra)
    return env


def apply_environ(env: Mapping[str, str]) -> None:
    """Export ``env``; fails if Airflow was already imported with another configuration."""
    if "airflow" in sys.modules:
        changed = [k for k, v in env.items() if k.startswith("AIRFLOW") and os.environ.get(k) != v]
        if changed:
            raise RuntimeError(
                f"Airflow was imported before its environment was set ({', '.join(sorted(changed))}); "
                "set the environment before the first `import airflow`."
            )
    os.environ.update(env)
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    Path(env["AIRFLOW__CORE__PLUGINS_FOLDER"]).mkdir(parents=True, exist_ok=True)


def migrate_metadata_db() -> None:
    """Create or upgrade Airflow's metadata database (what ``airflow db migrate`` does)."""
    from airflow.utils.db import upgradedb

    upgradedb()


@dataclass(frozen=True)
class DagRunResult:
    dag_id: str
    run_id: str
    state: str
    task_states: dict[str, str]
    duration_s: float

    @property
    def succeeded(self) -> bool:
        return self.state == "success"


def run_dag(dag: DAG, *, run_conf: dict[str, Any] | None = None, mark_success_pattern: str | None = None) -> DagRunResult:
    """Run ``dag`` once through Airflow's task runner (``dag.test()``) and report the task states.

    The DAG's file must lie under ``[core] dags_folder``: ``dag.test()`` serialises the DAG
    from its bundle.
    """
    started = time.monotonic()
    dag_run = dag.test(run_conf=run_conf, mark_success_pattern=mark_success_pattern)
    task_states = {ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]": str(ti.state) for ti in dag_run.get_task_instances()}
    return DagRunResult(
        dag_id=dag.dag_id,
        run_id=dag_run.run_id,
        state=str(dag_run.state),
        task_states=task_states,
        duration_s=time.monotonic() - started,
    )


@dataclass
class LocalStack:
    """Embedded PostgreSQL (warehouse + Airflow metadata) and an isolated Airflow home under ``state_dir``."""

    state_dir: Path
    dags_folder: Path
    warehouse_db: str = WAREHOUSE_DB
    port: int | None = None  # TCP port (and socket name); chosen at the first start when None
    postgres: EmbeddedPostgres = field(init=False)

    def __post_init__(self) -> None:
        self.state_dir = self.state_dir.resolve()
        self.postgres = EmbeddedPostgres(self.state_dir / "postgres", port=self.port)

    def start(self) -> LocalStack:
        self.postgres.start()
        self.postgres.create_database(METADATA_DB)
        self.postgres.create_database(self.warehouse_db)
        return self

    def connections(self) -> dict[str, dict[str, Any]]:
        """The Airflow connections of a local installation: the warehouse and the demo's CRM source."""
        return {
            "warehouse": self.postgres.airflow_connection(self.warehouse_db),
            # Over TCP: tap-postgres cannot use a unix socket.
            CRM_SOURCE_DB: self.postgres.airflow_connection(CRM_SOURCE_DB, tcp=True),
        }

    def environ(self, *, extra: Mapping[str, str] = {}) -> dict[str, str]:
        return airflow_environ(
            home=self.state_dir / "airflow",
            dags_folder=self.dags_folder,
            metadata_url=self.postgres.uri(METADATA_DB, driver="psycopg2"),
            connections=self.connections(),
            # The compiled pipelines of this installation stay with its other state.
            extra={"OSDS_CACHE_DIR": str(self.state_dir / "cache"), **extra},
        )


def _stable_secret(home: Path, name: str, nbytes: int) -> str:
    """A random secret kept in ``home`` so every process of one local installation agrees on it."""
    path = home / f".{name}"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        home.mkdir(parents=True, exist_ok=True)
        value = secrets.token_urlsafe(nbytes)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(value)
        return value
