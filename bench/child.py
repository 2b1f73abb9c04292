"""One measured parse, run in a fresh interpreter of the variant's venv (standard library + Airflow only).

Usage: child.py DAG_FOLDER EXPECTED_JSON [--profile OUT.prof]

Prints one line ``BENCH_RESULT {json}`` on stdout: the DagBag build time and the
CLOCK_MONOTONIC reading when the DagBag was loaded (the parent took one just before it
started this process; on Linux that clock is shared by all processes, so the difference
is the whole-process time). Exits non-zero, saying why, if the DagBag is not exactly the
expected DAGs: a benchmark of a broken parse is worthless.
"""

import sys

# This script lives in bench/, which Python puts first on sys.path; drop it so the
# benchmark's own modules can never shadow anything Airflow or the factories import.
sys.path.pop(0)

import json  # noqa: E402
import time  # noqa: E402

START_MONO = time.monotonic()


def main(argv: list[str]) -> int:
    folder, expected_path = argv[0], argv[1]
    profile_out = argv[argv.index("--profile") + 1] if "--profile" in argv else None

    import airflow.sdk  # noqa: F401  (the cost before the measured build)
    from airflow.dag_processing.dagbag import DagBag

    imported_mono = time.monotonic()
    profiler = None
    if profile_out:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    t0 = time.perf_counter()
    bag = DagBag(dag_folder=folder)
    build_s = time.perf_counter() - t0
    done_mono = time.monotonic()
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile_out)

    with open(expected_path) as f:
        expected = json.load(f)
    problems = verify(bag, expected)
    if problems:
        print("DagBag does not hold the expected DAGs:\n  " + "\n  ".join(problems[:20]), file=sys.stderr)
        return 1
    result = {
        "build_s": build_s,
        "done_mono": done_mono,
        "in_process_s": done_mono - START_MONO,
        "import_s": imported_mono - START_MONO,
        "dags": len(bag.dags),
        "tasks": sum(len(d.task_dict) for d in bag.dags.values()),
    }
    print("BENCH_RESULT " + json.dumps(result), flush=True)
    return 0


def verify(bag, expected: dict) -> list[str]:
    """Every difference between the DagBag and ``expected`` (generate.py's expected.json)."""
    from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator

    problems = [f"import error in {path}: {err.strip().splitlines()[-1] if err.strip() else err}"
                for path, err in bag.import_errors.items()]
    missing = sorted(set(expected) - set(bag.dags))
    extra = sorted(set(bag.dags) - set(expected))
    if missing:
        problems.append(f"{len(missing)} DAG(s) missing, e.g. {missing[:3]}")
    if extra:
        problems.append(f"unexpected DAG(s): {extra[:3]}")
    for dag_id, tasks in expected.items():
        dag = bag.dags.get(dag_id)
        if dag is None:
            continue
        if set(dag.task_dict) != {t["task_id"] for t in tasks}:
            problems.append(f"{dag_id}: {len(dag.task_dict)} tasks, expected {len(tasks)}")
            continue
        for t in tasks:
            task = dag.task_dict[t["task_id"]]
            where = f"{dag_id}.{t['task_id']}"
            if not isinstance(task, SQLExecuteQueryOperator):
                problems.append(f"{where}: {type(task).__name__} is not a SQLExecuteQueryOperator")
            if task.conn_id != "warehouse" or task.sql != t["sql"]:
                problems.append(f"{where}: conn_id={task.conn_id!r} sql={task.sql!r}")
            outlets = [(getattr(o, "name", None), getattr(o, "uri", None), getattr(o, "group", None)) for o in task.outlets]
            if outlets != [(t["asset_name"], t["asset_uri"], "table")]:
                problems.append(f"{where}: outlets {outlets}")
            upstream = {t["upstream"]} if t["upstream"] else set()
            if set(task.upstream_task_ids) != upstream:
                problems.append(f"{where}: upstream {sorted(task.upstream_task_ids)}, expected {sorted(upstream)}")
    return problems


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
