"""Test harness: an isolated Airflow on a session-scoped embedded PostgreSQL.

Airflow reads its configuration on first import, so the environment is built here, at
conftest import, before any test module can import Airflow. The session's PostgreSQL
holds Airflow's metadata database; each test module gets a fresh warehouse database
through the ``warehouse`` fixture.
"""

from __future__ import annotations

import atexit
import itertools
import os
import re
import shutil
import tempfile
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_osds.embedded import EmbeddedPostgres, free_port
from airflow_osds.localrun import LocalStack, apply_environ

REPO_ROOT = Path(__file__).resolve().parent.parent

# A short path under /tmp: the unix socket path must stay under ~100 bytes.
SESSION_DIR = Path(tempfile.mkdtemp(prefix="osds-test-"))
SESSION_DIR.chmod(0o755)  # the embedded server may run as another system user
DAGS_FOLDER = SESSION_DIR / "dags"
DAGS_FOLDER.mkdir()

# Airflow's configuration (metadata DB URL included) is fixed here, but PostgreSQL starts only
# when a test needs it: pure unit tests never pay for it. The port is chosen now so the URL
# is known before the server exists. The environment also sets OSDS_CACHE_DIR under the
# session directory: no test writes a compiled cache into the repository.
STACK = LocalStack(state_dir=SESSION_DIR, dags_folder=DAGS_FOLDER, warehouse_db="warehouse_session", port=free_port())
apply_environ(STACK.environ(extra={"AIRFLOW__CORE__UNIT_TEST_MODE": "False"}))


def _teardown_session_dir() -> None:
    STACK.postgres.stop()
    if os.environ.get("OSDS_KEEP_TEST_STATE") != "1":
        shutil.rmtree(SESSION_DIR, ignore_errors=True)


atexit.register(_teardown_session_dir)


@pytest.fixture(scope="session")
def postgres() -> LocalStack:
    """The session's embedded PostgreSQL stack, started on first use."""
    return STACK.start()


@pytest.fixture(scope="session")
def airflow_db(postgres: LocalStack) -> None:
    """A migrated Airflow metadata database."""
    from airflow_osds.localrun import migrate_metadata_db

    migrate_metadata_db()


@dataclass
class Warehouse:
    """A fresh database of the session's PostgreSQL, exposed as Airflow connection ``warehouse``."""

    stack: LocalStack
    dbname: str

    def query(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self.stack.postgres.connect(self.dbname) as conn:
            return conn.execute(sql, params).fetchall()

    def execute(self, statements: str) -> None:
        """Run SQL statements (several, separated by ``;``) in autocommit."""
        with self.stack.postgres.connect(self.dbname, autocommit=True) as conn:
            conn.execute(statements)

    def scalar(self, sql: str, params: Any = None) -> Any:
        rows = self.query(sql, params)
        assert len(rows) == 1 and len(rows[0]) == 1, rows
        return rows[0][0]


_db_counter = itertools.count()


@pytest.fixture(scope="module")
def warehouse(request: pytest.FixtureRequest, postgres: LocalStack) -> Iterator[Warehouse]:
    module = re.sub(r"\W", "_", request.module.__name__.rsplit(".", 1)[-1])[:40]
    dbname = f"wh_{module}_{next(_db_counter)}"
    STACK.postgres.create_database(dbname, exist_ok=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW_CONN_WAREHOUSE", STACK.postgres.airflow_connection_env(dbname))
        yield Warehouse(STACK, dbname)
    STACK.postgres.drop_database(dbname)


def login_role(pg: EmbeddedPostgres, name: str, password: str) -> str:
    """A superuser role ``name`` that logs in with ``password`` (created, or its password reset); returns ``name``.

    For tests whose point is a given password (a weak one, a known one searched for in logs): the
    embedded server checks passwords, so the role must really have it.
    """
    from psycopg import sql

    with pg.connect(autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(sql.SQL(verb + " ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
            sql.Identifier(name), sql.Literal(password)))
    return name


_dag_file_counter = itertools.count()


@pytest.fixture
def pipeline_dags(airflow_db: None) -> Any:
    """Build the DAGs of a pipelines folder from a DAG file inside Airflow's DAG folder.

    ``dag.test()`` only runs DAGs that live in a DAG bundle, so each call writes a thin
    loader file (the same shape as ``dags/osds_pipelines.py``) into the session's DAG folder.
    """
    from airflow.dag_processing.dagbag import DagBag

    written: list[Path] = []

    def build(pipelines_dir: Path) -> dict[str, Any]:
        dag_file = DAGS_FOLDER / f"osds_loader_{next(_dag_file_counter)}.py"
        dag_file.write_text(
            textwrap.dedent(
                f"""\
                # airflow DAG file written by the test harness
                from airflow_osds.factory import load_pipelines

                load_pipelines({str(pipelines_dir)!r}, globals())
                """
            )
        )
        written.append(dag_file)
        bag = DagBag(dag_folder=str(dag_file))
        assert not bag.import_errors, bag.import_errors
        return bag.dags

    yield build
    for path in written:
        path.unlink(missing_ok=True)


@pytest.fixture
def run_dag(airflow_db: None) -> Any:
    """Run a DAG through Airflow's task runner (``dag.test()``); returns a ``DagRunResult``."""
    from airflow_osds.localrun import run_dag as _run_dag

    return _run_dag


@pytest.fixture(scope="session")
def repo_dbt_manifests() -> None:
    """The repository's dbt projects parsed, as `osds demo` or a deployment's `osds dbt-parse` does.

    A fresh clone has no `target/` (it is git-ignored); tests that load `include/pipelines`
    need the manifests the factory reads.
    """
    from airflow_osds.dbt.manifest_build import parse_stale_projects

    parse_stale_projects(REPO_ROOT / "include" / "dbt")


def copy_web_analytics(dest: Path) -> Path:
    """The demo's web_analytics pipeline with everything it reads, under ``dest`` as under include/:
    pipelines/ingest.yml (which loads its sources) and web_analytics.yml, data/, iglu/ and
    dbt/web_analytics/ (no target/), and the CRM database (``crm_source``) seeded on the session's
    PostgreSQL. Returns pipelines/."""
    include = REPO_ROOT / "include"
    (dest / "pipelines").mkdir(parents=True, exist_ok=True)
    for name in ("ingest.yml", "web_analytics.yml"):
        shutil.copy(include / "pipelines" / name, dest / "pipelines")
    for part in ("data", "iglu"):
        shutil.copytree(include / part, dest / part)
    shutil.copytree(include / "dbt" / "web_analytics", dest / "dbt" / "web_analytics",
                    ignore=shutil.ignore_patterns("target", "logs"))
    from airflow_osds.demo import seed_crm_source

    STACK.start()
    seed_crm_source(STACK, include / "data" / "crm" / "crm_source.sql")  # what its Singer step replicates
    return dest / "pipelines"


# The session's real Superset 6.1 (started on first use, stopped at the end).
from tests.superset_server import superset  # noqa: E402, F401
