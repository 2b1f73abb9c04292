"""One measured dbt-rendering parse in a fresh interpreter (standard library + Airflow only).

Usage: dbt_child.py DAG_FOLDER EXPECTED_JSON

Like child.py, plus memory: ``rss_after_import_kb`` (VmRSS right after ``import airflow.sdk``
and the DagBag import) and ``maxrss_kb`` (``ru_maxrss`` at the end). Prints one line
``BENCH_RESULT {json}``; exits non-zero if the DagBag has import errors, not exactly one
DAG, or a task count outside the expected ones.
"""

import sys

sys.path.pop(0)  # never let bench/ shadow anything

import json  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402

START_MONO = time.monotonic()


def _vmrss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main(argv: list[str]) -> int:
    folder, expected_path = argv[0], argv[1]

    import airflow.sdk  # noqa: F401
    from airflow.dag_processing.dagbag import DagBag

    imported_mono = time.monotonic()
    rss_after_import = _vmrss_kb()
    t0 = time.perf_counter()
    bag = DagBag(dag_folder=folder)
    build_s = time.perf_counter() - t0
    done_mono = time.monotonic()

    with open(expected_path) as f:
        expected = json.load(f)
    problems = [f"import error in {path}: {err.strip().splitlines()[-1] if err.strip() else err}"
                for path, err in bag.import_errors.items()]
    dags = [d for d in bag.dags.values() if d.dag_id == expected["dag_id"]]
    if len(dags) != 1:
        problems.append(f"DAG {expected['dag_id']!r} not found; DAGs: {sorted(bag.dags)[:5]}")
    tasks = len(dags[0].task_dict) if dags else 0
    groups = len([g for g in dags[0].task_group.get_task_group_dict() if g]) if dags else 0
    if dags and tasks not in expected["tasks"]:
        problems.append(f"{tasks} tasks, expected one of {expected['tasks']}")
    if problems:
        print("DagBag is not the expected DAG:\n  " + "\n  ".join(problems[:20]), file=sys.stderr)
        return 1
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    result = {
        "build_s": build_s,
        "done_mono": done_mono,
        "import_s": imported_mono - START_MONO,
        "rss_after_import_kb": rss_after_import,
        "maxrss_kb": maxrss,
        "delta_kb": maxrss - rss_after_import,
        "dags": len(bag.dags),
        "tasks": tasks,
        "task_groups": groups,
    }
    print("BENCH_RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
