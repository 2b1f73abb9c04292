"""One measured parse of one DAG file, or one module import, in a fresh process (standard library + Airflow only).

    parse_child.py once REQUEST_JSON     # a fresh interpreter: whole process, imports, peak RSS
    parse_child.py serve BASE_IMPORTS    # fork server: one forked child per request line on stdin

A request is ``{"kind": "parse", "file": …, "expected": …}`` (optional: ``env``,
``task_start: [dag_id, task_id]``, ``safe_mode``, ``preimport``, ``profile_out``,
``list_tasks``) or ``{"kind": "import", "module": …}``.

Airflow 3's DAG processor forks one child per DAG file from a manager that has imported
``airflow.sdk`` and, before forking, the ``airflow.*`` modules the file imports
(``_pre_import_airflow_modules``); a worker forks the task runner from its supervisor and
parses the one DAG file without that pre-import. The server is that parent: it imports
BASE_IMPORTS once, runs the pre-import a request asks for (in itself, so it accumulates as
the manager's does), then forks. ``once`` does the same in a fresh interpreter, the
pre-import included, timing the whole process too.

Every parse is checked against expected.json (writers.py): a benchmark of a broken parse
is worthless, so any difference is returned as ``error`` and stops the run.
"""

import sys

# This script lives in bench/, which Python puts first on sys.path; drop it so the
# benchmark's own modules can never shadow anything Airflow or the factories import.
sys.path.pop(0)

import gc  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

START_MONO = time.monotonic()
KINDS = {
    "sql": ({"airflow.providers.common.sql.operators.sql": "SQLExecuteQueryOperator",
             "airflow_osds.operators.sql": "WarehouseSqlOperator"}, (("conn_id", "warehouse"),), "sql"),
    "bash": ({"airflow.providers.standard.operators.bash": "BashOperator"}, (), "bash_command"),
}


def _vmrss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def preimport(path: str) -> float:
    """What ``airflow/dag_processing/processor.py:_pre_import_airflow_modules`` does; its duration."""
    from airflow.utils.file import iter_airflow_imports

    t0 = time.perf_counter()
    for module in iter_airflow_imports(path):
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001 — Airflow only logs a warning too
            pass
    return time.perf_counter() - t0


def parse(req: dict, *, spawned: bool) -> dict:
    from airflow.dag_processing.dagbag import DagBag

    result: dict = {"file": req["file"],
                    "osds_preloaded": sorted(m for m in sys.modules if m.startswith("airflow_osds"))}
    if spawned:
        result["import_s"] = time.monotonic() - START_MONO
        result["rss_after_import_kb"] = _vmrss_kb()
        result["preimport_s"] = preimport(req["file"]) if req.get("preimport") else 0.0
    profiler = None
    if req.get("profile_out"):
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    kwargs = {"safe_mode": req["safe_mode"]} if req.get("safe_mode") is not None else {}
    t0 = time.perf_counter()
    bag = DagBag(dag_folder=req["file"], **kwargs)
    result["build_s"] = time.perf_counter() - t0
    result["done_mono"] = time.monotonic()
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(req["profile_out"])
    if spawned:
        result["maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        result["delta_kb"] = result["maxrss_kb"] - result["rss_after_import_kb"]

    with open(req["expected"]) as f:
        expected = json.load(f)
    problems = verify(bag, expected, os.path.basename(req["file"]), req.get("task_start"))
    if problems:
        return {"error": f"{req['file']}: the DagBag does not hold the expected DAGs:\n  " + "\n  ".join(problems[:20])}
    result["dags"] = len(bag.dags)
    result["tasks"] = sum(len(d.task_dict) for d in bag.dags.values())
    result["task_groups"] = sum(len([g for g in d.task_group.get_task_group_dict() if g]) for d in bag.dags.values())
    if req.get("list_tasks"):
        result["task_ids"] = {dag_id: sorted(d.task_dict) for dag_id, d in bag.dags.items()}
    return result


def verify(bag, expected: dict, file_name: str, task_start: list | None) -> list[str]:
    """Every difference between the DagBag of ``file_name`` and expected.json (writers.py / dbt_inputs.py)."""
    problems = [f"import error in {path}: {err.strip().splitlines()[-1] if err.strip() else err}"
                for path, err in bag.import_errors.items()]
    allowed = set(expected["files"][file_name])
    # A worker's parse needs its DAG; a factory that ignores the parsing context builds the others too.
    required = {task_start[0]} if task_start else allowed
    got = set(bag.dags)
    if required - got:
        problems.append(f"{len(required - got)} DAG(s) missing, e.g. {sorted(required - got)[:3]}")
    if got - allowed:
        problems.append(f"unexpected DAG(s): {sorted(got - allowed)[:3]}")
    if task_start and task_start[0] in bag.dags and task_start[1] not in bag.dags[task_start[0]].task_dict:
        problems.append(f"{task_start[0]}: no task {task_start[1]!r} to run")
    for dag_id in sorted(got & allowed):
        problems += _verify_dag(bag.dags[dag_id], expected["dags"][dag_id])
    return problems


def _schedule_assets(dag) -> list | None:
    condition = getattr(dag.timetable, "asset_condition", None)
    if condition is None:
        return None
    names: set = set()
    stack = [condition]
    while stack:
        node = stack.pop()
        if hasattr(node, "objects"):
            stack.extend(node.objects)
        else:
            names.add(node.name)
    return sorted(names)


def _assets(objs) -> list:
    return sorted([getattr(o, "name", None), getattr(o, "uri", None), getattr(o, "group", None)] for o in objs)


def _verify_dag(dag, spec: dict) -> list[str]:
    if "task_count" in spec:  # dbt: the counts of each renderer
        n = len(dag.task_dict)
        return [] if n in spec["task_count"] else [f"{dag.dag_id}: {n} tasks, expected one of {spec['task_count']}"]
    problems = []
    if _schedule_assets(dag) != spec["schedule_assets"]:
        problems.append(f"{dag.dag_id}: scheduled on {_schedule_assets(dag)}, expected {spec['schedule_assets']}")
    if set(dag.task_dict) != set(spec["tasks"]):
        diff = sorted(set(dag.task_dict) ^ set(spec["tasks"]))[:5]
        return problems + [f"{dag.dag_id}: {len(dag.task_dict)} tasks, expected {len(spec['tasks'])} (differ: {diff})"]
    for task_id, t in spec["tasks"].items():
        task, where = dag.task_dict[task_id], f"{dag.dag_id}.{task_id}"
        classes, fixed, command_attr = KINDS[t["kind"]]
        if not any(isinstance(task, getattr(importlib.import_module(m), c)) for m, c in classes.items()):
            problems.append(f"{where}: {type(task).__name__} is not one of {sorted(classes.values())}")
        if getattr(task, command_attr, None) != t["command"] or any(getattr(task, k, None) != v for k, v in fixed):
            problems.append(f"{where}: {command_attr}={getattr(task, command_attr, None)!r}")
        for key in ("outlets", "inlets"):
            if _assets(getattr(task, key)) != t[key]:
                problems.append(f"{where}: {key} {_assets(getattr(task, key))}, expected {t[key]}")
        if sorted(task.upstream_task_ids) != t["upstream"]:
            problems.append(f"{where}: upstream {sorted(task.upstream_task_ids)}, expected {t['upstream']}")
    return problems


def _defines_pydantic_model(module) -> bool:
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and any(
        isinstance(v, type) and issubclass(v, pydantic.BaseModel) and v.__module__ == module.__name__
        for v in vars(module).values()
    )


def import_module(req: dict) -> dict:
    """Time ``import <module>`` and say what came with it."""
    before = set(sys.modules)
    t0 = time.perf_counter()
    importlib.import_module(req["module"])
    import_s = time.perf_counter() - t0
    osds = sorted(m for m in sys.modules if m.startswith("airflow_osds"))
    return {
        "import_s": import_s,
        "osds_modules": osds,
        "new_modules": len(set(sys.modules) - before),
        "pydantic_imported_here": "pydantic" in set(sys.modules) - before,
        "factory_imported": any(m == "airflow_osds.factory" or m.startswith("airflow_osds.factory.") for m in osds),
        "osds_pydantic_model_modules": [m for m in osds if _defines_pydantic_model(sys.modules[m])],
    }


def run(req: dict, *, spawned: bool) -> dict:
    os.environ.update(req.get("env") or {})
    if req.get("task_start"):
        os.environ["_AIRFLOW_PARSING_CONTEXT_DAG_ID"], os.environ["_AIRFLOW_PARSING_CONTEXT_TASK_ID"] = req["task_start"]
    try:
        return import_module(req) if req["kind"] == "import" else parse(req, spawned=spawned)
    except BaseException:  # noqa: BLE001 — reported to the parent, which stops the run
        return {"error": traceback.format_exc(limit=8)}


def serve(base_imports: list[str]) -> None:
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything printed (Airflow's logging) goes to the server's log, not the protocol
    for module in base_imports:
        importlib.import_module(module)
    # As the DAG-processor manager does before its parsing loop: "To prevent COW in forked process".
    gc.freeze()
    protocol.write("READY\n")
    for line in sys.stdin:
        req = json.loads(line)
        preimport_s = preimport(req["file"]) if req.get("preimport") else 0.0
        read_end, write_end = os.pipe()
        forked_mono = time.monotonic()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            data = json.dumps(run(req, spawned=False)).encode()
            with os.fdopen(write_end, "wb") as out:
                out.write(data)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as inp:
            data = inp.read()
        _, status = os.waitpid(pid, 0)
        result = json.loads(data) if data else {"error": f"forked child died (wait status {status}) without a result"}
        result["preimport_s"] = preimport_s
        if "done_mono" in result:
            result["whole_s"] = result["done_mono"] - forked_mono
        protocol.write(json.dumps(result) + "\n")


def main(argv: list[str]) -> int:
    if argv[0] == "serve":
        serve([m for m in argv[1].split(",") if m])
        return 0
    import airflow.sdk  # noqa: F401  (the cost before the measured build)
    from airflow.dag_processing.dagbag import DagBag  # noqa: F401

    result = run(json.loads(argv[1]), spawned=True)
    print("BENCH_RESULT " + json.dumps(result), flush=True)
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
