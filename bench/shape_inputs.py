"""Each shape's inputs and variants, ready for measure.measure_shape: A–D (writers.py) and E (dbt, ours vs Cosmos)."""

from __future__ import annotations

from pathlib import Path

from dbt_inputs import COSMOS_BEHAVIORS, DAG_ID, write_dbt_inputs
from dbt_project import DbtProject
from envs import WORK
from measure import ShapeInputs, Variant
from shapes import Shape
from writers import write_inputs

__all__ = ["COSMOS_ENV", "dbt_shape_inputs", "shape_inputs"]

# Cosmos's PostgresUserPasswordProfileMapping wants login and password on the connection.
_DBT_WAREHOUSE_CONN = '{"conn_type":"postgres","host":"localhost","login":"x","password":"x","schema":"x","port":5432}'
COSMOS_ENV = {
    "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
    "AIRFLOW__COSMOS__ENABLE_CACHE": "False",
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    "AIRFLOW_CONN_WAREHOUSE": _DBT_WAREHOUSE_CONN,
}


def shape_inputs(shape: Shape, osds_python: Path, df_python: Path, *, derive: bool, whole_reps: int) -> ShapeInputs:
    """Shapes A–D: ours (and ours with reads/writes derived from SQL), dag-factory, hand-written (+ control).

    Ours and the hand-written files run in the deployment venv (envs.DEPLOYMENT_VENV), dag-factory in its own.
    """
    folders = write_inputs(WORK / "inputs", shape, derive=derive)
    ours = "ours: airflow-osds YAML" + (" (explicit reads/writes)" if shape.has_sql else "")
    variants = [Variant("ours", "ours", osds_python, ours, cached=True)]
    if "ours-derive" in folders:
        # The YAML users write: no reads/writes, the factory finds them in the SQL.
        variants.append(Variant("ours-derive", "ours-derive", osds_python,
                                "ours: airflow-osds YAML (reads/writes derived from SQL)", cached=True))
    variants += [
        Variant("dagfactory", "dagfactory", df_python, "dag-factory 1.1.0 YAML"),
        Variant("plain", "plain", osds_python, "hand-written Python"),
        # Control: the same Python files in the dag-factory venv (same pinned Airflow, other extra packages).
        Variant("plain-dfvenv", "plain", df_python, "hand-written Python (control: dag-factory venv)",
                control=True),
    ]
    return ShapeInputs(name=shape.name, folders=folders, variants=variants, task_start=shape.task_start,
                       task_start_variants=("ours", "plain", "dagfactory") if shape.task_start else (),
                       whole_reps=whole_reps)


def dbt_shape_inputs(project: DbtProject, osds_python: Path, cosmos_python: Path) -> ShapeInputs:
    """Shape E: the generated dbt project rendered by ours and by Cosmos (BUILD, AFTER_EACH), in fresh interpreters."""
    folders = write_dbt_inputs(WORK / "dbt" / "inputs", project)
    variants = [Variant("ours", "ours", osds_python, "ours: airflow-osds `dbt` block, `granularity: model`",
                        cached=True)]
    variants += [Variant(name, name, cosmos_python,
                         f"Cosmos 1.15.1 `DbtDag`, `LoadMode.DBT_MANIFEST`, `TestBehavior.{behavior}`")
                 for name, behavior in COSMOS_BEHAVIORS.items()]
    last_model = Path(project.model_files[-1]).stem  # a mart model: the task a worker starts
    return ShapeInputs(name="E", folders=folders, variants=variants, task_start=(DAG_ID, last_model),
                       task_start_variants=("ours", "cosmos-build"), env_extra=COSMOS_ENV, spawn_loops=True)
