"""Read a cProfile dump of our build: where the time goes, in phases and top functions.

(Not named profile.py: cProfile imports the standard library's ``profile`` module, and
this folder is first on sys.path when run.py runs.)
"""

from __future__ import annotations

import pstats
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FuncTime", "ProfileSummary", "summarize"]

# (file suffix, function, nesting level, description). A phase not found (renamed by a
# later refactor) is left out of the summary rather than failing the benchmark.
PHASES: tuple[tuple[str, str, int, str], ...] = (
    ("airflow_osds/factory/cache.py", "read", 0, "compiled cache: read and check the cache file (steady)"),
    ("airflow_osds/factory/__init__.py", "compile_folder", 0, "no usable cache: validate, plan and compile the folder"),
    ("airflow_osds/factory/project.py", "load_project", 1, "read, validate and plan every file (no Airflow)"),
    ("airflow_osds/factory/yaml_source.py", "read_yaml", 2, "PyYAML, C loader"),
    ("pydantic/main.py", "model_validate", 2, "pydantic validation of the spec"),
    ("airflow_osds/factory/plan.py", "plan_pipeline", 2, "reads/writes, edges, checks"),
    ("airflow_osds/factory/compile.py", "compile_project", 1, "plans → the compiled form the cache stores"),
    ("airflow_osds/factory/cache.py", "write", 1, "compiled cache: write"),
    ("airflow_osds/factory/build.py", "build_dag", 0, "compiled pipeline → Airflow DAG, operators, Assets, edges"),
    ("airflow/sdk/bases/operator.py", "_get_parent_defaults", 1,
     "Airflow: deep copy of DAG default_args/params, per `__init__` level of the operator class"),
)
_OURS_MARKERS = ("airflow_osds/", "/yaml/", "/pydantic/", "pydantic_core")


@dataclass(frozen=True)
class FuncTime:
    label: str
    cumulative_s: float
    own_s: float
    calls: int
    key: str = ""  # phases: the function name; other rows: path:function
    level: int = 0  # phases: nesting depth in the table


@dataclass(frozen=True)
class ProfileSummary:
    total_s: float
    phases: list[FuncTime]
    top_ours_cumulative: list[FuncTime]  # airflow_osds / yaml / pydantic, by cumulative time
    top_own: list[FuncTime]  # any module, by time spent in the function itself


def _short(filename: str) -> str:
    """Path from the package root: ``airflow/sdk/…``, ``copy.py``, ``airflow_osds/…``."""
    filename = filename.replace("\\", "/")
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1]
    stdlib = re.search(r"/lib/python3\.\d+/(.*)$", filename)
    if stdlib:
        return stdlib.group(1)
    repo = Path(__file__).resolve().parent.parent.as_posix() + "/"
    return filename.removeprefix(repo)


def summarize(paths: list[Path], top: int = 8) -> ProfileSummary:
    """One summary of the cProfile dumps ``paths`` taken together (e.g. both DAG files of a loop)."""
    stats = pstats.Stats(*(str(p) for p in paths))
    raw = stats.stats  # type: ignore[attr-defined]  # {(file, line, func): (cc, nc, tt, ct, callers)}
    rows = [
        FuncTime(label=f"{_short(f)}:{line}({func})", cumulative_s=ct, own_s=tt, calls=nc, key=f"{_short(f)}:{func}")
        for (f, line, func), (_cc, nc, tt, ct, _callers) in raw.items()
    ]
    by_key = {(f, func): (nc, tt, ct) for (f, _line, func), (_cc, nc, tt, ct, _callers) in raw.items()}

    phases = []
    for suffix, func, level, description in PHASES:
        hits = [v for (f, fn), v in by_key.items() if fn == func and f.replace("\\", "/").endswith(suffix)]
        if hits:
            nc, tt, ct = max(hits, key=lambda v: v[2])
            phases.append(FuncTime(label=f"`{func}`: {description}", cumulative_s=ct, own_s=tt, calls=nc,
                                   key=func, level=level))

    ours = [
        r for (f, _line, _func), r in zip(raw, rows, strict=True)
        if any(m in f.replace("\\", "/") for m in _OURS_MARKERS)
    ]
    return ProfileSummary(
        total_s=float(stats.total_tt),  # type: ignore[attr-defined]
        phases=phases,
        top_ours_cumulative=sorted(ours, key=lambda r: r.cumulative_s, reverse=True)[:top],
        top_own=sorted(rows, key=lambda r: r.own_s, reverse=True)[:top],
    )
