"""Tasks that start together never fail creating the schemas and tables they share.

A Singer sync, a dbt build and a reverse-ETL sync starting at once (the two-worker e2e test does
exactly that) each create ``osds_state`` for their own table; dbt model tasks of one layer each
create the schema their models build into. PostgreSQL checks ``IF NOT EXISTS``
without a lock: the second session waits on the first one's uncommitted catalog row, then fails
with a unique violation. Every creator takes :data:`airflow_osds.postgres.DDL_LOCK` first.

Each case holds the first creator open at the exact point of the race (its ``CREATE SCHEMA`` done,
not committed) instead of hoping two threads meet there: a creator that skipped the lock fails
every time, one that takes it waits and succeeds.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from airflow_osds.postgres import DDL_LOCK, STATE_SCHEMA

_db_counter = itertools.count()


def _singer(conn: Any, dbname: str) -> None:
    from airflow_osds.singer import state

    state.put(conn, "p:s:tap-to-target", {"bookmarks": {}})


def _reverse_etl(conn: Any, dbname: str) -> None:
    from airflow_osds.reverse_etl import diff

    diff.ensure_tables(conn)


def _snowplow_ledger(conn: Any, dbname: str) -> None:
    from airflow_osds.snowplow import ledger

    ledger.ensure_ledger(conn)


def _dbt_run_results(conn: Any, dbname: str) -> None:
    from airflow_osds.hooks.dbt import DbtHook

    DbtHook("warehouse").save_run_results(["p", "t"], {"results": []})


def _dbt_state_manifest(conn: Any, dbname: str) -> None:
    from airflow_osds.hooks.dbt import DbtHook

    DbtHook("warehouse").save_state_manifest("warehouse", "p/t", b"{}")


def _connect(pg: Any, dbname: str) -> Any:
    return pg.connect(dbname, autocommit=True)


def _waiting_on_a_lock(observer: Any, holder: Any) -> bool:
    with observer:
        blocked = observer.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' "
            "AND %s = ANY(pg_blocking_pids(pid))", (holder.info.backend_pid,)).fetchone()[0]
    return blocked > 0


def _dbt_model_schemas(conn: Any, dbname: str) -> None:
    from airflow_osds.hooks.dbt import DbtHook

    assert DbtHook("warehouse").create_schemas([MODEL_SCHEMA, "public"]) == [MODEL_SCHEMA]


MODEL_SCHEMA = "analytics"

# creator → (the schema another task is creating at the same time, what the creator runs)
CREATORS: dict[str, tuple[str, Callable[[Any, str], None]]] = {
    "singer state": (STATE_SCHEMA, _singer),
    "reverse-ETL state": (STATE_SCHEMA, _reverse_etl),
    "snowplow ledger": (STATE_SCHEMA, _snowplow_ledger),
    "dbt run results": (STATE_SCHEMA, _dbt_run_results),
    "dbt state manifests": (STATE_SCHEMA, _dbt_state_manifest),
    # A dbt model task creating the schema its models build into, while another model task of the
    # same layer does (dbt's own CREATE SCHEMA would collide: the operator creates it first).
    "dbt model schemas": (MODEL_SCHEMA, _dbt_model_schemas),
}


@pytest.mark.parametrize("creator", list(CREATORS))
def test_a_creator_waits_for_another_task_creating_the_same_schema(
        creator: str, postgres: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    pg = postgres.postgres
    dbname = f"ddl_race_{next(_db_counter)}"
    pg.create_database(dbname, exist_ok=False)
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", pg.airflow_connection_env(dbname))
    try:
        with pg.connect(dbname) as other_task, pg.connect(dbname, autocommit=True) as conn:
            # Another task mid-way through its creation: lock taken, schema created, not committed yet.
            other_task.execute(DDL_LOCK)
            schema, create = CREATORS[creator]
            other_task.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            errors: list[BaseException] = []

            def run() -> None:
                try:
                    create(conn, dbname)
                except BaseException as exc:  # reported by the assertion below
                    errors.append(exc)

            thread = threading.Thread(target=run)
            thread.start()
            # The creator reaches the race: it waits on a lock the other task holds (the DDL lock, or
            # without it, the uncommitted schema row).
            deadline = time.monotonic() + 30
            while not _waiting_on_a_lock(_connect(pg, dbname), other_task):
                assert thread.is_alive() and time.monotonic() < deadline, f"{creator} never waited: {errors}"
                time.sleep(0.05)
            other_task.commit()
            thread.join(timeout=30)
            assert not thread.is_alive()
            assert errors == [], f"{creator} failed after the other task created {schema}: {errors}"
    finally:
        pg.drop_database(dbname)
