"""Benchmarks: airflow-osds YAML vs dag-factory 1.1.0 vs hand-written Python, dbt vs Cosmos 1.15, the Snowplow
loader vs a bare COPY and the Snowplow SDK, the Singer target and operator vs other targets and a bare pipe.

    make bench                                      # everything (= .venv/bin/python bench/run.py)
    make bench-dbt                                  # shape E only (= bench/run.py --shapes E)
    make bench-snowplow                             # the Snowplow part only (= bench/run.py --snowplow-only)
    make bench-singer                               # the Singer parts only (= bench/run.py --singer-only)
    make bench-retl                                 # the reverse-ETL part only (= bench/run.py --retl-only)
    make bench-superset                             # the Superset warm-up part only (= bench/run.py --superset-only)
    .venv/bin/python bench/run.py --reps 1 --shapes C --no-dbt-runtime --import-reps 0

Generates the inputs into bench/.work/, measures Airflow's production path for each shape
(a parse loop per variant: every DAG file in its own fresh process; steady and cold
compiled cache for ours; a worker's task-start parse; a fresh-interpreter pass for the
whole-process time), verifies every parse, times the import of each operator module, and
writes bench/RESULTS.md and bench/results.json (replacing only what this run measured).
Standard library only; the dag-factory and Cosmos venvs are created on first use.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from dbt_envs import COSMOS_VENV, ensure_cosmos_venv
from dbt_project import ensure_project
from dbt_runtime import measure_runtime
from dbt_runtime import summarize as summarize_runtime
from envs import (DAGFACTORY_VENV, DEPLOYMENT_VENV, PROJECT_PYTHON, REPO, WORK, ChildFailed, ensure_dagfactory_venv,
                  ensure_deployment_venv, package_versions)
from import_times import measure_imports
from measure import ShapeResult, measure_shape, osds_compile_available
from profiling import summarize
from report import render
from sections import imports_section, profile_section, runtime_lines, shape_section
from shape_inputs import dbt_shape_inputs, shape_inputs
from shapes import SHAPES
from reverse_etl import measure_reverse_etl, reverse_etl_entries, reverse_etl_section
from superset import measure_superset, superset_entries, superset_section
from singer_pipe import measure_singer_pipe, singer_pipe_entries, singer_pipe_section
from singer_target import measure_singer_targets, singer_entries, singer_section
from snowplow_load import measure_snowplow, snowplow_entries, snowplow_section
from targets import comparisons, entries, merge_results, runtime_entries

ALL_SHAPES = ("A", "B", "C", "D", "E")
E_TITLE = "Shape E: dbt, a generated 2,000-model project — ours vs Cosmos 1.15 (`LoadMode.DBT_MANIFEST`)"


def _log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _command(argv: list[str]) -> str:
    if os.environ.get("MAKELEVEL"):
        if not argv:
            return "make bench"
        if argv == ["--shapes", "E"]:
            return "make bench-dbt"
        if argv == ["--snowplow-only"]:
            return "make bench-snowplow"
        if argv == ["--singer-only"]:
            return "make bench-singer"
        if argv == ["--retl-only"]:
            return "make bench-retl"
        if argv == ["--superset-only"]:
            return "make bench-superset"
    return ".venv/bin/python bench/run.py " + " ".join(argv)


class _Run:
    """What every section and results.json entry of this run records about it."""

    def __init__(self, args: argparse.Namespace, argv: list[str]) -> None:
        self.args = args
        self.command = _command(argv).strip()
        self.date = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        head = _git("rev-parse", "HEAD")
        self.dirty = bool(_git("status", "--porcelain", "--", "airflow_osds"))
        self.commit = head + ("+dirty" if self.dirty else "")
        self.short = (head[:7] or "unknown commit") + (" (working tree had uncommitted changes in airflow_osds/)"
                                                      if self.dirty else "")
        self.entries: list[dict[str, Any]] = []
        self.sections: dict[str, str] = {}

    def meta(self, reps: str) -> dict[str, str]:
        return {"Command": f"`{self.command}`", "Date": self.date.replace("T", " "), "airflow-osds at": self.short,
                "Repetitions": reps}

    def add_shape(self, name: str, title: str, inputs: Any, result: ShapeResult, *, intro: list[str] = (),
                  extra: list[str] = ()) -> None:
        new = entries(name, result, command=self.command, date=self.date, commit=self.commit)
        sources = {c.id: c.source for c in comparisons(name, result)}
        self.entries += new
        reps = (f"{self.args.reps} measured loops per series (round-robin, after one warm-up), medians; "
                f"fresh-interpreter pass: {inputs.whole_reps if not inputs.spawn_loops else 'the loops themselves'}")
        self.sections[name] = shape_section(title, self.meta(reps), inputs, result, new, sources, intro=intro,
                                            extra=extra)


def _environment(started: float, *, run_superset: bool = False) -> dict[str, str]:
    packages = ("apache-airflow", "apache-airflow-task-sdk", "apache-airflow-providers-common-sql",
                "apache-airflow-providers-standard", "dag-factory", "astronomer-cosmos", "airflow-osds", "dbt-core",
                "PyYAML", "pydantic", "apache-superset", "gunicorn", "SQLAlchemy")
    venvs = {"project .venv": PROJECT_PYTHON, "deployment venv (ours, hand-written)": DEPLOYMENT_VENV / "bin" / "python",
             "dag-factory venv": DAGFACTORY_VENV / "bin" / "python",
             "Cosmos venv": COSMOS_VENV / "bin" / "python"}
    if run_superset:
        from airflow_osds.superset.local import VENV_NAME
        from airflow_osds.venvs import cache_dir

        venvs["Superset venv"] = cache_dir() / VENV_NAME / "bin" / "python"
    out = {"Machine": f"nproc {len(os.sched_getaffinity(0))}, {_cpu_model()}, {platform.system()} {platform.release()}"}
    for label, python in venvs.items():
        if python.exists():
            v = package_versions(python, packages)
            out[label] = f"Python {v['python']}, " + ", ".join(f"{p} {v[p]}" for p in packages if v[p] != "-")
    out["Run time"] = f"{(time.monotonic() - started) / 60:.1f} min for the whole command"
    return out


def _measure_operator_shapes(run: _Run, names: list[str], homes: Path) -> None:
    if not names:
        return  # e.g. --singer-only: no dag-factory venv to build
    args = run.args
    osds_python, df_python = ensure_deployment_venv(), ensure_dagfactory_venv()
    profile_shape = next((n for n in ("B", "D") if n in names), None) if args.profile else None
    for name in names:
        inputs = shape_inputs(SHAPES[name], osds_python, df_python, derive=args.derive, whole_reps=args.whole_reps)
        prof_dir = WORK / "profiles" if name == profile_shape else None
        result = measure_shape(inputs, args.reps, homes, profile=prof_dir)
        run.add_shape(name, f"Shape {name}: {SHAPES[name].description}", inputs, result)
        if result.profiles:
            loop_ms = {k: statistics.median(lp["build_s"] for lp in result.loops[series]) * 1000
                       for k, series in (("ours", "ours/steady"), ("ours-cold", "ours/cold"), ("plain", "plain"))}
            run.sections["profile"] = profile_section(
                run.meta("one profiled loop each"), name,
                {k: summarize(paths) for k, paths in result.profiles.items()}, loop_ms)


def _measure_dbt(run: _Run, homes: Path) -> None:
    cosmos_python = ensure_cosmos_venv()
    _log("shape E: generating the dbt project / dbt parse (cached while unchanged)")
    project = ensure_project(WORK / "dbt" / "project")
    inputs = dbt_shape_inputs(project, ensure_deployment_venv(), cosmos_python)
    result = measure_shape(inputs, run.args.reps, homes)
    about = [f"Project (bench/dbt_project.py, `bench/.work/dbt/project/`): {project.models:,} models (20 % staging "
             f"reading {project.seeds} seeds, 40 % intermediate, 40 % marts, 2–3 parents each), {project.tests:,} "
             "schema tests, materialized as tables; `target/manifest.json` from a real `dbt parse`"
             + (f" ({project.parse_s:.0f} s this run)" if project.parse_s else " (cached: generator unchanged)")
             + ", with the fingerprint file airflow-osds checks written by `airflow_osds.dbt.fingerprint`. Ours: one "
             "step `dbt: {project: <abs path>, granularity: model}` (a `dbt build` task per model with its tests, one "
             "per seed); Cosmos: `DbtDag` from the manifest, `ExecutionConfig(dbt_project_path=…)` (1.15.1 refuses "
             "the DAG without it), `TestBehavior.BUILD` (one `dbt build` task per node, the same work per task as "
             "ours) and `AFTER_EACH` (a run + test pair per tested model). Same environment for all "
             "(`AIRFLOW__COSMOS__ENABLE_CACHE=False`, telemetry off).", ""]
    run.add_shape("E", E_TITLE, inputs, result, intro=about)


def _measure_dbt_runtime(run: _Run) -> None:
    """Shape E's runtime part, its own section: per-model tasks vs one dbt build, ours and Cosmos."""
    args = run.args
    runtime, summaries, rows, error = None, {}, [], None
    try:
        runtime = measure_runtime(args.dbt_runtime_reps, args.dbt_runtime_large_reps, args.dbt_runtime_models)
    except ChildFailed as exc:
        error = " / ".join(str(exc).splitlines()[-3:])[:400]
        _log(f"dbt runtime part failed: {error}")
    for label, result in (runtime or {}).items():
        summaries[label] = summarize_runtime(result)
        rows += runtime_entries(label, summaries[label], command=run.command, date=run.date, commit=run.commit)
    run.entries += [e for e, _ in rows]
    reps = f"{args.dbt_runtime_reps} round(s) on the demo, {args.dbt_runtime_large_reps} on the generated project"
    run.sections["dbt-runtime"] = runtime_lines(run.meta(reps), runtime, summaries, rows, error)


def _measure_part(run: _Run, section: str, reps: int, measure: Any, to_entries: Any, render_section: Any) -> None:
    """A part with its own section and ids (Snowplow, Singer): measured, its entries made, its section rendered.

    A part that fails records why in its section instead of stopping the run.
    """
    result, rows, error = None, [], None
    try:
        result = measure()
        rows = to_entries(result, command=run.command, date=run.date, commit=run.commit)
    except ChildFailed as exc:
        error = " / ".join(str(exc).splitlines()[-3:])[:400]
        _log(f"{section} part failed: {error}")
    run.entries += [e for e, _ in rows]
    run.sections[section] = render_section(run.meta(f"{reps} round(s)"), result, rows, error)


def _measure_snowplow(run: _Run) -> None:
    """The Snowplow loader: full load vs bare COPY and the SDK transform, peak RSS by file size."""
    a = run.args
    _measure_part(run, "snowplow", a.snowplow_reps,
                  lambda: measure_snowplow(a.snowplow_reps, a.snowplow_lines, a.snowplow_rss_lines),
                  snowplow_entries, snowplow_section)


def _measure_singer(run: _Run) -> None:
    """Our Singer target against meltanolabs-target-postgres and pipelinewise-target-postgres."""
    a = run.args
    _measure_part(run, "singer-target", a.singer_reps, lambda: measure_singer_targets(a.singer_reps, a.singer_records),
                  singer_entries, singer_section)


def _measure_singer_pipe(run: _Run) -> None:
    """The SingerOperator in Airflow's task runner against the same tap and target in a bare shell pipe."""
    a = run.args
    _measure_part(run, "singer-pipe", a.singer_pipe_reps,
                  lambda: measure_singer_pipe(a.singer_pipe_reps, a.singer_pipe_records),
                  singer_pipe_entries, singer_pipe_section)


def _measure_reverse_etl(run: _Run) -> None:
    """A 1%-changed sync of a large source vs a full send to the same local HTTP sink; peak RSS by source size."""
    a = run.args
    _measure_part(run, "reverse-etl", a.retl_reps, lambda: measure_reverse_etl(a.retl_reps, a.retl_rows, a.retl_rss_rows),
                  reverse_etl_entries, reverse_etl_section)


def _measure_superset(run: _Run) -> None:
    """40 charts warmed at concurrency 8 vs one by one on a real Superset (gunicorn) over a 200 ms warehouse."""
    a = run.args
    _measure_part(run, "superset", a.superset_reps,
                  lambda: measure_superset(a.superset_reps, a.superset_charts, a.superset_charts_large,
                                           a.superset_views, a.superset_workers, a.superset_threads,
                                           a.superset_dev_reps),
                  superset_entries, superset_section)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=5, help="measured loops per series and shape (default 5)")
    p.add_argument("--shapes", default=",".join(ALL_SHAPES),
                   help="comma-separated: A (100×11 SQL), B (1×1,000 SQL), C (50 operator DAGs), D (1×1,000 operators), "
                        "E (dbt, 2,000 models, vs Cosmos); default all")
    p.add_argument("--no-dbt", action="store_true", help="leave out shape E (dbt vs Cosmos, the slowest part)")
    p.add_argument("--no-derive", dest="derive", action="store_false",
                   help="skip the variant of ours whose reads/writes are derived from the SQL (A, B)")
    p.add_argument("--whole-reps", type=int, default=1,
                   help="fresh-interpreter loops per series for the whole-process time (A–D; default 1)")
    p.add_argument("--import-reps", type=int, default=5, help="imports timed per operator module (default 5; 0 skips)")
    p.add_argument("--dbt-runtime-reps", type=int, default=3,
                   help="rounds of shape E's dbt runtime part on the demo project (default 3; 0 skips)")
    p.add_argument("--dbt-runtime-large-reps", type=int, default=1,
                   help="rounds of the runtime part on the generated project (default 1; 0 skips)")
    p.add_argument("--dbt-runtime-only", action="store_true",
                   help="measure only the dbt runtime part (its section and ids), nothing else")
    p.add_argument("--dbt-runtime-models", type=int, default=200,
                   help="models of the runtime part's generated project (default 200)")
    p.add_argument("--snowplow-reps", type=int, default=3,
                   help="rounds of the Snowplow part (bare COPY and our load, alternating; default 3; 0 skips)")
    p.add_argument("--snowplow-only", action="store_true", help="measure only the Snowplow part (its section and ids)")
    p.add_argument("--snowplow-lines", type=int, default=200_000, help="events per file of the Snowplow part")
    p.add_argument("--snowplow-rss-lines", type=int, default=1_000_000,
                   help="events of the larger file whose peak RSS is compared (default 1,000,000)")
    p.add_argument("--singer-reps", type=int, default=3, help="rounds of the Singer target part (default 3; 0 skips)")
    p.add_argument("--singer-only", action="store_true", help="measure only the Singer parts (targets, operator vs pipe)")
    p.add_argument("--singer-records", type=int, default=200_000, help="records of the Singer target part")
    p.add_argument("--singer-pipe-reps", type=int, default=3,
                   help="rounds per shape of the Singer operator vs bare pipe part (alternating; default 3; 0 skips)")
    p.add_argument("--singer-pipe-records", type=int, default=200_000,
                   help="records of that part's 5-column shape; its 30-column shape gets half as many")
    p.add_argument("--retl-reps", type=int, default=5,
                   help="rounds of the reverse-ETL part (ours and the full send, alternating; default 5; 0 skips)")
    p.add_argument("--retl-only", action="store_true", help="measure only the reverse-ETL part (its section and ids)")
    p.add_argument("--retl-rows", type=int, default=1_000_000, help="source rows of the reverse-ETL part")
    p.add_argument("--retl-rss-rows", type=int, default=1_000_000,
                   help="rows of the larger source whose peak RSS is compared with a tenth of it (default 1,000,000)")
    p.add_argument("--superset-reps", type=int, default=3,
                   help="rounds of the Superset warm-up part (serial, concurrency 8 and 4, rotating; default 3; "
                        "0 skips)")
    p.add_argument("--superset-only", action="store_true",
                   help="measure only the Superset warm-up part (its section and ids)")
    p.add_argument("--superset-charts", type=int, default=40, help="charts of the Superset part's main shape")
    p.add_argument("--superset-charts-large", type=int, default=80,
                   help="charts of its second shape (serial vs concurrency 8; default 80; 0 skips)")
    p.add_argument("--superset-views", type=int, default=10,
                   help="slow views (one dataset each) the Superset part's charts read (default 10)")
    p.add_argument("--superset-workers", type=int, default=8, help="gunicorn workers of that Superset (default 8)")
    p.add_argument("--superset-threads", type=int, default=1,
                   help="threads per gunicorn worker (default 1: the sync worker; more: gthread)")
    p.add_argument("--superset-dev-reps", type=int, default=3,
                   help="rounds on the single-process dev server, informational (default 3; 0 skips)")
    p.add_argument("--no-profile", dest="profile", action="store_false",
                   help="skip the cProfile'd loop of ours (shape B, else D)")
    p.add_argument("--output", type=Path, default=REPO / "bench" / "RESULTS.md")
    p.add_argument("--json", type=Path, default=REPO / "bench" / "results.json")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = _parser()
    args = parser.parse_args(argv)
    names = [s.strip().upper() for s in args.shapes.split(",") if s.strip()]
    if args.no_dbt:
        names = [n for n in names if n != "E"]
    if any(n not in ALL_SHAPES for n in names) or args.reps < 1 or args.whole_reps < 0:
        parser.error(f"--shapes takes {', '.join(ALL_SHAPES)} (got {args.shapes!r}); --reps must be ≥ 1")
    started = time.monotonic()
    WORK.mkdir(parents=True, exist_ok=True)
    homes = WORK / "homes"
    shutil.rmtree(homes, ignore_errors=True)  # Airflow homes are per run: nothing carries over
    homes.mkdir()
    run = _Run(args, argv)
    _log(f"osds compile available: {osds_compile_available(PROJECT_PYTHON)}")
    failed = False
    only = args.snowplow_only or args.singer_only or args.dbt_runtime_only or args.retl_only or args.superset_only
    if args.snowplow_only or args.singer_only or args.retl_only or args.superset_only:
        names = []
    try:
        _measure_operator_shapes(run, [n for n in names if n != "E"], homes)
        if "E" in names and not args.dbt_runtime_only:
            _measure_dbt(run, homes)
        if ("E" in names or args.dbt_runtime_only) and (args.dbt_runtime_reps > 0 or args.dbt_runtime_large_reps > 0):
            _measure_dbt_runtime(run)
        everything = not only and names == list(ALL_SHAPES)
        if args.snowplow_reps > 0 and (args.snowplow_only or everything):
            _measure_snowplow(run)
        if args.singer_reps > 0 and (args.singer_only or everything):
            _measure_singer(run)
        if args.singer_pipe_reps > 0 and (args.singer_only or everything):
            _measure_singer_pipe(run)
        if args.retl_reps > 0 and (args.retl_only or everything):
            _measure_reverse_etl(run)
        if args.superset_reps > 0 and (args.superset_only or everything):
            _measure_superset(run)
        if args.import_reps > 0 and not only:
            run.sections["imports"] = imports_section(run.meta(f"{args.import_reps} imports per module"),
                                                      measure_imports(args.import_reps))
    except ChildFailed as exc:
        _log(f"FAILED — measuring stopped; writing what was measured before.\n{exc}")
        failed = True
    if run.sections:
        merged = merge_results(args.json, run.entries)
        previous = args.output.read_text() if args.output.exists() else ""
        args.output.write_text(render(environment=_environment(started, run_superset="superset" in run.sections),
                                      entries=merged, new_sections=run.sections,
                                      previous=previous))
        _log(f"wrote {args.output} and {args.json} ({len(run.entries)} entries from this run)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
