"""All pipelines of a folder together: the cross-file rules and the data that links pipelines.

A pipeline with ``schedule: data`` runs when the tables it reads from *other* pipelines
change. Working that out needs every file of the folder, so the folder is always read as
a whole (cheap: YAML and pydantic, no Airflow), even when only one DAG is built.
"""

from __future__ import annotations

import graphlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from airflow_osds.assets import DataRef
from airflow_osds.exceptions import PipelineSpecError, SpecProblem
from airflow_osds.factory.imports import check_dotted
from airflow_osds.factory.loader import DefaultsCache, find_pipeline_files, parse_pipeline_file
from airflow_osds.factory.plan import PipelinePlan, plan_pipeline

__all__ = ["Project", "load_project"]


@dataclass
class Project:
    folder: Path
    plans: dict[str, PipelinePlan] = field(default_factory=dict)
    errors: list[PipelineSpecError] = field(default_factory=list)
    warnings: list[tuple[str, SpecProblem]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    default_warehouse: str = "warehouse"
    # What the result depends on besides the pipeline files, valid or not: the environment
    # variables they reference and the files planning read (SQL, dbt manifests and projects).
    env_names: set[str] = field(default_factory=set)
    dependencies: set[Path] = field(default_factory=set)

    @property
    def writers(self) -> dict[DataRef, list[str]]:
        """Data (tables, dashboards, …) → ids of the pipelines that write it."""
        out: dict[DataRef, list[str]] = {}
        for plan in self.plans.values():
            for ref in sorted(plan.writes):
                out.setdefault(ref, []).append(plan.id)
        return out

    def upstream_data(self, plan: PipelinePlan) -> list[DataRef]:
        """Data ``plan`` reads that other pipelines write, sorted (the Assets of `schedule: data`)."""
        writers = self.writers
        return sorted(ref for ref in plan.external_reads if any(w != plan.id for w in writers.get(ref, ())))

    def upstream_pipelines(self, plan: PipelinePlan) -> set[str]:
        writers = self.writers
        return {w for ref in self.upstream_data(plan) for w in writers[ref] if w != plan.id}


def load_project(folder: Path, *, default_warehouse: str = "warehouse", environ: Mapping[str, str] | None = None) -> Project:
    """Read, validate and plan every pipeline file under ``folder``, then apply the cross-file rules."""
    environ = os.environ if environ is None else environ
    check_dotted.cache_clear()  # user modules may have changed since an earlier load in this process
    project = Project(folder=folder, files=find_pipeline_files(folder), default_warehouse=default_warehouse)
    cache = DefaultsCache()
    first_file: dict[str, Path] = {}
    for path in project.files:
        try:
            plan = _load_file(path, project, environ, cache, first_file)
        except PipelineSpecError as exc:
            # A broken defaults.yml fails every file below it: report it once.
            if not any(e.path == exc.path and str(e) == str(exc) for e in project.errors):
                project.errors.append(exc)
            continue
        first_file[plan.id] = path
        project.plans[plan.id] = plan
        project.warnings.extend((str(path), w) for w in plan.warnings)
    _check_data_schedules(project)
    _check_pipeline_cycles(project)
    _warn_unproduced_reads(project)
    return project


def _load_file(
    path: Path, project: Project, environ: Mapping[str, str], cache: DefaultsCache, first_file: dict[str, Path]
) -> PipelinePlan:
    """Parse and plan one file; any failure, expected or not, is this file's located error."""
    try:
        parsed = parse_pipeline_file(path, root=project.folder, environ=environ, cache=cache, env_names=project.env_names)
        if parsed.spec.pipeline in first_file:
            message = f"pipeline id `{parsed.spec.pipeline}` is already used by {first_file[parsed.spec.pipeline]}"
            raise PipelineSpecError(str(path), [parsed.problem(message, ("pipeline",))])
        return plan_pipeline(parsed, default_warehouse=project.default_warehouse, dependencies=project.dependencies)
    except PipelineSpecError:
        raise
    except Exception as exc:  # a defect of ours or of a block: still this file's problem, never the folder's
        message = f"internal error while reading this file ({type(exc).__name__}: {exc}); please report it"
        raise PipelineSpecError(str(path), [SpecProblem(message, line=None, column=None)]) from exc


def _check_data_schedules(project: Project) -> None:
    for plan in list(project.plans.values()):
        if plan.is_data_scheduled and not project.upstream_data(plan):
            reads = ", ".join(r.label for r in sorted(plan.external_reads)) or "nothing"
            _reject(
                project,
                plan,
                f"`schedule: data` but no other pipeline writes what this one reads ({reads}); "
                "it would never run — use a time schedule or `data: {any_of: [...]}`",
                ("schedule",),
            )


def _check_pipeline_cycles(project: Project) -> None:
    graph = {p.id: project.upstream_pipelines(p) for p in project.plans.values() if p.is_data_scheduled}
    graph = {node: {d for d in deps if d in graph} for node, deps in graph.items()}
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        cycle = exc.args[1]
        for pipeline_id in dict.fromkeys(cycle):
            _reject(
                project,
                project.plans[pipeline_id],
                f"data-scheduled pipelines form a cycle: {' → '.join(reversed(cycle))}; each would wait for the other",
                ("schedule",),
            )


def _warn_unproduced_reads(project: Project) -> None:
    writers = project.writers
    for plan in project.plans.values():
        for step in plan.tasks():
            for ref in sorted(step.reads):
                if ref not in writers:
                    project.warnings.append(
                        (
                            str(plan.parsed.path),
                            plan.parsed.problem(
                                f"step `{step.id}` reads {ref.label}, which no pipeline writes; fine for data "
                                "loaded outside these pipelines",
                                step.location,
                                key=True,
                            ),
                        )
                    )


def _reject(project: Project, plan: PipelinePlan, message: str, location: tuple[str, ...]) -> None:
    project.plans.pop(plan.id, None)
    project.errors.append(PipelineSpecError(str(plan.parsed.path), [plan.parsed.problem(message, location)]))
