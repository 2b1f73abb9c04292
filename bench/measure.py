"""Measure one shape: parse loops per variant (steady and cold for ours), task starts, and a whole-process pass.

A *parse loop* is what Airflow's DAG processor does for a variant: every DAG file of it
parsed in its own fresh process; its time is the sum of the files' build times. The
loops of all series run round-robin, one rep at a time, after one unmeasured warm-up each
(it writes the .pyc files and Airflow's config into each AIRFLOW_HOME).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envs import WORK, ChildFailed, child_env
from runners import ForkServer, spawn
from writers import OURS_FILES

__all__ = ["Series", "ShapeInputs", "ShapeResult", "Variant", "measure_shape", "osds_compile_available"]

Request = dict[str, Any]
Runner = Callable[[Request], dict[str, Any]]


@dataclass(frozen=True)
class Variant:
    name: str  # ours, ours-derive, dagfactory, plain, plain-dfvenv, cosmos-build, cosmos-after-each
    inputs: str  # key of the shape's folders
    python: Path
    label: str
    cached: bool = False  # airflow-osds: has the compiled cache (steady and cold series)
    control: bool = False  # only in the parse loops (not the task start or fresh-interpreter pass)


@dataclass(frozen=True)
class Series:
    variant: Variant
    mode: str = ""  # cached variants: steady | cold | cold-reverse

    @property
    def key(self) -> str:
        return f"{self.variant.name}/{self.mode}" if self.mode else self.variant.name


@dataclass
class ShapeInputs:
    name: str
    folders: dict[str, Path]  # inputs key → DAG folder (expected.json beside it)
    variants: list[Variant]
    task_start: tuple[str, str] | None = None  # (dag id, task id or a part of it)
    task_start_variants: tuple[str, ...] = ()
    env_extra: dict[str, str] = field(default_factory=dict)
    spawn_loops: bool = False  # loops in fresh interpreters (peak RSS); else forked from a server
    whole_reps: int = 1  # fresh-interpreter loops for whole-process time (spawn_loops: the loops themselves)


@dataclass
class ShapeResult:
    loops: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # series key → loops
    whole: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # series key → fresh-interpreter loops
    task_start: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # variant → parses
    task_ids: dict[str, tuple[str, str]] = field(default_factory=dict)  # variant → (dag, task) started
    steady_prewarm: str = ""  # how ours' cache was warmed
    profiles: dict[str, list[Path]] = field(default_factory=dict)  # ours | ours-cold | plain → cProfile dumps


def _log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


_COMPILE: dict[Path, bool] = {}


def osds_compile_available(python: Path) -> bool:
    """``osds compile --help`` exits 0 (the command that fills the compiled cache ahead of parsing)."""
    if python not in _COMPILE:
        osds = python.parent / "osds"
        try:
            rc = subprocess.run([str(osds), "compile", "--help"], capture_output=True, timeout=120).returncode
        except (OSError, subprocess.TimeoutExpired):
            rc = 1
        _COMPILE[python] = rc == 0
    return _COMPILE[python]


class _Shape:
    """The state of one shape's measurement: environments, cache directories, servers."""

    def __init__(self, inputs: ShapeInputs, homes: Path, caches: Path) -> None:
        self.inputs = inputs
        self.caches = caches
        caches.mkdir(parents=True, exist_ok=True)
        self.envs = {
            v.name: {**child_env(Path(tempfile.mkdtemp(prefix=f"{inputs.name}-{v.name}-", dir=homes)),
                                 inputs.folders[v.inputs]), **inputs.env_extra}
            for v in inputs.variants
        }
        self.steady = {v.name: caches / f"{v.name}-steady" for v in inputs.variants if v.cached}
        self.result = ShapeResult()

    def files(self, s: Series) -> list[str]:
        if s.variant.cached:
            return list(reversed(OURS_FILES)) if s.mode == "cold-reverse" else list(OURS_FILES)
        return sorted(p.name for p in self.inputs.folders[s.variant.inputs].glob("*.py"))

    def request(self, v: Variant, name: str, **extra: Any) -> Request:
        folder = self.inputs.folders[v.inputs]
        return {"kind": "parse", "file": str(folder / name), "expected": str(folder.parent / "expected.json"), **extra}

    def loop(self, run: Runner, s: Series, cache_dir: Path | None = None, **extra: Any) -> dict[str, Any]:
        """One parse loop of series ``s``: every DAG file in its own process; sums and per-file times."""
        env = {"OSDS_CACHE_DIR": str(cache_dir)} if cache_dir else {}
        runs = {name: run(self.request(s.variant, name, env=env, preimport=True, **extra)) for name in self.files(s)}
        out: dict[str, Any] = {"build_s": sum(r["build_s"] for r in runs.values()),
                               "files": {n: r["build_s"] for n, r in runs.items()},
                               "tasks": sum(r["tasks"] for r in runs.values())}
        if all("maxrss_kb" in r for r in runs.values()):
            out["maxrss_kb"] = max(r["maxrss_kb"] for r in runs.values())  # each file is its own process
            out["delta_kb"] = max(r["delta_kb"] for r in runs.values())
            out["import_s"] = sum(r["import_s"] for r in runs.values())
        out["whole_s"] = sum(r["whole_s"] for r in runs.values())
        out["task_groups"] = sum(r["task_groups"] for r in runs.values())
        if extra.get("list_tasks"):
            out["task_ids"] = {k: v for r in runs.values() for k, v in r.get("task_ids", {}).items()}
        return out

    def measured_loop(self, run: Runner, s: Series) -> dict[str, Any]:
        if s.mode in ("cold", "cold-reverse"):
            cold = Path(tempfile.mkdtemp(prefix=f"{s.variant.name}-cold-", dir=self.caches))  # fresh and empty
            try:
                return self.loop(run, s, cold)
            finally:
                shutil.rmtree(cold, ignore_errors=True)
        return self.loop(run, s, self.steady.get(s.variant.name))

    def prewarm(self, run: Runner, v: Variant) -> str:
        """Fill ours' steady cache once: ``osds compile`` if the command exists, else one unmeasured loop."""
        steady = self.steady[v.name]
        shutil.rmtree(steady, ignore_errors=True)
        steady.mkdir(parents=True)
        if osds_compile_available(v.python):
            pipelines = self.inputs.folders[v.inputs].parent / "pipelines"
            env = {**self.envs[v.name], "OSDS_CACHE_DIR": str(steady)}
            proc = subprocess.run([str(v.python.parent / "osds"), "compile", str(pipelines)], env=env,
                                  capture_output=True, text=True, timeout=1800)
            if proc.returncode != 0:
                raise ChildFailed(f"osds compile {pipelines} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
            return "`osds compile <pipelines>` into the cache directory"
        self.loop(run, Series(v, "steady"), steady)
        return "one unmeasured parse of both DAG files into the cache directory (no `osds compile` command yet)"


def _series(inputs: ShapeInputs) -> list[Series]:
    out = []
    for v in inputs.variants:
        modes = (["steady", "cold"] + (["cold-reverse"] if v.name == "ours" else [])) if v.cached else [""]
        out += [Series(v, m) for m in modes]
    return out


def _round_robin(series: list[Series], reps: int, once: Callable[[Series], dict[str, Any]],
                 into: dict[str, list[dict[str, Any]]], what: str) -> None:
    for rep in range(reps):
        # A rotating order: drift on a busy 2-core machine hits every series alike.
        for s in series[rep % len(series):] + series[: rep % len(series)]:
            r = once(s)
            into.setdefault(s.key, []).append(r)
            _log(f"{what} rep {rep + 1}/{reps} {s.key:24} build {r['build_s'] * 1000:8.0f} ms")


def _servers(st: _Shape, variants: list[Variant], tag: str) -> dict[str, ForkServer]:
    logs = WORK / "logs"
    return {v.name: ForkServer(v.python, st.envs[v.name], logs / f"{st.inputs.name}-{v.name}-{tag}.log")
            for v in variants}


def _profile(st: _Shape, runners: dict[str, Runner], out: Path) -> None:
    """One cProfile'd loop each of ours steady, ours cold and the hand-written files, outside the timed runs."""
    out.mkdir(parents=True, exist_ok=True)
    cold = Path(tempfile.mkdtemp(prefix="profile-cold-", dir=st.caches))
    for v in st.inputs.variants:
        runs = {"ours": [("ours", "steady", st.steady.get(v.name)), ("ours-cold", "cold", cold)],
                "plain": [("plain", "", None)]}.get(v.name, [])
        for key, mode, cache in runs:
            s = Series(v, mode)
            env = {"OSDS_CACHE_DIR": str(cache)} if cache else {}
            paths = [out / f"{st.inputs.name}-{key}-{name}.prof" for name in st.files(s)]
            for name, path in zip(st.files(s), paths, strict=True):
                runners[v.name](st.request(v, name, env=env, preimport=True, profile_out=str(path)))
            st.result.profiles[key] = paths
    shutil.rmtree(cold, ignore_errors=True)


def _processor_phase(st: _Shape, reps: int, profile: Path | None) -> None:
    inputs, variants = st.inputs, st.inputs.variants
    servers = {} if inputs.spawn_loops else _servers(st, variants, "processor")
    runners: dict[str, Runner] = {
        v.name: (lambda req, v=v: spawn(v.python, st.envs[v.name], req)) if inputs.spawn_loops
        else servers[v.name].request for v in variants
    }
    try:
        for v in variants:
            _log(f"shape {inputs.name}: warm-up {v.name}")
            scratch = Path(tempfile.mkdtemp(prefix="warm-up-", dir=st.caches)) if v.cached else None
            warm = st.loop(runners[v.name], Series(v, "steady" if v.cached else ""), scratch,
                           list_tasks=v.name in inputs.task_start_variants)
            if inputs.task_start and v.name in inputs.task_start_variants:
                st.result.task_ids[v.name] = _pick_task(warm["task_ids"], inputs.task_start)
            if v.cached:
                st.result.steady_prewarm = st.prewarm(runners[v.name], v)
        _round_robin(_series(inputs), reps, lambda s: st.measured_loop(runners[s.variant.name], s), st.result.loops,
                     f"shape {inputs.name}")
        if profile is not None:
            _log(f"shape {inputs.name}: one profiled loop of ours (steady, cold) and of plain")
            _profile(st, runners, profile)
    finally:
        for server in servers.values():
            server.close()


def _pick_task(task_ids: dict[str, list[str]], wanted: tuple[str, str]) -> tuple[str, str]:
    dag_id, task = wanted
    ids = task_ids.get(dag_id, [])
    if task in ids:
        return dag_id, task
    matches = [t for t in ids if task in t]  # dbt renderers name a model's task each their own way
    if not matches:
        raise ChildFailed(f"no task like {task!r} in DAG {dag_id!r} (tasks: {ids[:5]}…)")
    return dag_id, matches[0]


def _task_start_phase(st: _Shape, reps: int) -> None:
    """The parse a worker does to run one task: only the DAG file defining the DAG, no pre-import."""
    inputs = st.inputs
    variants = [v for v in inputs.variants if v.name in inputs.task_start_variants]
    dag_id = inputs.task_start[0] if inputs.task_start else ""

    def file_of(v: Variant) -> str:
        if v.cached:
            return "osds_pipelines.py"
        names = [s for s in st.files(Series(v)) if s == f"{dag_id}.py"]
        return names[0] if names else st.files(Series(v))[0]  # one loader file for every DAG

    servers = _servers(st, variants, "worker")
    try:
        def once(s: Series) -> dict[str, Any]:
            v = s.variant
            env = {"OSDS_CACHE_DIR": str(st.steady[v.name])} if v.cached else {}
            return servers[v.name].request(st.request(v, file_of(v), env=env, safe_mode=False, preimport=False,
                                                      task_start=list(st.result.task_ids[v.name])))

        series = [Series(v) for v in variants]
        for s in series:
            once(s)  # warm-up
        _round_robin(series, reps, once, st.result.task_start, f"shape {inputs.name} task start")
    finally:
        for server in servers.values():
            server.close()


def _whole_phase(st: _Shape) -> None:
    """Fresh interpreters (spawned, pre-import in the child): whole-process time, imports, build outside a fork."""
    series = [s for s in _series(st.inputs) if s.mode in ("", "steady") and not s.variant.control]
    for rep in range(st.inputs.whole_reps):
        for s in series:
            v = s.variant
            r = st.measured_loop(lambda req, v=v: spawn(v.python, st.envs[v.name], req), s)
            st.result.whole.setdefault(s.key, []).append(r)
            _log(f"shape {st.inputs.name} fresh interpreters {rep + 1}/{st.inputs.whole_reps} {s.key:20} "
                 f"build {r['build_s'] * 1000:7.0f} ms  whole {r['whole_s'] * 1000:8.0f} ms")


def measure_shape(inputs: ShapeInputs, reps: int, homes: Path, profile: Path | None = None) -> ShapeResult:
    """Every series of ``inputs``; ``profile``: a folder for one cProfile'd loop of ours and plain."""
    st = _Shape(inputs, homes, WORK / "caches" / inputs.name)
    _processor_phase(st, reps, profile)
    if inputs.task_start and inputs.task_start_variants:
        _task_start_phase(st, reps)
    if inputs.spawn_loops:
        st.result.whole = st.result.loops  # the loops ran in fresh interpreters already
    else:
        _whole_phase(st)
    return st.result
