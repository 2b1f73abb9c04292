"""Parse-time benchmark: airflow-osds YAML vs dag-factory 1.1.0 vs hand-written Python DAG files.

    make bench                      # = .venv/bin/python bench/run.py
    .venv/bin/python bench/run.py --reps 7 --shapes B --no-derive
    make bench BENCH_ARGS=--dbt     # also the dbt rendering benchmark (bench/dbt_bench.py, ≈ +3 min)

Generates equivalent inputs into bench/.work/, parses each variant's DAG folder with
Airflow's DagBag in fresh subprocesses (verifying the result every time), profiles one
build of ours, and writes bench/RESULTS.md. Standard library only; the dag-factory venv
is created on first use.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from envs import (
    PROJECT_PYTHON,
    REPO,
    WORK,
    ChildFailed,
    child_env,
    ensure_dagfactory_venv,
    package_versions,
    run_child,
)
from generate import SHAPES, Shape, write_inputs
from profiling import ProfileSummary, summarize
from report import Measured, Variant, render


def _variants(derive: bool) -> list[Variant]:
    variants = [
        Variant("ours", "ours: airflow-osds YAML (explicit reads/writes)", "project .venv"),
        Variant("dagfactory", "dag-factory 1.1.0 YAML", "dag-factory venv"),
        Variant("plain", "hand-written Python", "project .venv"),
        # Control: the same Python files in the dag-factory venv. The two venvs hold the same
        # pinned Airflow but different extra packages, which shows in the whole-process time.
        Variant("plain-dfvenv", "hand-written Python (control)", "dag-factory venv"),
    ]
    if derive:
        # The YAML users write: no reads/writes, the factory finds them in the SQL.
        variants.insert(1, Variant("ours-derive", "ours: airflow-osds YAML (reads/writes derived from SQL)",
                                   "project .venv"))
    return variants


def _inputs_of(variant: str) -> str:
    return "plain" if variant == "plain-dfvenv" else variant


def _log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def _summary(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return " / ".join(lines[-2:])[:300] if lines else type(error).__name__


def measure_shape(
    shape: Shape, variants: list[Variant], pythons: dict[str, Path], reps: int, homes: Path
) -> tuple[Measured, dict[str, Path]]:
    folders = write_inputs(WORK / "inputs", shape)
    expected = WORK / "inputs" / shape.name / "expected.json"
    envs = {
        v.name: child_env(Path(tempfile.mkdtemp(prefix=f"{shape.name}-{v.name}-", dir=homes)), folders[_inputs_of(v.name)])
        for v in variants
    }
    m = Measured()

    def once(v: Variant) -> dict[str, object] | None:
        try:
            return run_child(pythons[v.name], folders[_inputs_of(v.name)], expected, envs[v.name])
        except ChildFailed as exc:
            if not v.optional:
                raise
            m.not_available[v.name] = _summary(exc)
            _log(f"shape {shape.name}: {v.name} failed, reported as n/a: {_summary(exc)}")
            return None

    # One unmeasured warm-up each: writes .pyc files and Airflow's config into AIRFLOW_HOME
    # and fills the OS file cache, so the first measured run is not special.
    for v in variants:
        _log(f"shape {shape.name}: warm-up {v.name}")
        once(v)
    active = [v for v in variants if v.name not in m.not_available]
    for rep in range(reps):
        # Round-robin with a rotating order: drift on a busy 2-core machine hits every variant alike.
        order = active[rep % len(active):] + active[: rep % len(active)]
        for v in order:
            if v.name in m.not_available:
                continue
            result = once(v)
            if result is not None:
                m.runs.setdefault(v.name, []).append(result)
                _log(f"shape {shape.name} rep {rep + 1}/{reps} {v.name:13} "
                     f"build {float(result['build_s']) * 1000:8.0f} ms   whole {float(result['whole_s']) * 1000:8.0f} ms")
    for name in m.not_available:
        m.runs.pop(name, None)
    return m, folders


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _git(*args: str) -> str:
    # Read-only git queries, to record which code was measured.
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def _meta(df_python: Path, reps: int, elapsed_s: float) -> dict[str, str]:
    packages = ("apache-airflow", "apache-airflow-task-sdk", "apache-airflow-providers-common-sql", "dag-factory",
                "airflow-osds", "PyYAML", "pydantic")
    ours = package_versions(PROJECT_PYTHON, packages)
    theirs = package_versions(df_python, packages)
    commit = _git("rev-parse", "--short", "HEAD")
    dirty = " (working tree had uncommitted changes)" if _git("status", "--porcelain", "--", "airflow_osds") else ""
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "Date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "Machine": f"nproc {nproc}, {_cpu_model()}, {platform.system()} {platform.release()}",
        "Python": f"{ours['python']} (project .venv), {theirs['python']} (dag-factory venv)",
        "Airflow": f"apache-airflow {ours['apache-airflow']} / task-sdk {ours['apache-airflow-task-sdk']} / "
                   f"common-sql {ours['apache-airflow-providers-common-sql']} in both venvs"
        if all(ours[p] == theirs[p] for p in packages[:3])
        else f"project .venv: {ours}; dag-factory venv: {theirs}",
        "dag-factory": theirs["dag-factory"],
        "airflow-osds": f"{ours['airflow-osds']} at {commit or 'unknown commit'}{dirty}",
        "PyYAML / pydantic": f"{ours['PyYAML']} / {ours['pydantic']}",
        "Repetitions": f"{reps} measured runs per variant and shape (after one warm-up), medians reported",
        "Run time": f"{elapsed_s / 60:.1f} min for the whole command (including the dag-factory venv check)",
    }


NOTES = [
    "Every run is a fresh Python subprocess with its own `AIRFLOW_HOME` under `bench/.work/homes/`, "
    "`AIRFLOW__CORE__LOAD_EXAMPLES=False`, `AIRFLOW__CORE__DAGS_FOLDER` = the variant's folder, "
    "`AIRFLOW_CONN_WAREHOUSE` (postgres) and no other `AIRFLOW*` variable from the caller; no metadata DB. "
    "`PYTHONDONTWRITEBYTECODE` is removed, so bytecode caches work as in a deployment (the warm-up writes them).",
    "**Build** = `DagBag(dag_folder=…)` timed with `perf_counter` after `import airflow.sdk` and "
    "`from airflow.dag_processing.dagbag import DagBag`. **Whole process** = from just before the parent "
    "spawns the interpreter to the DagBag being loaded (CLOCK_MONOTONIC on both sides): start-up, "
    "`import airflow`, the build; not interpreter shutdown.",
    "After every run the DagBag is checked against what was generated: zero import errors, every DAG id "
    "and task id, each task a `SQLExecuteQueryOperator` (ours: its subclass `WarehouseSqlOperator`) on "
    "`warehouse` with the expected SQL, exactly one outlet `Asset(name=warehouse.bench.…, "
    "uri=osds://warehouse/bench/…, group=table)`, and the one upstream edge of the chain. A mismatch stops the run.",
    "Layout: ours = the two DAG files of a deployment (`load_pipelines(folder, globals())` and "
    "`report_pipeline_errors(folder)`, both parsed by the DagBag) + one YAML file per DAG; "
    "dag-factory = one DAG file calling `load_yaml_dags` + one YAML file per DAG; plain = one `.py` per DAG, "
    "written out task by task with `>>` edges. Inputs are regenerated into `bench/.work/inputs/` each run.",
    "Not identical work: ours also adds an inlet Asset per table read and a generated `doc_md`; dag-factory "
    "renders the YAML into `doc_md` and parses with PyYAML's pure-Python `FullLoader` (ours uses libyaml's C loader).",
    "Two variants of ours: the YAML users write (no `reads:`/`writes:`; the factory finds them in the SQL) "
    "and the same with explicit `reads:`/`writes:` (no SQL scan); `--no-derive` skips the first.",
    "ours and plain run in the project `.venv`; dag-factory runs in `bench/.work/venv-dagfactory` "
    "(same pinned versions from `constraints.txt`). The control row runs the plain files in the "
    "dag-factory venv to show how much of a whole-process difference is the venv itself.",
]


DBT_SECTION_TITLE = "## dbt rendering: ours vs Cosmos 1.15"  # = dbt_bench.SECTION_TITLE


def _with_dbt_section(text: str, args: argparse.Namespace, command: str) -> str:
    """``text`` plus the dbt section: a fresh one with ``--dbt``, else the previous report's (if any)."""
    if args.dbt:
        # Imported here: the dbt benchmark (and its Cosmos venv) is never needed by a plain `make bench`.
        from dbt_bench import run_dbt_benchmark

        try:
            section = run_dbt_benchmark(args.reps, 3, command)
        except Exception as exc:  # noqa: BLE001 — the parse-time results above are still worth writing
            _log(f"dbt benchmark failed, section left out: {_summary(exc)}")
            return text
        return text.rstrip() + "\n\n" + section
    previous = args.output.read_text() if args.output.exists() else ""
    if "\n" + DBT_SECTION_TITLE in previous:
        return text.rstrip() + "\n\n" + DBT_SECTION_TITLE + previous.split("\n" + DBT_SECTION_TITLE, 1)[1]
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5, help="measured runs per variant and shape (default 5)")
    parser.add_argument("--shapes", default="A,B", help="comma-separated shapes: A (100×11 tasks), B (1×1,000)")
    parser.add_argument("--no-derive", dest="derive", action="store_false",
                        help="skip the variant of ours whose reads/writes are derived from the SQL")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "RESULTS.md")
    parser.add_argument("--dbt", action="store_true",
                        help="also run the dbt rendering benchmark (ours vs Cosmos; bench/dbt_bench.py) and append "
                             "its section; without it, the dbt section of the previous RESULTS.md is kept")
    args = parser.parse_args(argv)
    names = [s.strip().upper() for s in args.shapes.split(",") if s.strip()]
    unknown = [n for n in names if n not in SHAPES]
    if unknown or not names or args.reps < 1:
        parser.error(f"--shapes takes A and/or B (got {args.shapes!r}); --reps must be ≥ 1")
    shapes = [SHAPES[n] for n in names]

    started = time.monotonic()
    WORK.mkdir(parents=True, exist_ok=True)
    df_python = ensure_dagfactory_venv()
    variants = _variants(args.derive)
    pythons = {v.name: (df_python if v.venv == "dag-factory venv" else PROJECT_PYTHON) for v in variants}
    homes = WORK / "homes"
    shutil.rmtree(homes, ignore_errors=True)  # Airflow homes are per run: nothing carries over
    homes.mkdir()

    measured: dict[str, Measured] = {}
    folders_by_shape: dict[str, dict[str, Path]] = {}
    try:
        for shape in shapes:
            measured[shape.name], folders_by_shape[shape.name] = measure_shape(shape, variants, pythons, args.reps, homes)
    except ChildFailed as exc:
        _log(f"FAILED — no results written.\n{exc}")
        return 1

    profile: tuple[str, ProfileSummary, float | None] | None = None
    profile_shape = "B" if "B" in measured else shapes[0].name
    prof_paths = {v: WORK / f"{v}-{profile_shape}.prof" for v in ("ours", "plain")}
    try:
        # Profiled once each, outside the timed runs: ours for the breakdown, plain for scale.
        for v in ("ours", "plain"):
            _log(f"profiling one build of {v}, shape {profile_shape}")
            folder = folders_by_shape[profile_shape][v]
            env = child_env(Path(tempfile.mkdtemp(prefix=f"profile-{v}-", dir=homes)), folder)
            run_child(PROJECT_PYTHON, folder, WORK / "inputs" / profile_shape / "expected.json", env,
                      profile_out=prof_paths[v])
        profile = (profile_shape, summarize(prof_paths["ours"]), summarize(prof_paths["plain"]).total_s)
    except ChildFailed as exc:
        _log(f"profiling failed, left out of the report: {_summary(exc)}")

    cli = tuple(sys.argv[1:] if argv is None else argv)
    make_commands = {(): "make bench", ("--dbt",): "make bench BENCH_ARGS=--dbt"}
    command = make_commands[cli] if os.environ.get("MAKELEVEL") and argv is None and cli in make_commands \
        else ".venv/bin/python bench/run.py " + " ".join(cli)
    text = render(
        meta=_meta(df_python, args.reps, time.monotonic() - started),
        command=command.strip(),
        shapes=[(s.name, s.description) for s in shapes],
        variants=variants,
        measured=measured,
        profile=profile,
        notes=NOTES,
    )
    text = _with_dbt_section(text, args, command.strip())
    args.output.write_text(text)
    raw = {name: {"runs": m.runs, "not_available": m.not_available} for name, m in measured.items()}
    (WORK / "results.json").write_text(json.dumps(raw, indent=1))
    _log(f"wrote {args.output} (raw runs: {WORK / 'results.json'}, profile: {prof_paths['ours']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
