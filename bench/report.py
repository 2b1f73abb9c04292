"""RESULTS.md as a whole: the header (environment, method, every target from results.json) and the sections.

Each measured part is a section between ``<!-- section:NAME -->`` markers. A run writes the
sections it measured and keeps the others from the previous RESULTS.md, as results.json
keeps the ids a run did not produce; each section names the command, date and commit that
produced it.
"""

from __future__ import annotations

import re
from typing import Any

from unmet import reasons_for
from sections import targets_table

__all__ = ["SECTION_ORDER", "render"]

SECTION_ORDER = ("A", "B", "C", "D", "E", "dbt-runtime", "snowplow", "singer-target", "singer-pipe", "reverse-etl",
                 "superset", "imports", "profile")
_SECTION = re.compile(r"<!-- section:(?P<name>[\w-]+) -->\n(?P<body>.*?)<!-- /section:(?P=name) -->\n", re.S)

METHOD = [
    "**Parse loop** (the DAG processor's work for one variant): every DAG file of the variant parsed by "
    "`DagBag(dag_folder=<that file>)` in its own fresh process; the loop's time is the sum of the files' build "
    "times (`perf_counter` around the DagBag). Ours = `osds_pipeline_errors.py` (`report_pipeline_errors`) and "
    "`osds_pipelines.py` (`load_pipelines`); dag-factory = its one loader file; hand-written = one `.py` per DAG.",
    "Shapes A–D: each file's process is **forked** from a server that has imported `airflow.sdk` and "
    "`airflow.dag_processing.dagbag`, called `gc.freeze()`, and — before forking for a file — imported the "
    "`airflow.*` modules that file imports (`airflow.utils.file.iter_airflow_imports` + importlib, as "
    "`DagFileProcessorProcess.start` → `_pre_import_airflow_modules` does in the manager; the imports accumulate "
    "as in a long-lived manager). One server per variant, so no variant inherits another's imports. "
    "Shape E: each file in a fresh **spawned** interpreter (for `ru_maxrss`), the pre-import done in the child "
    "before the timed build.",
    "**Steady / cold** (ours): the compiled cache directory is `OSDS_CACHE_DIR`. Steady: filled once per shape "
    "(`osds compile <pipelines>` when `osds compile --help` exits 0, else one unmeasured parse loop), then reused. "
    "Cold: a fresh empty directory for every measured loop, files in Airflow's (alphabetical) order, and once more "
    "the other way round. dag-factory and hand-written files have no such cache; the warm-up loop writes every "
    "variant's .pyc files.",
    "**Task start**: the parse a worker does to run one task — a child forked from a server that imported "
    "`airflow.sdk` (no pre-import: `task_runner.parse` does none), `_AIRFLOW_PARSING_CONTEXT_DAG_ID`/`_TASK_ID` set, "
    "`DagBag(<the file defining the DAG>, safe_mode=False)`; ours with the steady cache.",
    "**Fresh interpreters** (A–D, one pass by default): the same loops with every file spawned in a new interpreter: "
    "**whole process** = spawn → DagBag loaded (interpreter start, `import airflow.sdk`, pre-import, build), "
    "summed over the files, and the build outside a fork (no copy-on-write page faults, no frozen GC).",
    "Every process has its own `AIRFLOW_HOME` (per variant) under `bench/.work/homes/`, "
    "`AIRFLOW__CORE__LOAD_EXAMPLES=False`, `AIRFLOW_CONN_WAREHOUSE`, no other `AIRFLOW*` variable from the caller, "
    "no metadata DB; `PYTHONDONTWRITEBYTECODE` removed. Series run round-robin in a rotating order after one "
    "unmeasured warm-up each; medians with (min–max).",
    "**Verified every parse**: no import errors; per DAG file exactly the expected DAG ids (a task start: its DAG "
    "present, others only if the file defines them); per DAG the schedule's Assets, every task id, its operator "
    "class (`SQLExecuteQueryOperator`; ours: `airflow_osds.operators.sql.WarehouseSqlOperator`), SQL or bash command, connection, "
    "outlet and inlet Assets `(name, uri, group)` and upstream task ids; shape E: the task count of each renderer. "
    "A mismatch stops the run.",
    "Same DAGs in every variant (bench/shapes.py → bench/writers.py): hand-written and dag-factory declare the same "
    "inlets ours adds for every table read. Not identical work: ours also writes a generated `doc_md`, "
    "dag-factory dumps its YAML into `doc_md` and parses with PyYAML's pure-Python `FullLoader`.",
]

RATIOS = [
    "`parse_loop.<shape>.<ours series>.vs_plain` / `.vs_dagfactory`: ratio = ours ÷ theirs (median parse loops); "
    "targets 1 (steady ≤ 1.15), 2 (cold ≤ 1.5), 3 (≤ 1.0).",
    "`parse_loop.<A|B>.<ours series>.steady.dagfactory_speedup`: ratio = dag-factory ÷ ours (the earlier issue, ≥ 3).",
    "`task_start.<shape>.ours.vs_<theirs>`: ratio = ours ÷ theirs (median builds); target 4 vs plain (≤ 1.5), "
    "≤ 1.0 vs the others (no target in the issue; reported).",
    "`parse_loop.E.<ours series>.cosmos_build_speedup` / `.cosmos_after_each_speedup`: ratio = Cosmos ÷ ours "
    "(target 5, ≥ 1.5; AFTER_EACH reported alongside).",
    "`peak_rss.E.<ours series>.vs_cosmos_build` / `.vs_cosmos_after_each`: ratio = ours ÷ Cosmos of the peak "
    "`ru_maxrss` over the variant's DAG-file processes (target 5, ≤ 1.0).",
    "`snowplow.load.<shape>.vs_bare_copy` / `.vs_sdk_transform`: ratio = our events/s ÷ theirs (median rounds; "
    "targets ≥ 0.5, ≥ 2); `snowplow.peak_rss.<large>_vs_<small>`: ratio = our peak RSS loading the larger file ÷ "
    "the smaller (≤ 1.1: memory independent of file size).",
    "`singer_target.ours.vs_<target>`: ratio = our records/s ÷ theirs (targets ≥ 10 meltanolabs, ≥ 4 "
    "pipelinewise); `singer_target.ours.records_per_s`: ours ÷ 100,000 (≥ 1).",
    "`singer_pipe.<shape>.operator_vs_bare_pipe`: ratio = the `SingerOperator` task's duration (its task instance's "
    "start → end in the metadata DB, run by `dag.test()`) ÷ the same tap and target in a bare `bash -c 'tap | "
    "target'` (median rounds; ≤ 1.05).",
    "`superset.warm_up.<n>_charts.c8_vs_serial`: ratio = the wall time of warming the n charts one by one ÷ "
    "8 at a time (`refresh.warm`, median rounds; ≥ 4).",
    "Ours series: `ours.steady`, `ours.cold` (errors file first), `ours.cold-reverse` (pipelines file first), "
    "`ours-derive.*` (A, B: reads/writes found in the SQL).",
]


def _sections(text: str) -> dict[str, str]:
    return {m["name"]: m["body"] for m in _SECTION.finditer(text)}


def _shape_rank(entry: dict[str, Any]) -> int:
    parts = entry["id"].split(".")
    return SECTION_ORDER.index(parts[1]) if len(parts) > 1 and parts[1] in SECTION_ORDER else len(SECTION_ORDER)


def render(*, environment: dict[str, str], entries: list[dict[str, Any]], new_sections: dict[str, str],
           previous: str) -> str:
    """The whole RESULTS.md: header from this run, every target, then the sections (new ones replace old)."""
    sections = {**_sections(previous), **new_sections}
    met = sum(e["met"] for e in entries)
    out = ["# Benchmarks: airflow-osds vs dag-factory, hand-written Python, Cosmos, a bare COPY and the Snowplow SDK", "",
           "Generated by `bench/run.py` (`make bench`; `make bench-dbt` for shape E only, `make bench-snowplow` for "
           "the Snowplow part, `make bench-singer` for the Singer parts, `make bench-retl` for reverse ETL, "
           "`make bench-superset` for Superset's warm-up); do not edit by hand. "
           "A run with `--shapes` replaces only its sections here and its ids in `bench/results.json`; "
           "each section names the command, date and commit that produced it.", "",
           "## Environment (latest run)", ""]
    out += [f"- {k}: {v}" for k, v in environment.items()]
    out += ["", "## Method", ""] + [f"- {n}" for n in METHOD]
    out += ["", "## Targets", "", f"{met} of {len(entries)} comparisons met (all of `bench/results.json`; "
            "each shape's section has the numbers behind them).", ""]
    out += targets_table(sorted(entries, key=_shape_rank), "measured", lambda e: e["date"][:16].replace("T", " "))
    unmet = reasons_for(entries)
    if unmet:
        out += ["", "Why the unmet targets are not met:", ""] + unmet
    out += ["", "Ratio definitions:", ""] + [f"- {r}" for r in RATIOS] + [""]
    for name in [*SECTION_ORDER, *sorted(set(sections) - set(SECTION_ORDER))]:
        if name in sections:
            out += [f"<!-- section:{name} -->", sections[name].rstrip("\n"), f"<!-- /section:{name} -->", ""]
    return "\n".join(out).rstrip() + "\n"
