"""Planned pipelines → their compiled form (:mod:`airflow_osds.factory.compiled`): no Airflow object made.

Everything a DAG needs is decided here, once per change of the inputs: task arguments
from the step settings, Assets from the data each step reads and writes, the schedule
(with the Assets of ``schedule: data``), callbacks, and each block's own task(s).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow_osds.assets import DataRef, parse_table
from airflow_osds.exceptions import PipelineSpecError
from airflow_osds.factory.blocks import BLOCKS
from airflow_osds.factory.compiled import (
    AssetOf,
    Call,
    CompiledPipeline,
    CompiledProject,
    GroupNode,
    Node,
    OutputOf,
    Ref,
    StepLocation,
)
from airflow_osds.factory.plan import PipelinePlan, StepPlan, resolve_step_name, step_context
from airflow_osds.factory.project import Project
from airflow_osds.factory.spec import RUN_PRESETS, DataCondition, ParamSpec, PipelineSpec
from airflow_osds.factory.types import NotifierSpec

__all__ = ["compile_pipeline", "compile_project"]

_CALLBACK_ARGS = {"on_failure": "on_failure_callback", "on_retry": "on_retry_callback",
                  "on_success": "on_success_callback", "on_execute": "on_execute_callback"}
_PASS_THROUGH = ("retries", "retry_delay", "retry_exponential_backoff", "max_retry_delay", "execution_timeout",
                 "pool", "queue", "priority_weight")


def compile_project(project: Project) -> CompiledProject:
    """Compile every valid pipeline; one that fails to compile becomes that file's error."""
    compiled = CompiledProject(folder=str(project.folder), pipelines={}, errors=list(project.errors),
                               warnings=list(project.warnings), files=[str(f) for f in project.files])
    for plan in project.plans.values():
        try:
            compiled.pipelines[plan.id] = compile_pipeline(plan, project)
        except PipelineSpecError as exc:
            compiled.errors.append(exc)
        except Exception as exc:  # a block's defect: this pipeline's problem, never the folder's
            message = f"internal error while compiling this pipeline ({type(exc).__name__}: {exc}); please report it"
            compiled.errors.append(PipelineSpecError(str(plan.parsed.path), [plan.parsed.problem(message)]))
    return compiled


def compile_pipeline(plan: PipelinePlan, project: Project) -> CompiledPipeline:
    nodes: dict[str, Node] = {}
    top: list[Node] = []
    for step in plan.steps.values():  # parents come before their children
        node = _group_node(plan, step) if step.is_group else _task_node(plan, step, project)
        nodes[step.id] = node
        parent = nodes[step.parent] if step.parent else None
        (parent.children if isinstance(parent, GroupNode) else top).append(node)
    edges = [(up, node) for node, ups in plan.upstream.items() for up in sorted(ups)]
    edges.sort(key=lambda e: plan.steps[e[0]].is_group or plan.steps[e[1]].is_group)
    return CompiledPipeline(
        dag_id=plan.id, file=str(plan.parsed.path), dag_kwargs=_dag_kwargs(plan, project), nodes=top, edges=edges,
        doc_md=_doc(plan),
    )


def _group_node(plan: PipelinePlan, step: StepPlan) -> GroupNode:
    return GroupNode(
        id=step.id, group_id=step.id.rsplit(".", 1)[-1], tooltip=step.spec.group.tooltip,
        where=StepLocation(str(plan.parsed.path), step.location),
    )


def _task_node(plan: PipelinePlan, step: StepPlan, project: Project) -> Node:
    block_type = BLOCKS[step.spec.block_name]
    assert block_type.compile is not None
    ctx = step_context(plan.parsed, step)
    ctx.task_kwargs = _task_kwargs(step)
    ctx.reads = step.reads
    ctx.output_of = lambda name: OutputOf(_resolve(name, step, plan))
    try:
        return block_type.compile(step.spec.block, ctx)
    except (OSError, ValueError) as exc:  # what the block read changed or is refused: the step's error
        raise PipelineSpecError(str(plan.parsed.path), [plan.parsed.problem(str(exc), step.location, key=True)]) from exc
    finally:
        project.dependencies |= ctx.dependencies


def _resolve(name: str, step: StepPlan, plan: PipelinePlan) -> str:
    resolved = resolve_step_name(name, step.parent, plan.steps)
    assert resolved is not None  # checked while planning
    return resolved


def _task_kwargs(step: StepPlan) -> dict[str, Any]:
    kwargs: dict[str, Any] = {k: step.settings[k] for k in _PASS_THROUGH if step.settings.get(k) is not None}
    callbacks = step.settings.get("callbacks")
    if callbacks is not None:
        for event, arg in _CALLBACK_ARGS.items():
            entries = getattr(callbacks, event)
            if entries:
                kwargs[arg] = [_callback(entry) for entry in entries]
    if step.spec.trigger_rule:
        kwargs["trigger_rule"] = step.spec.trigger_rule
    if step.spec.doc:
        kwargs["doc_md"] = step.spec.doc
    if step.writes:
        kwargs["outlets"] = [AssetOf(ref) for ref in sorted(step.writes)]
    if step.reads:
        kwargs["inlets"] = [AssetOf(ref) for ref in sorted(step.reads)]
    return kwargs


def _callback(entry: Any) -> Ref | Call:
    if isinstance(entry, NotifierSpec):
        return Call(entry.notifier, kwargs=dict(entry.args))
    return Ref(entry)


def _dag_kwargs(plan: PipelinePlan, project: Project) -> dict[str, Any]:
    spec = plan.parsed.spec
    tz = spec.timezone or "UTC"
    kwargs: dict[str, Any] = {
        "dag_id": spec.pipeline,
        "description": spec.description or None,
        "schedule": _schedule(plan, project, tz),
        "start_date": _datetime(spec.start_date, tz),
        # A date as end_date includes that whole day.
        "end_date": _datetime(spec.end_date, tz, end_of_day=True),
        "catchup": bool(spec.catchup),
        "tags": list(dict.fromkeys(["osds", *spec.tags])),
        # A step runs when none of its upstreams failed and at least one succeeded: a dbt step fed by a
        # Snowplow load and a Singer sync must still run in the hour when only one of them had new
        # data (the other skips, saying so). With one upstream this is Airflow's own all_success.
        "default_args": {"owner": ",".join(spec.owners) or "osds", "trigger_rule": "none_failed_min_one_success"},
        "params": _params(spec),
        "template_searchpath": [str(plan.parsed.folder)],
        # A continuous timetable refuses Airflow's default (16 runs at a time).
        "max_active_runs": spec.max_active_runs or (1 if spec.schedule is not None and spec.schedule.continuous else None),
        "dagrun_timeout": spec.dagrun_timeout,
    }
    if spec.callbacks is not None:
        if spec.callbacks.on_failure:
            kwargs["on_failure_callback"] = [_callback(c) for c in spec.callbacks.on_failure]
        if spec.callbacks.on_success:
            kwargs["on_success_callback"] = [_callback(c) for c in spec.callbacks.on_success]
    return {k: v for k, v in kwargs.items() if v is not None}


def _datetime(value: dt.date | dt.datetime | None, tz: str, *, end_of_day: bool = False) -> Any:
    if value is None:
        return None
    import pendulum

    if isinstance(value, dt.datetime):
        return pendulum.instance(value, tz=value.tzinfo or pendulum.timezone(tz))
    day = pendulum.datetime(value.year, value.month, value.day, tz=tz)
    return day.end_of("day") if end_of_day else day


def _params(spec: PipelineSpec) -> dict[str, Any] | None:
    if not spec.params:
        return None
    out: dict[str, Any] = {}
    for name, value in spec.params.items():
        if isinstance(value, ParamSpec):
            schema = value.model_dump(exclude={"default"}, exclude_none=True)
            out[name] = Call("airflow.sdk.Param", (value.default,), schema)
        else:
            out[name] = value
    return out


def _schedule(plan: PipelinePlan, project: Project, tz: str) -> Any:
    schedule = plan.parsed.spec.schedule
    if schedule is None:
        return None
    timetable = _timetable(schedule.cron, schedule.every, tz)
    if schedule.data is None:
        return timetable
    assets = _data_condition(schedule.data, plan, project)
    if timetable is None:
        return assets
    return Call("airflow.sdk.AssetOrTimeSchedule", kwargs={"timetable": timetable, "assets": assets})


def _timetable(cron: str | None, every: dt.timedelta | None, tz: str) -> Call | str | None:
    if cron in RUN_PRESETS:
        return cron  # Airflow makes its ContinuousTimetable / OnceTimetable from the preset itself
    if cron is not None:
        return Call("airflow.sdk.CronTriggerTimetable", (cron,), {"timezone": tz})
    if every is not None:
        return Call("airflow.sdk.DeltaTriggerTimetable", (every,))
    return None


def _data_condition(data: Any, plan: PipelinePlan, project: Project) -> Call:
    if isinstance(data, DataCondition):
        items = data.all_of if data.all_of is not None else data.any_of
        parts = [
            _data_condition(item, plan, project) if isinstance(item, DataCondition) else _asset(parse_table(item, conn_id=plan.warehouse))
            for item in items or []
        ]
        return Call("airflow.sdk.AssetAll" if data.all_of is not None else "airflow.sdk.AssetAny", tuple(parts))
    assets = [_asset(ref) for ref in project.upstream_data(plan)]
    return Call("airflow.sdk.AssetAll" if data == "all" else "airflow.sdk.AssetAny", tuple(assets))


def _asset(ref: DataRef) -> AssetOf:
    return AssetOf(ref)


def _doc(plan: PipelinePlan) -> str:
    spec = plan.parsed.spec
    lines = [spec.doc or spec.description or "", "", f"Built by airflow-osds from `{plan.parsed.path.name}`."]
    if plan.writes:
        lines.append("Writes: " + ", ".join(f"`{r.label}`" for r in sorted(plan.writes)) + ".")
    return "\n".join(lines).strip()
