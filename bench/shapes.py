"""The benchmark's DAGs as data: shapes A–D, each a list of DAGs made of steps, and what Airflow must hold.

One description per DAG, written three ways by writers.py (airflow-osds YAML, dag-factory
YAML, hand-written Python), so every variant declares the same tasks, edges and Assets.
Deterministic, standard library only.

- A: 100 DAGs × 11 SQL tasks in a chain (each reads the table the previous one writes);
- B: 1 DAG × 1,000 such SQL tasks;
- C: 50 operator DAGs (BashOperator): a start task, a fan-out, a task group, a fan-in and
  two more tasks; DAG 0 has exactly 20 tasks (the task-start DAG), DAG 2 is scheduled on
  the table DAG 1 writes;
- D: 1 DAG × 1,000 BashOperator tasks in a chain.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["CONN_ID", "Dag", "SHAPES", "Shape", "Step", "asset_of", "expected_dags", "flat_tasks"]

CONN_ID = "warehouse"


@dataclass(frozen=True)
class Step:
    id: str  # unique within its DAG; inside a group the task id is "<group>.<id>"
    kind: str  # "sql" | "bash" | "group"
    command: str = ""  # the SQL or the bash command
    after: tuple[str, ...] = ()  # steps or groups of the same level that run first
    reads: tuple[str, ...] = ()  # schema.table
    writes: tuple[str, ...] = ()
    steps: tuple[Step, ...] = ()  # a group's steps


@dataclass(frozen=True)
class Dag:
    dag_id: str
    steps: tuple[Step, ...]
    schedule_on: tuple[str, ...] = ()  # tables written by other DAGs; empty: "@daily"


@dataclass(frozen=True)
class Shape:
    name: str
    description: str
    make: Callable[[], list[Dag]]
    task_start: tuple[str, str] | None = None  # (dag id, task id) a worker parses for
    has_sql: bool = False  # a variant of ours with reads/writes derived from the SQL applies


def asset_of(table: str) -> tuple[str, str, str]:
    """(name, uri, group) of a table's Asset, as airflow_osds.assets names it."""
    return f"{CONN_ID}.{table}", f"osds://{CONN_ID}/{table.replace('.', '/')}", "table"


def _sql_chain(dag_id: str, prefix: str, n: int) -> Dag:
    steps = []
    for i in range(n):
        table, prev = f"bench.{prefix}t_{i}", f"bench.{prefix}t_{i - 1}" if i else None
        sql = f"INSERT INTO {table} SELECT * FROM {prev}" if prev else f"INSERT INTO {table} SELECT 1"
        steps.append(Step(f"t_{i}", "sql", sql, after=(f"t_{i - 1}",) if i else (),
                          reads=(prev,) if prev else (), writes=(table,)))
    return Dag(dag_id, tuple(steps))


def _bash(dag_id: str, step_id: str, **kw: object) -> Step:
    return Step(step_id, "bash", f"echo {dag_id}.{step_id}", **kw)  # type: ignore[arg-type]


def _operator_dag(k: int, fan_out: int, group_size: int, reads: tuple[str, ...] = ()) -> Dag:
    dag_id = f"bench_c_{k:03d}"
    extracts = tuple(_bash(dag_id, f"extract_{i}", after=("start",)) for i in range(fan_out))
    group = Step("transform", "group", after=tuple(s.id for s in extracts), steps=(
        _bash(dag_id, "g_0"), *(_bash(dag_id, f"g_{i}", after=("g_0",)) for i in range(1, group_size))))
    steps = (
        _bash(dag_id, "start", reads=reads),
        *extracts,
        group,
        _bash(dag_id, "publish", after=("transform",), writes=(f"bench.c_{k:03d}_out",)),
        _bash(dag_id, "notify", after=("publish",)),
    )
    return Dag(dag_id, steps, schedule_on=reads)


def _shape_c() -> list[Dag]:
    dags = [_operator_dag(0, 10, 7)]  # 1 + 10 + 7 + 2 = 20 tasks: the task-start DAG
    for k in range(1, 50):
        reads = ("bench.c_001_out",) if k == 2 else ()  # data-scheduled on what DAG 1 publishes
        dags.append(_operator_dag(k, 2 + k % 5, 3 + k % 3, reads))
    return dags


def _shape_d() -> list[Dag]:
    dag_id = "bench_d_000"
    return [Dag(dag_id, tuple(_bash(dag_id, f"t_{i}", after=(f"t_{i - 1}",) if i else ()) for i in range(1000)))]


SHAPES: dict[str, Shape] = {
    "A": Shape("A", "100 files × 1 DAG × 11 SQL tasks",
               lambda: [_sql_chain(f"bench_a_{k:03d}", f"a{k:03d}_", 11) for k in range(100)],
               task_start=("bench_a_000", "t_5"), has_sql=True),
    "B": Shape("B", "1 file × 1 DAG × 1,000 SQL tasks", lambda: [_sql_chain("bench_b_000", "", 1000)], has_sql=True),
    "C": Shape("C", "50 files × 1 operator DAG (fan-out, task group, fan-in; 8–20 tasks, one data-scheduled)",
               _shape_c, task_start=("bench_c_000", "transform.g_3")),
    "D": Shape("D", "1 file × 1 DAG × 1,000 BashOperator tasks", _shape_d),
}


# --- what the DagBag must hold --------------------------------------------------------


def _edge_ends(step: Step, prefix: str, want: str) -> list[str]:
    """Task ids an edge to (``roots``) or from (``leaves``) ``step`` attaches to, as Airflow's TaskGroup does."""
    if step.kind != "group":
        return [prefix + step.id]
    if want == "roots":
        ends = [s for s in step.steps if not s.after]
    else:
        used = {a for s in step.steps for a in s.after}
        ends = [s for s in step.steps if s.id not in used]
    return [t for s in ends for t in _edge_ends(s, f"{prefix}{step.id}.", want)]


def flat_tasks(dag: Dag) -> list[tuple[Step, str, list[str]]]:
    """Every task of ``dag`` as (step, task id, upstream task ids), groups flattened."""
    out: list[tuple[Step, str, list[str]]] = []
    upstream: dict[str, set[str]] = {}

    def walk(steps: tuple[Step, ...], prefix: str) -> None:
        by_id = {s.id: s for s in steps}
        for s in steps:
            for up in s.after:
                for down_id in _edge_ends(s, prefix, "roots"):
                    upstream.setdefault(down_id, set()).update(_edge_ends(by_id[up], prefix, "leaves"))
            if s.kind == "group":
                walk(s.steps, f"{prefix}{s.id}.")
            else:
                out.append((s, prefix + s.id, []))

    walk(dag.steps, "")
    return [(s, tid, sorted(upstream.get(tid, ()))) for s, tid, _ in out]


def expected_dags(dags: list[Dag]) -> dict[str, dict[str, object]]:
    """DAG id → the schedule's Asset names and, per task id, its operator, command, edges and Assets."""
    return {
        dag.dag_id: {
            "schedule_assets": sorted(asset_of(t)[0] for t in dag.schedule_on) or None,
            "tasks": {
                task_id: {"kind": step.kind, "command": step.command, "upstream": upstream,
                          "outlets": sorted(asset_of(t) for t in step.writes),
                          "inlets": sorted(asset_of(t) for t in step.reads)}
                for step, task_id, upstream in flat_tasks(dag)
            },
        }
        for dag in dags
    }
