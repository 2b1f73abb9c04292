"""Shape E's runtime part: what ``granularity: model`` costs at run time with the parse reused, ours vs Cosmos 1.15.

Two projects, each in its own run of dbt_runtime_child.py (project .venv; it drives
dbt_runtime_cosmos.py in the Cosmos + dbt venv) against its own throw-away embedded PostgreSQL:

* ``demo``: the demo project (include/dbt/web_analytics), copied (the repo is never written), its
  sources (``atomic.events`` and its web_page table) loaded from the demo's enriched sample by the
  Snowplow loader, as the demo's first step does;
* ``gen<N>``: a generated project of N models (bench/dbt_project.py; N // 50 seeds, as the
  2,000-model project's 40), 1–2 tests per model.

Ours and Cosmos each get their own copy of the project (each parses it with its own profile),
building into the same database one after the other.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from dbt_envs import ensure_cosmos_dbt_venv
from dbt_project import PROFILE_NAME, PROJECT_NAME, write_project
from envs import BENCH_DIR, PROJECT_PYTHON, REPO, WORK, ChildFailed, child_env

__all__ = ["DEMO", "measure_runtime", "summarize"]

CHILD = BENCH_DIR / "dbt_runtime_child.py"
COSMOS_CHILD = BENCH_DIR / "dbt_runtime_cosmos.py"
DEMO = REPO / "include" / "dbt" / "web_analytics"
# The demo's events: its enriched sample, loaded by the Snowplow loader as the demo's first step does.
DEMO_EVENTS = {"source": str(REPO / "include" / "data" / "enriched"), "iglu": str(REPO / "include" / "iglu")}


def _log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def _demo_copy(dest: Path) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(DEMO, dest, ignore=shutil.ignore_patterns("target", "logs"))
    return dest


def _generated(dest: Path, models: int) -> tuple[Path, int]:
    seeds = max(1, models // 50)
    generated = write_project(dest, models, seeds)
    return dest, sum(2 if unique else 1 for *_, unique in generated)


def _run_child(label: str, config: dict[str, Any], log: Path) -> dict[str, Any]:
    cfg = WORK / "dbt" / "runtime" / f"{label}.json"
    cfg.write_text(json.dumps(config))
    out = Path(config["out"])
    out.unlink(missing_ok=True)
    home = Path(config["work"]) / "airflow-home"
    home.mkdir(parents=True, exist_ok=True)
    env = child_env(home, home / "dags")
    env.update(DBT_SEND_ANONYMOUS_USAGE_STATS="false", AIRFLOW__COSMOS__ENABLE_TELEMETRY="False",
               AIRFLOW__COSMOS__CACHE_DIR=str(Path(config["work"]) / "cosmos-cache"), DO_NOT_TRACK="1")
    tail: list[str] = []
    with log.open("w") as sink:
        proc = subprocess.Popen([str(PROJECT_PYTHON), str(CHILD), str(cfg)], env=env, stdout=sink,
                                stderr=subprocess.PIPE, text=True, errors="replace")
        assert proc.stderr is not None
        for line in proc.stderr:
            sink.write(line)
            if line.startswith("bench:"):
                print(line.rstrip(), file=sys.stderr, flush=True)
            tail = (tail + [line.rstrip()])[-15:]
        code = proc.wait()
    if code != 0 or not out.exists():
        raise ChildFailed(f"{CHILD.name} ({label}) exited {code} (log: {log}):\n" + "\n".join(tail))
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def measure_runtime(demo_reps: int, large_reps: int, large_models: int = 200) -> dict[str, Any]:
    """Both projects (a project with 0 rounds is left out); returns label → the child's result plus the setting."""
    cosmos_python = ensure_cosmos_dbt_venv()
    root = WORK / "dbt" / "runtime"
    root.mkdir(parents=True, exist_ok=True)
    plans = []
    if demo_reps > 0:
        plans.append(("demo", demo_reps, None))
    if large_reps > 0:
        plans.append((f"gen{large_models}", large_reps, large_models))
    results: dict[str, Any] = {}
    for label, reps, models in plans:
        work = root / label
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        if models is None:
            ours, cosmos = _demo_copy(work / "ours" / "web_analytics"), _demo_copy(work / "cosmos" / "web_analytics")
            tests, profile, name, events = None, "osds", "web_analytics", DEMO_EVENTS
            crm = str(ours / "seeds" / "crm_contacts.csv")
        else:
            ours, tests = _generated(work / "ours" / PROJECT_NAME, models)
            cosmos, _ = _generated(work / "cosmos" / PROJECT_NAME, models)
            profile, name, events, crm = PROFILE_NAME, PROJECT_NAME, None, None
        config = {"label": label, "project": str(ours), "cosmos_project": str(cosmos), "setup_events": events,
                  "setup_crm": crm,
                  "reps": reps, "out": str(work / "result.json"), "work": str(work),
                  "cosmos_python": str(cosmos_python), "cosmos_child": str(COSMOS_CHILD),
                  "profile_name": profile, "project_name": name, "cosmos_dag_id": f"cosmos_rt_{label}"}
        _log(f"dbt runtime {label}: {reps} round(s), ours vs Cosmos (log: {work / 'child.log'})")
        t0 = time.monotonic()
        result = _run_child(label, config, work / "child.log")
        result["wall_s"] = time.monotonic() - t0
        result["schema_tests"] = tests
        result["models"] = models
        results[label] = result
    return results


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    """Medians over the rounds: one build, separate runs, per-model overheads, and their ratios."""
    rounds, n = result["rounds"], result["tasks"]

    def med(values: list[float]) -> float:
        return statistics.median(values)

    one1 = [r["one_build_t1_s"] for r in rounds]
    ours = [r["separate_s"] for r in rounds]
    cosmos = [r["cosmos_separate_s"] for r in rounds]
    ours_over = [(s - o) / n for s, o in zip(ours, one1, strict=True)]
    cosmos_over = [(s - o) / n for s, o in zip(cosmos, one1, strict=True)]
    return {"n": n, "one_t1": one1, "one_t4": [r["one_build_t4_s"] for r in rounds], "ours": ours,
            "cosmos": cosmos, "ours_over": ours_over, "cosmos_over": cosmos_over,
            "ours_dbt": [r["separate_dbt_s"] for r in rounds], "cosmos_dbt": [r["cosmos_separate_dbt_s"] for r in rounds],
            "ratio_build": med(ours) / med(one1), "ratio_cosmos": med(ours_over) / med(cosmos_over),
            "cosmos_ratio_build": med(cosmos) / med(one1)}
