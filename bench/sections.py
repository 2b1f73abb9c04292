"""The sections of RESULTS.md that one run measures: a shape, the operator imports, the dbt runtime, the profile."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from measure import ShapeInputs, ShapeResult
from profiling import ProfileSummary
from stats import Stat

__all__ = ["imports_section", "meta_line", "profile_section", "runtime_lines", "shape_section", "targets_table"]

_MODE_LABELS = {"steady": "steady (compiled cache warm)",
                "cold": "cold (fresh empty cache; `osds_pipeline_errors.py` first, Airflow's order)",
                "cold-reverse": "cold (fresh empty cache; `osds_pipelines.py` first)"}


def meta_line(meta: dict[str, str]) -> str:
    return "- " + "; ".join(f"{k}: {v}" for k, v in meta.items())


def _venv(inputs: ShapeInputs, variant: str) -> str:
    python = next(v.python for v in inputs.variants if v.name == variant)
    return "project .venv" if ".venv/" in str(python) else f"`{python.parent.parent.name}`"


def _label(inputs: ShapeInputs, key: str) -> str:
    variant, _, mode = key.partition("/")
    label = next(v.label for v in inputs.variants if v.name == variant)
    return f"{label} — {_MODE_LABELS[mode]}" if mode else label


def _per_file(loops: list[dict[str, Any]]) -> str:
    names = list(loops[0]["files"])
    if len(names) <= 3:
        return ", ".join(f"`{n}` {Stat.of([lp['files'][n] for lp in loops]).median * 1000:,.0f} ms" for n in names)
    every = [t for lp in loops for t in lp["files"].values()]
    return (f"{len(names)} files: median {statistics.median(every) * 1000:,.1f} ms, "
            f"min {min(every) * 1000:,.1f}, max {max(every) * 1000:,.1f}")


def _loops_table(inputs: ShapeInputs, result: ShapeResult) -> list[str]:
    memory = inputs.spawn_loops
    head = "| series | interpreter | DAG files | tasks | parse loop (sum of builds) | per file (medians) |"
    rule = "|---|---|---:|---:|---:|---|"
    if memory:
        head += " imports before each build (sum) | peak RSS (max over files) | Δ peak over RSS after imports |"
        rule += "---:|---:|---:|"
    out = [head, rule]
    for key, loops in result.loops.items():
        row = (f"| {_label(inputs, key)} | {_venv(inputs, key.partition('/')[0])} | {len(loops[0]['files'])} | "
               f"{loops[0]['tasks']:,} | {Stat.of([lp['build_s'] for lp in loops]).ms()} | {_per_file(loops)} |")
        if memory:
            row += (f" {Stat.of([lp['import_s'] for lp in loops]).ms()} | {Stat.of([lp['maxrss_kb'] for lp in loops]).mib()}"
                    f" | {Stat.of([lp['delta_kb'] for lp in loops]).mib()} |")
        out.append(row)
    return out


def _whole_table(inputs: ShapeInputs, result: ShapeResult) -> list[str]:
    out = ["| series | DAG files | build (sum) | whole process (sum) | imports before the build (sum) "
           "| peak RSS (max over files) |", "|---|---:|---:|---:|---:|---:|"]
    for key, loops in result.whole.items():
        out.append(f"| {_label(inputs, key)} | {len(loops[0]['files'])} | {Stat.of([lp['build_s'] for lp in loops]).ms()} | "
                   f"{Stat.of([lp['whole_s'] for lp in loops]).ms()} | {Stat.of([lp['import_s'] for lp in loops]).ms()} | "
                   f"{Stat.of([lp['maxrss_kb'] for lp in loops]).mib()} |")
    return out


def _task_start_table(inputs: ShapeInputs, result: ShapeResult) -> list[str]:
    dag_id = next(iter(result.task_ids.values()))[0]
    out = [f"### Task start: a worker's parse to run `{dag_id}` / a task of it", "",
           "A child forked from a process that imported `airflow.sdk` (as a worker's supervisor has), env "
           "`_AIRFLOW_PARSING_CONTEXT_DAG_ID`/`_TASK_ID` set, `DagBag(<the DAG file>, safe_mode=False)` as "
           "`task_runner.parse` does, no pre-import (workers do not pre-import).", "",
           "| variant | task | DAG file parsed | DAGs built | build |", "|---|---|---|---:|---:|"]
    for variant, runs in result.task_start.items():
        out.append(f"| {_label(inputs, variant)} | `{result.task_ids[variant][1]}` | "
                   f"`{runs[0]['file'].rsplit('/', 1)[-1]}` | {runs[0]['dags']} | "
                   f"{Stat.of([r['build_s'] for r in runs]).ms()} |")
    return out


def targets_table(entries: list[dict[str, Any]], last: str, cell: Callable[[dict[str, Any]], str]) -> list[str]:
    """results.json entries as a table; the last column is ``last``, filled by ``cell``."""
    out = [f"| id | ours | theirs | ratio | target | met | {last} |", "|---|---:|---:|---:|---|---|---|"]
    for e in entries:
        verdict = "met" if e["met"] else "**not met**"
        out.append(f"| `{e['id']}` | {e['ours']:,.0f} {e['unit']} | {e['theirs']:,.0f} {e['unit']} | "
                   f"{e['ratio']:.2f} | {e['target']} | {verdict} | {cell(e)} |")
    return out


def shape_section(title: str, meta: dict[str, str], inputs: ShapeInputs, result: ShapeResult,
                  entries: list[dict[str, Any]], sources: dict[str, str], *, intro: list[str] = (),
                  extra: list[str] = ()) -> str:
    how = ("its own fresh interpreter (spawned; pre-import in the child)" if inputs.spawn_loops
           else "its own process forked from a server that imported `airflow.sdk` and pre-imported the file's "
                "`airflow.*` imports, as the DAG-processor manager does")
    out = [f"## {title}", "", meta_line(meta), "", *intro,
           f"### Parse loop: every DAG file of a variant in {how}; the sum of the `DagBag` builds", ""]
    out += _loops_table(inputs, result) + ["", "Medians, (min–max) over the loops.", ""]
    if result.steady_prewarm:
        out += [f"Ours' steady cache was filled by {result.steady_prewarm}; cold loops each get a fresh empty "
                "`OSDS_CACHE_DIR`.", ""]
    if not inputs.spawn_loops and result.whole:
        out += ["### Fresh interpreters: whole process (one pass)", "",
                f"Every DAG file spawned in a fresh interpreter ({inputs.whole_reps} loop(s)): spawn → DagBag loaded, "
                "summed over the files; the build here runs outside a fork (no copy-on-write, no frozen GC).", ""]
        out += _whole_table(inputs, result) + [""]
    if result.task_start:
        out += _task_start_table(inputs, result) + [""]
    out += ["### Targets", ""] + targets_table(entries, "checks", lambda e: sources[e["id"]]) + [""]
    out += list(extra)
    return "\n".join(out).rstrip() + "\n"


def runtime_lines(meta: dict[str, str], runtime: dict[str, Any] | None, summaries: dict[str, dict[str, Any]],
                  rows: list[tuple[dict[str, Any], str]], error: str | None) -> str:
    """The dbt runtime section: ``granularity: model`` tasks against one ``dbt build``, ours and Cosmos 1.15."""
    out = ["## dbt at run time: `granularity: model` tasks vs one `dbt build`, ours and Cosmos 1.15", "",
           meta_line(meta), ""]
    if not runtime:
        return "\n".join(out + [f"n/a: {error}", ""])
    out += [
        "Each project against its own throw-away embedded PostgreSQL, dbt in process in both venvs (same dbt-core "
        "and dbt-postgres). Ours: `osds dbt-parse --connection warehouse`, then the tasks the real factory builds "
        "for `dbt: {project: …, granularity: model, threads: 1}` (`load_project` → `compile_pipeline` → "
        "`build_dag`), each run through its own `DbtBuildOperator.execute` (fresh target dir, the recorded parse "
        "copied in, `--no-populate-cache`). Cosmos: `DbtDag` from the manifest (`LoadMode.DBT_MANIFEST`, "
        "`TestBehavior.BUILD`, `TestIndirectSelection.CAUTIOUS`), partial parse as it ships it (its task copies "
        "`target/partial_parse.msgpack` of a `dbt parse` run with its own profile), each task's `execute`. "
        "`dbt seed`, one `dbt build` and one round of every task of both sides first, untimed; then per round: "
        "one `dbt build` (threads 1, then 4), every task of ours in dependency order, every task of Cosmos (the "
        "two alternate who goes first). Every task must report from dbt's own log that it parsed partially, or "
        "the run stops. Not included: a task process's start-up (Python, Airflow and dbt imports; see the task "
        "start tables), the same for both sides.", "",
        "| project | tasks | one `dbt build` threads 1 | threads 4 | our tasks (sum) | Cosmos tasks (sum) | "
        "our overhead per task | Cosmos overhead per task | inside dbt per task: ours / Cosmos |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for label, result in runtime.items():
        sm = summaries[label]
        n = sm["n"]
        inside = f"{Stat.of([x / n for x in sm['ours_dbt']]).ms()} / {Stat.of([x / n for x in sm['cosmos_dbt']]).ms()}"
        out.append(f"| {label} | {n} | {Stat.of(sm['one_t1']).ms()} | {Stat.of(sm['one_t4']).ms()} | "
                   f"{Stat.of(sm['ours']).ms()} | {Stat.of(sm['cosmos']).ms()} | {Stat.of(sm['ours_over']).ms()} | "
                   f"{Stat.of(sm['cosmos_over']).ms()} | {inside} |")
    out += ["", "Medians (min–max) over the rounds. Overhead per task = (the tasks' sum − one `dbt build`, threads "
            "1) ÷ tasks: what running each model in its own invocation adds.", ""]
    for label, result in runtime.items():
        rounds = len(result["rounds"])
        models = "the demo project" if result.get("models") is None else f"{result['models']} generated models"
        out.append(f"- {label}: {models}, {result['tasks']} tasks, {rounds} round(s); embedded PostgreSQL start "
                   f"{result['pg_start_s']:.1f} s, `osds dbt-parse` {result['parse_s']:.1f} s, whole part "
                   f"{result['wall_s']:.0f} s. A task's selection, e.g. `{next(iter(result['selections'].values()))[0]}`; "
                   f"dbt's log: {'; '.join(result['ours_log_evidence'][:2]) or 'n/a'}.")
        profile = result.get("profile") or {}
        for side, prof in (("ours", profile), ("Cosmos", profile.get("cosmos") or {})):
            if prof.get("phases"):
                phases = ", ".join(f"{p['label']} {p['cumulative_s'] * 1000:.0f} ms" for p in prof["phases"])
                out.append(f"  - one task of {side} under cProfile (`{prof['task']}`, {prof['total_s'] * 1000:.0f} ms "
                           f"profiled): {phases}.")
    out += ["", "### Targets", ""]
    sources = {e["id"]: src for e, src in rows}
    out += targets_table([e for e, _ in rows], "checks", lambda e: sources[e["id"]])
    return "\n".join(out).rstrip() + "\n"


def imports_section(meta: dict[str, str], imports: dict[str, dict[str, Any]]) -> str:
    out = ["## Import time of the operator and sensor modules", "", meta_line(meta), "",
           "Each module imported in a child forked from a process that has imported `airflow.sdk` only (a worker "
           "running a hand-written DAG's task imports just this); median of the measured imports (min–max), after "
           "one unmeasured round that writes the .pyc files. Modules: the three named in the issue plus every module "
           "under `operators`/`sensors` in `airflow_osds/get_provider_info.py` at run time.", "",
           "| module | import | modules newly imported | `airflow_osds.factory` imported | "
           "pydantic imported by it | our modules defining pydantic models | `airflow_osds` modules loaded after |",
           "|---|---:|---:|---|---|---|---|"]
    for module, r in imports.items():
        if "error" in r:
            out.append(f"| `{module}` | failed: {r['error']} | | | | | |")
            continue
        models = ", ".join(f"`{m}`" for m in r["osds_pydantic_model_modules"]) or "none"
        loaded = ", ".join(f"`{m}`" for m in r["osds_modules"])
        out.append(f"| `{module}` | {Stat.of(r['times']).ms()} | {r['new_modules']:,} | "
                   f"{'**yes**' if r['factory_imported'] else 'no'} | {'yes' if r['pydantic_imported_here'] else 'no'} | "
                   f"{models} | {loaded} |")
    return "\n".join(out) + "\n"


def _profile_tables(p: ProfileSummary) -> list[str]:
    out = ["| phase (cProfile, cumulative) | seconds | calls |", "|---|---:|---:|"]
    out += [f"| {'&nbsp;&nbsp;&nbsp;&nbsp;' * f.level}{f.label} | {f.cumulative_s:.3f} | {f.calls:,} |" for f in p.phases]
    out += ["", "Top functions of airflow_osds / PyYAML / pydantic by cumulative time:", "",
            "| function | cumulative s | own s | calls |", "|---|---:|---:|---:|"]
    out += [f"| `{f.label}` | {f.cumulative_s:.3f} | {f.own_s:.3f} | {f.calls:,} |" for f in p.top_ours_cumulative]
    out += ["", "Top functions of any module by own time (where the CPU actually is):", "",
            "| function | own s | cumulative s | calls |", "|---|---:|---:|---:|"]
    out += [f"| `{f.label}` | {f.own_s:.3f} | {f.cumulative_s:.3f} | {f.calls:,} |" for f in p.top_own]
    return out + [""]


def profile_section(meta: dict[str, str], shape: str, summaries: dict[str, ProfileSummary],
                    loop_ms: dict[str, float]) -> str:
    """Where ours' time goes: one cProfile'd loop (both DAG files) of ours steady and cold, against hand-written."""
    out = [f"## Where our time goes (shape {shape}, one cProfile'd parse loop each)", "", meta_line(meta), "",
           "cProfile inflates Python-heavy code: read shares, not seconds. Unprofiled medians of the same loops and "
           "the profiled totals: "
           + "; ".join(f"{k} {loop_ms[k]:,.0f} ms unprofiled, {summaries[k].total_s:.2f} s profiled"
                       for k in summaries if k in loop_ms)
           + ". Phases a refactor renamed are left out.", ""]
    titles = {"ours": "Ours, steady (compiled cache warm)", "ours-cold": "Ours, cold (fresh empty cache, Airflow's order)"}
    for key, title in titles.items():
        if key in summaries:
            out += [f"### {title}", ""] + _profile_tables(summaries[key])
    return "\n".join(out)
