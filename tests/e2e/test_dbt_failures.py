"""dbt operators through Airflow's task runner: what fails at once, what is retried, what is kept, how dbt stops.

Real dbt-core/dbt-postgres on the embedded PostgreSQL (``warehouse``), run by ``dag.test()``
(``run_dag``), on a small project written by the test. The only stand-in is one fault
injection, said so where it happens.
"""

from __future__ import annotations

import contextlib
import json
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import DAGS_FOLDER
from tests.integration.dbt._venv import ensure_dbt_venv

MODELS = {
    "ok.sql": "select 1 as one\n",
    "broken.sql": "select 1 as one from no_such_table_xyz\n",
    # Fails while the var says so (the tests flip it with the try number).
    "flaky.sql": "{% if var('fail', false) %}select 1 as one from no_such_table_xyz{% else %}select 1 as one{% endif %}\n",
    "slow.sql": "select pg_sleep(60)::text as slept\n",
    "envs.sql": textwrap.dedent("""\
        select '{{ env_var("AIRFLOW__CORE__FERNET_KEY", "absent") }}' as fernet,
               '{{ env_var("AIRFLOW_CONN_WAREHOUSE", "absent") }}' as conn,
               '{{ env_var("OSDS_LISTED", "absent") }}' as listed,
               '{{ env_var("OSDS_UNLISTED", "absent") }}' as unlisted
    """),
}
# The running pg_sleep(60) of one dbt invocation, found by its connections' application_name.
SLEEP_QUERY = (
    "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND state = 'active' "
    "AND position('pg_sleep(60)' in query) > 0 AND pid <> pg_backend_pid()"
)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dbt-failures") / "probe"
    (root / "models").mkdir(parents=True)
    (root / "dbt_project.yml").write_text(textwrap.dedent("""\
        name: probe
        version: "1.0.0"
        config-version: 2
        profile: osds
        model-paths: ["models"]
        models:
          probe:
            +materialized: table
    """))
    for name, sql in MODELS.items():
        (root / "models" / name).write_text(sql)
    return root


@pytest.fixture
def dag_file() -> Iterator[Callable[[str, str], Any]]:
    """Write a DAG file (``dag.test()`` needs it in the DAG folder) and return its DAG."""
    written: list[Path] = []

    def write(dag_id: str, tasks: str) -> Any:
        from airflow.dag_processing.dagbag import DagBag

        path = DAGS_FOLDER / f"{dag_id}.py"
        path.write_text(
            "# airflow dag file written by the test\n"
            "import datetime as dt\n"
            "from airflow.sdk import DAG, Asset\n"
            "from airflow_osds.operators.dbt import DbtBuildOperator, DbtOperator, DbtRunOperator\n\n"
            f"with DAG({dag_id!r}, schedule=None):\n" + textwrap.indent(textwrap.dedent(tasks), "    ")
        )
        written.append(path)
        bag = DagBag(dag_folder=str(path))
        assert not bag.import_errors, bag.import_errors
        return bag.dags[dag_id]

    yield write
    for path in written:
        path.unlink(missing_ok=True)


def tries(dag_id: str) -> dict[str, int]:
    from sqlalchemy import select

    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.execute(select(TaskInstance.task_id, TaskInstance.try_number).where(TaskInstance.dag_id == dag_id))
        return {task_id: try_number for task_id, try_number in rows}


def state_rows(warehouse, dag_id: str) -> int:
    if not warehouse.scalar("SELECT to_regclass('osds_state.dbt_run_results') IS NOT NULL"):
        return 0
    return warehouse.scalar("SELECT count(*) FROM osds_state.dbt_run_results WHERE key LIKE %s", (f"{dag_id}/%",))


def test_configuration_errors_fail_at_once_without_burning_retries(
    warehouse, run_dag, dag_file, project: Path, tmp_path: Path, capfd, monkeypatch
) -> None:
    from sqlalchemy import select

    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    import shutil

    from airflow_osds.dbt.manifest_build import parse_project

    # A connection without a host: no profile can be built from it.
    monkeypatch.setenv("AIRFLOW_CONN_NO_HOST", json.dumps({"conn_type": "postgres", "login": "etl", "schema": "wh"}))
    # A project edited after `osds dbt-parse`: the DAG shows models dbt would no longer build.
    stale = tmp_path / "stale"
    shutil.copytree(project, stale, ignore=shutil.ignore_patterns("target", "logs"))
    parse_project(stale)
    (stale / "models" / "ok.sql").write_text("select 2 as two\n")
    dag = dag_file("dbt_config_errors", f"""\
        common = dict(project_dir={str(project)!r}, retries=2, retry_delay=dt.timedelta(seconds=0))
        DbtOperator(task_id="unknown_command", command="clean", **common)
        DbtBuildOperator(task_id="no_project", **{{**common, "project_dir": {str(tmp_path)!r}}})
        DbtBuildOperator(task_id="no_dbt", dbt_executable="/nonexistent/venv", **common)
        DbtBuildOperator(task_id="no_host", warehouse_conn_id="no_host", **common)
        DbtBuildOperator(task_id="secret_var", vars={{"api_token": "t0k"}}, **common)
        DbtBuildOperator(task_id="nothing_selected", select="no_such_model", outlets=[Asset("osds://warehouse/public/ok")], **common)
        DbtBuildOperator(task_id="stale_manifest", **{{**common, "project_dir": {str(stale)!r}}})
    """)
    result = run_dag(dag)
    assert set(result.task_states.values()) == {"failed"}, result.task_states
    assert tries("dbt_config_errors") == dict.fromkeys(result.task_states, 1), "no retry was burnt"
    log = "".join(capfd.readouterr())
    for message in (
        "Unsupported dbt command 'clean'",
        "is not a dbt project (no dbt_project.yml)",
        "dbt executable '/nonexistent/venv' not found",
        "dbt profile from connection 'no_host': dbt profile field 'host' is empty; set the connection's Host.",
        "'vars.api_token': this var looks like a secret",
        # Real dbt ran, selected nothing and succeeded; the task does not.
        "dbt build selected no nodes with `--select no_such_model`",
        f"the dbt manifest in {stale / 'target'} is older than the project's files",
    ):
        assert message in log, message
    assert "AirflowFailException" in log and "t0k" not in log
    with create_session() as session:
        announced = session.execute(select(AssetEvent.id).where(AssetEvent.source_dag_id == "dbt_config_errors")).first()
        assert announced is None, "no outlet announced a table nothing rebuilt"


def test_the_last_failed_try_keeps_no_state(warehouse, run_dag, dag_file, project: Path, capfd) -> None:
    dag = dag_file("dbt_last_try", f"""\
        DbtBuildOperator(task_id="build", project_dir={str(project)!r}, select="broken", retries=1,
                         retry_delay=dt.timedelta(seconds=0))
    """)
    result = run_dag(dag)
    assert result.task_states == {"build": "failed"} and tries("dbt_last_try") == {"build": 2}
    log = "".join(capfd.readouterr())
    # Try 1 kept its run_results.json and try 2 resumed from it; try 2 was the last: nothing stays.
    assert "Kept dbt's run_results.json: try 2 will resume with `dbt retry`" in log
    assert "Try 2: resuming the failed dbt build with `dbt retry`" in log
    assert "model.probe.broken (error)" in log
    assert state_rows(warehouse, "dbt_last_try") == 0


def test_without_retries_no_state_is_kept(warehouse, run_dag, dag_file, project: Path, capfd) -> None:
    dag = dag_file("dbt_no_retries", f"""\
        DbtBuildOperator(task_id="build", project_dir={str(project)!r}, select="broken")
    """)
    assert run_dag(dag).task_states == {"build": "failed"}
    assert "Kept dbt's run_results.json" not in "".join(capfd.readouterr())
    assert state_rows(warehouse, "dbt_no_retries") == 0


def test_a_failed_save_does_not_hide_the_dbt_failure(warehouse, run_dag, dag_file, project: Path, capfd, monkeypatch) -> None:
    import psycopg

    from airflow_osds.hooks.dbt import DbtHook

    def unreachable(self: DbtHook, key: Any, run_results: Any) -> None:
        raise psycopg.OperationalError("connection to server failed: the warehouse is unreachable")

    # Fault injection: the real warehouse cannot be made unreachable on demand in the instant
    # between dbt's failure and the save, so the hook's save method raises what psycopg would.
    monkeypatch.setattr(DbtHook, "save_run_results", unreachable)
    dag = dag_file("dbt_save_fails", f"""\
        DbtBuildOperator(task_id="build", project_dir={str(project)!r}, select="flaky", retries=1,
                         retry_delay=dt.timedelta(seconds=0),
                         vars='{{"fail": {{{{ "true" if ti.try_number == 1 else "false" }}}}}}')
    """)
    result = run_dag(dag)
    assert result.task_states == {"build": "success"} and tries("dbt_save_fails") == {"build": 2}
    log = "".join(capfd.readouterr())
    # The log shows both: the save failure (with its traceback) and dbt's failure, raised as the
    # task's exception with the save failure in its message.
    assert "keeping dbt's run_results.json for the next try failed as well" in log
    assert "psycopg.OperationalError: connection to server failed: the warehouse is unreachable" in log
    assert "DbtRunError: dbt build failed (exit code 1):" in log
    assert "model.probe.flaky (error): Database Error in model flaky" in log
    assert (
        "Also, keeping dbt's run_results.json for the next try failed (OperationalError: connection to server "
        "failed: the warehouse is unreachable); the next try reruns the whole dbt build."
    ) in log
    # Nothing was kept, so try 2 ran the whole command, not `dbt retry`.
    assert "resuming the failed dbt build" not in log


def test_a_dbt_subprocess_sees_only_the_allow_listed_environment(
    warehouse, run_dag, dag_file, project: Path, monkeypatch
) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", "fernet-key-of-the-worker")
    monkeypatch.setenv("OSDS_LISTED", "listed-value")
    monkeypatch.setenv("OSDS_UNLISTED", "unlisted-value")
    dag = dag_file("dbt_env", f"""\
        DbtRunOperator(task_id="run", project_dir={str(project)!r}, select="envs",
                       dbt_executable={str(ensure_dbt_venv())!r}, env_vars=["OSDS_LISTED"])
    """)
    assert run_dag(dag).task_states == {"run": "success"}
    assert warehouse.query("SELECT fernet, conn, listed, unlisted FROM public.envs") == [
        ("absent", "absent", "listed-value", "absent")
    ]


def dbt_processes() -> list[psutil.Process]:
    """This process's descendants running dbt (one that exits while being looked at is not)."""
    found = []
    for process in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "dbt" in " ".join(process.cmdline()):
                found.append(process)
    return found


@pytest.mark.parametrize("mode", ["subprocess", "in_process"])
def test_on_kill_stops_dbt_and_its_query(warehouse, run_dag, dag_file, project: Path, mode: str) -> None:
    executable = str(ensure_dbt_venv()) if mode == "subprocess" else None
    dag = dag_file(f"dbt_kill_{mode}", f"""\
        DbtRunOperator(task_id="slow", project_dir={str(project)!r}, select="slow", dbt_executable={executable!r})
    """)
    running: list[Any] = []
    # The operator Airflow executes is a copy of the DAG's: its on_execute_callback hands it over.
    dag.task_dict["slow"].on_execute_callback = [lambda context: running.append(context["task"])]
    seen: dict[str, Any] = {}

    def invocation_name() -> str | None:
        # The task handed over, its hook made (not by this thread) and its dbt invocation started.
        if not running or "hook" not in vars(running[0]) or running[0].hook.current_run is None:
            return None
        return running[0].hook.current_run.application_name

    def kill_when_sleeping() -> None:
        # Only this case's own query counts: a previous case's leftover must not trigger the kill.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            name = invocation_name()
            if name is not None and warehouse.query(SLEEP_QUERY, (name,)):
                break
            time.sleep(0.2)
        else:
            return
        seen["application_name"] = name
        seen["backends"] = [pid for (pid,) in warehouse.query(SLEEP_QUERY, (name,))]
        dbt = dbt_processes()
        seen["dbt_processes"] = [p.pid for p in dbt]
        started = time.monotonic()
        running[0].on_kill()  # from this thread, while the task's execute() runs on the main one
        seen["on_kill_s"] = time.monotonic() - started
        _, alive = psutil.wait_procs(dbt, timeout=5)
        seen["alive"] = [p.pid for p in alive]
        while warehouse.query(SLEEP_QUERY, (name,)) and time.monotonic() - started < 10:
            time.sleep(0.1)
        seen["backends_after"] = warehouse.query(SLEEP_QUERY, (name,))
        seen["gone_after_s"] = time.monotonic() - started

    killer = threading.Thread(target=kill_when_sleeping)
    killer.start()
    started = time.monotonic()
    result = run_dag(dag)
    killer.join(timeout=120)
    assert seen.get("backends"), f"this case's pg_sleep query never started: {seen}"
    assert seen["application_name"].startswith("osds-dbt-"), "dbt's connections carry the invocation's name"
    if mode == "subprocess":
        assert len(seen["dbt_processes"]) >= 1, "dbt and its children (multiprocessing's resource tracker)"
        assert seen["alive"] == [], "dbt's process group is gone"
    # Within the grace dbt gets after SIGINT (10 s, then SIGTERM): unloaded, dbt's own Ctrl-C path ends
    # it in ~2 s; on a loaded CI machine it may still run 3 s in, when its query is terminated for it,
    # and its exit then takes a few seconds more (5.04 s seen). A dbt ignoring SIGINT takes ≥ 10 s.
    assert seen["backends_after"] == [] and seen["gone_after_s"] < 10, seen
    assert seen["on_kill_s"] < 10, seen
    assert result.task_states == {"slow": "failed"}
    assert time.monotonic() - started < 45, "dbt did not wait for pg_sleep(60)"
