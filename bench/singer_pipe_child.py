"""The Airflow side of bench/singer_pipe.py, in a fresh interpreter per call (project .venv).

Usage: singer_pipe_child.py setup CONFIG_JSON BARE_SCHEMAS_JSON | run CONFIG_JSON RUN_CONF_JSON

CONFIG_JSON: ``{"environ": <LocalStack.environ()>, "dag_file", "dag_id", "task_id", "warm_dag_file",
"warm_dag_id", "out"}``.
Airflow's environment is applied before Airflow is imported (``localrun.apply_environ``).

* ``setup``: migrate the metadata DB, parse the DAG file (no import errors; the task is the
  ``SingerOperator`` the singer block compiles), and write, per DAG id of BARE_SCHEMAS_JSON, the
  task's tap and target as its hook resolves them (executable and whole config; the target's
  ``default_target_schema`` replaced by the bare pipe's schema), and the environment the hook
  gives them (``plugin_environment()``): what the bare pipe runs with.
* ``run``: parse the DAG file (as a worker does before a task), run the no-op DAG of
  ``warm_dag_file`` (see ``run``), then ``localrun.run_dag`` (``dag.test()``, Airflow's task
  runner) with RUN_CONF_JSON; read the task instance's start and end from the metadata DB and its
  XCom return value, and write them with ``dag.test()``'s wall time.
"""

import sys

sys.path.pop(0)

import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402


def _parse(dag_file: str) -> dict[str, Any]:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=dag_file)
    if bag.import_errors:
        raise SystemExit(f"the bench DAG file does not parse: {bag.import_errors}")
    return bag.dags


def _dag(config: dict[str, Any]) -> Any:
    dag = _parse(config["dag_file"])[config["dag_id"]]
    operator = type(dag.task_dict[config["task_id"]])
    if f"{operator.__module__}.{operator.__name__}" != "airflow_osds.operators.singer.SingerOperator":
        raise SystemExit(f"{config['task_id']} is a {operator.__module__}.{operator.__name__}, not the SingerOperator")
    return dag


def setup(config: dict[str, Any], bare_schemas: dict[str, str]) -> dict[str, Any]:
    """The metadata DB migrated; per DAG its task's tap and target as the hook resolves them (the target's
    schema replaced by the bare pipe's), and the environment the hook gives them."""
    from airflow_osds.hooks.singer import plugin_environment
    from airflow_osds.localrun import migrate_metadata_db

    started = time.perf_counter()
    migrate_metadata_db()
    migrated = time.perf_counter() - started
    plugins = {}
    for dag_id, schema in bare_schemas.items():
        task = _dag({**config, "dag_id": dag_id}).task_dict[config["task_id"]]
        tap = task.hook.plugin(task.tap)
        target = task.hook.plugin(task.target, overrides={"default_target_schema": schema})
        plugins[dag_id] = {side: {"command": list(p.command), "config": dict(p.config)}
                           for side, p in (("tap", tap), ("target", target))}
    return {"migrate_s": migrated, "plugin_env": plugin_environment(), "plugins": plugins}


def run(config: dict[str, Any], run_conf: dict[str, Any]) -> dict[str, Any]:
    from sqlalchemy import select

    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    from airflow_osds.localrun import run_dag

    dag = _dag(config)
    # A production API server is up and warm before a task starts; dag.test()'s in-process one builds
    # its versioned routes on its first request, inside the first task's start → end (seconds here).
    # A no-op task run first (nothing of airflow_osds) leaves that out and our imports cold.
    warm = run_dag(_parse(config["warm_dag_file"])[config["warm_dag_id"]])
    if not warm.succeeded:
        raise SystemExit(f"the no-op warm-up DAG run failed: {warm}")
    result = run_dag(dag, run_conf=run_conf)
    with create_session() as session:
        ti = session.execute(select(TaskInstance).where(
            TaskInstance.dag_id == dag.dag_id, TaskInstance.run_id == result.run_id,
            TaskInstance.task_id == config["task_id"])).scalar_one()
        value = session.execute(select(XComModel.value).where(
            XComModel.dag_id == dag.dag_id, XComModel.run_id == result.run_id, XComModel.task_id == config["task_id"],
            XComModel.key == "return_value")).scalar_one_or_none()
        task = {"state": str(ti.state), "ti_s": (ti.end_date - ti.start_date).total_seconds(),
                "start": ti.start_date.isoformat(), "end": ti.end_date.isoformat()}
    return {"state": result.state, "task_states": result.task_states, "dag_test_s": result.duration_s,
            "warm_dag_test_s": warm.duration_s, **task,
            "returned": json.loads(value) if isinstance(value, str) else value}


def main() -> None:
    command, config_path, *rest = sys.argv[1:]
    config = json.loads(Path(config_path).read_text())
    from airflow_osds.localrun import apply_environ

    apply_environ(config["environ"])
    out = (setup if command == "setup" else run)(config, json.loads(rest[0]))
    Path(config["out"]).write_text(json.dumps(out))


if __name__ == "__main__":
    main()
