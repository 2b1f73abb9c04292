"""Two Edge workers: a task that fails on one resumes on the other from what the warehouse holds.

Airflow's real stack with the Edge executor (apache-airflow-providers-edge3): api-server, scheduler,
dag-processor, triggerer, and two ``airflow edge worker`` processes, ``worker-a`` and ``worker-b``.
Each worker has its own copy of the project (as git-sync would give it), its own ``AIRFLOW_HOME``,
temp directory (``TMPDIR``: dbt's target path, the Singer config files) and compile cache
(``OSDS_CACHE_DIR``), and no metadata-DB setting: it reaches Airflow through the api-server only.

Three pipelines run at once on worker A, which is broken (fault injection, see
``tests/fixtures/faulty_worker/sitecustomize.py``): a Singer sync whose target dies after its first
committed state, a dbt build whose middle model fails, a reverse-ETL sync whose task process dies
after two acknowledged batches. Worker A is then put into maintenance and worker B takes the
retries, which resume from the warehouse: the Singer state, dbt's stored run results
(``dbt retry``), the delivered-state table. The final counts are exact: nothing lost, nothing twice.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_osds.localrun import LocalStack
from airflow_osds.stack import AirflowStack, StackError
from tests.singer_plugins import TAP_POSTGRES, plugin

REPO_ROOT = Path(__file__).resolve().parents[2]
FAULTS = REPO_ROOT / "tests" / "fixtures" / "faulty_worker"
OSDS = str(Path(sys.executable).parent / "osds")
SOURCE_DB, DEST_DB, WAREHOUSE_DB = "workers_source", "workers_dest", "wh_workers"
ACCOUNTS = 25_000  # the tap's SDK emits a state every 10,000 records: the target commits and dies at the first
TO_SYNC, RETL_BATCH = 2_500, 500
DBT_IDS = 1_000
# Worker A must not take a retry before it is put into maintenance, which happens once it has taken the
# first try of all three tasks. Those start up to tens of seconds apart on a busy machine (one failed in
# a clean clone with 10 s: A took a retry before the last first try had started).
RETRY_DELAY = "45s"
DAG_IDS = ("el_accounts", "transform_accounts", "sync_accounts")
TASKS = {"el_accounts": "replicate", "transform_accounts": "build.project", "sync_accounts": "push"}
# What worker A's first try of each task must have died of (anything else is a bug, not the injected fault).
FIRST_TRY_DIED_OF = {
    "el_accounts": "the task process exits (17) after storing the first committed state",
    "transform_accounts": "division by zero",
    "sync_accounts": "the task process exits (19) after 2 acknowledged batches",
}

PIPELINES = {
    "el_accounts.yml": f"""\
        pipeline: el_accounts
        schedule: "@once"
        start_date: 2026-01-01
        defaults: {{retries: 1, retry_delay: {RETRY_DELAY}}}
        steps:
          replicate:
            singer:
              tap:
                executable: tap-postgres
                pip_url: {TAP_POSTGRES}
                connection: {SOURCE_DB}
                config: {{filter_schemas: [public]}}
                select: [public-accounts.*]
                metadata:
                  public-accounts: {{replication-key: updated_at}}
              target:
                config: {{max_state_lag_seconds: 0}}   # commit and print the state at every STATE message
              schema: raw_accounts
        """,
    "transform_accounts.yml": f"""\
        pipeline: transform_accounts
        schedule: "@once"
        start_date: 2026-01-01
        defaults: {{retries: 1, retry_delay: {RETRY_DELAY}}}
        steps:
          build:
            dbt:
              project: ../dbt/accounts
              granularity: project
        """,
    "sync_accounts.yml": f"""\
        pipeline: sync_accounts
        schedule: "@once"
        start_date: 2026-01-01
        defaults: {{retries: 1, retry_delay: {RETRY_DELAY}}}
        steps:
          push:
            reverse_etl:
              source: {{table: accounts.to_sync, key: id}}
              fields: {{name: name, score: score}}
              destination:
                kind: postgres
                connection: {DEST_DB}
                table: public.accounts
                batch_size: {RETL_BATCH}
              mode: upsert
        """,
}

DBT_PROJECT = {
    "dbt_project.yml": """\
        name: accounts
        version: "1.0.0"
        config-version: 2
        profile: osds
        model-paths: ["models"]
        models:
          accounts:
            +materialized: table
        """,
    "models/account_ids.sql": f"select g as id from generate_series(1, {DBT_IDS}) g\n",
    # Fails on worker A only: its database sessions carry osds.fault (PGOPTIONS in its environment).
    "models/account_scores.sql": """\
        select id, case when current_setting('osds.fault', true) = 'dbt' then id / 0 else id % 7 end as score
        from {{ ref('account_ids') }}
        """,
    "models/account_tiers.sql": "select score, count(*) as n from {{ ref('account_scores') }} group by score\n",
}


def _write_project(project: Path) -> None:
    shutil.copytree(REPO_ROOT / "dags", project / "dags", ignore=shutil.ignore_patterns("__pycache__"))
    for name, text in PIPELINES.items():
        path = project / "include" / "pipelines" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    for name, text in DBT_PROJECT.items():
        path = project / "include" / "dbt" / "accounts" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def _seed(pg: Any) -> None:
    for db in (SOURCE_DB, DEST_DB, WAREHOUSE_DB):
        pg.create_database(db, exist_ok=False)
    with pg.connect(SOURCE_DB, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.accounts (id int PRIMARY KEY, name text NOT NULL, "
                     "updated_at timestamptz NOT NULL UNIQUE)")
        conn.execute("INSERT INTO public.accounts SELECT g, 'account ' || g, "
                     "timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second' "
                     f"FROM generate_series(1, {ACCOUNTS}) g")
    with pg.connect(WAREHOUSE_DB, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA accounts")
        conn.execute("CREATE TABLE accounts.to_sync AS SELECT g AS id, 'account ' || g AS name, g % 10 AS score "
                     f"FROM generate_series(1, {TO_SYNC}) g")
        conn.execute("ALTER TABLE accounts.to_sync ADD PRIMARY KEY (id)")
    with pg.connect(DEST_DB, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.accounts (id int PRIMARY KEY, name text, score int)")


@pytest.fixture(scope="module")
def two_workers(postgres: LocalStack) -> Iterator[AirflowStack]:
    plugin("tap-postgres", TAP_POSTGRES)  # the shared virtualenv cache: what a worker image carries
    pg = postgres.postgres
    root = postgres.state_dir / "two-workers"
    project = root / "project"
    _write_project(project)
    _seed(pg)
    tcp = {db: pg.airflow_connection(db, tcp=True) for db in (SOURCE_DB, DEST_DB)}
    stack = AirflowStack(
        postgres, root, metadata_db="airflow_workers", warehouse_db=WAREHOUSE_DB, dags_folder=project / "dags",
        connections=tcp, executor="edge", fresh=False,
        extra_env={"AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True", "OSDS_CACHE_DIR": str(root / "cache")},
    )
    # The DAG processor never runs dbt: the manifest is written first, then every copy carries it.
    parse = subprocess.run([OSDS, "dbt-parse", str(project / "include" / "dbt" / "accounts"),
                            "--connection", "warehouse"], env=stack.environ(), capture_output=True, text=True,
                           timeout=300)
    assert parse.returncode == 0, parse.stdout + parse.stderr
    copies = {}
    for name in ("worker-a", "worker-b"):
        copies[name] = root / "workers" / name / "project"
        shutil.copytree(project, copies[name])
    stack.start()
    try:
        broken = {"PYTHONPATH": os.pathsep.join(filter(None, [str(FAULTS), os.environ.get("PYTHONPATH")])),
                  "PGOPTIONS": "-c osds.fault=dbt"}
        stack.start_edge_worker("worker-a", concurrency=3,
                                env={"AIRFLOW__CORE__DAGS_FOLDER": str(copies["worker-a"] / "dags"), **broken})
        stack.start_edge_worker("worker-b", concurrency=3,
                                env={"AIRFLOW__CORE__DAGS_FOLDER": str(copies["worker-b"] / "dags")})
        stack.set_worker_maintenance("worker-b", True, comment="standby until worker-a is drained")
        stack.wait_for(lambda: stack.edge_workers()["worker-b"] == "maintenance mode", timeout=30,
                       what="worker-b in maintenance")
        yield stack
    finally:
        stack.stop()


def _tries(stack: AirflowStack, dag_id: str, run_id: str, task_id: str) -> list[tuple[int, str | None, str]]:
    path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/tries"
    tries = stack._request("GET", path)["task_instances"]
    return sorted((t["try_number"], t["hostname"], t["state"]) for t in tries)


def _return_value(stack: AirflowStack, dag_id: str, run_id: str, task_id: str) -> Any:
    path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value"
    return stack._request("GET", path)["value"]


def _one(conn: Any, sql: str) -> Any:
    return conn.execute(sql).fetchone()


def test_tasks_failing_on_one_worker_resume_on_the_other_from_the_warehouse(two_workers: AirflowStack) -> None:
    stack = two_workers
    stack.wait_for_dags(set(DAG_IDS), unexpected_error=lambda f: True, timeout=180)
    for dag_id in DAG_IDS:
        stack.unpause(dag_id)

    def first_tries_on_a() -> bool:
        jobs = [j for dag_id in DAG_IDS for j in stack.edge_jobs(dag_id)]
        if any(j["edge_worker"] not in (None, "worker-a") for j in jobs):
            raise StackError(f"a job ran elsewhere than worker-a while worker-b was in maintenance: {jobs}")
        if any(j["try_number"] > 1 for j in jobs):
            raise StackError(f"worker-a took a retry before it took every first try (retry_delay {RETRY_DELAY} "
                             f"is shorter than the spread of the first tries on this machine): {jobs}")
        return {j["dag_id"] for j in jobs if j["edge_worker"] == "worker-a" and j["try_number"] == 1} == set(DAG_IDS)

    stack.wait_for(first_tries_on_a, timeout=120, what="worker-a to take the first try of every task")
    # Drain A (it finishes, and fails, what it runs) and let B take the retries.
    stack.set_worker_maintenance("worker-a", True, comment="worker-a is broken")
    stack.set_worker_maintenance("worker-b", False)

    runs = {}
    for dag_id in DAG_IDS:
        run = stack.wait_for_run_of_type(dag_id, "scheduled", timeout=300)
        runs[dag_id] = run["dag_run_id"]
        task_id = TASKS[dag_id]
        logs = stack.task_logs(dag_id, run["dag_run_id"])
        assert _tries(stack, dag_id, run["dag_run_id"], task_id) == [
            (1, "worker-a", "failed"), (2, "worker-b", "success")], (dag_id, logs)
        first_try = (stack.root / "workers" / "worker-a" / "home" / "logs" / f"dag_id={dag_id}" /
                     f"run_id={run['dag_run_id']}" / f"task_id={task_id}" / "attempt=1.log")
        assert FIRST_TRY_DIED_OF[dag_id] in first_try.read_text(), (dag_id, logs)
        # The Edge executor's own record of which worker fetched which try (its job states are the
        # executor's view, which lags the task's: not compared).
        jobs = sorted((j["try_number"], j["edge_worker"]) for j in stack.edge_jobs(dag_id))
        assert jobs == [(1, "worker-a"), (2, "worker-b")], (dag_id, jobs)

    pg = stack.local.postgres
    # Singer: the target died after committing 10,000 records and their state; B started from that state.
    singer = _return_value(stack, "el_accounts", runs["el_accounts"], "replicate")
    assert singer["started_from"] == "stored state", (singer, stack.task_logs("el_accounts", runs["el_accounts"]))
    assert singer["records"] == {"public-accounts": ACCOUNTS - 10_000 + 1}, singer  # from the bookmark, inclusive
    with pg.connect(WAREHOUSE_DB) as conn:
        assert _one(conn, "SELECT count(*), count(DISTINCT id), min(id), max(id) FROM raw_accounts.accounts") == (
            ACCOUNTS, ACCOUNTS, 1, ACCOUNTS)

    # dbt: B ran `dbt retry` from the run results A left in the warehouse: only the errored model and the
    # one skipped after it (A had built account_ids).
    dbt = _return_value(stack, "transform_accounts", runs["transform_accounts"], "build.project")
    assert (dbt["command"], dbt["success"], dbt["status_counts"]) == ("retry", True, {"success": 2}), dbt
    with pg.connect(WAREHOUSE_DB) as conn:
        assert _one(conn, "SELECT count(*), sum(n) FROM public.account_tiers") == (7, DBT_IDS)
        assert _one(conn, "SELECT count(*) FROM osds_state.dbt_run_results") == (0,)

    # Reverse ETL: two acknowledged batches were recorded before A's task died (a third may have been on its
    # way: it is not recorded, so B sends it again, an upsert that changes nothing); B sent only the rest.
    retl = _return_value(stack, "sync_accounts", runs["sync_accounts"], "push")
    sent = TO_SYNC - 2 * RETL_BATCH
    assert (retl["created"], retl["updated"], retl["unchanged"], retl["rejected"], retl["batches"]) == (
        sent, 0, 2 * RETL_BATCH, 0, sent // RETL_BATCH), retl
    with pg.connect(DEST_DB) as conn:
        assert _one(conn, "SELECT count(*), count(DISTINCT id) FROM public.accounts") == (TO_SYNC, TO_SYNC)

    # Each worker used its own directories: both compiled the pipelines into their own cache.
    for name in ("worker-a", "worker-b"):
        cache = stack.root / "workers" / name / "cache"
        assert any(cache.rglob("*")), f"{name} wrote nothing to its OSDS_CACHE_DIR {cache}"
