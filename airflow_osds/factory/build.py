"""A planned pipeline → an Airflow DAG: tasks from blocks, edges from the plan, Assets from the data."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from airflow_osds.assets import TableRef, parse_table, table_asset
from airflow_osds.factory.blocks import BLOCKS, BuildEnv
from airflow_osds.factory.imports import import_dotted
from airflow_osds.factory.plan import PipelinePlan, StepPlan, resolve_step_name
from airflow_osds.factory.spec import DataCondition, ParamSpec, PipelineSpec
from airflow_osds.factory.types import NotifierSpec

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from airflow_osds.factory.project import Project

__all__ = ["build_dag"]

_CALLBACK_ARGS = {"on_failure": "on_failure_callback", "on_retry": "on_retry_callback",
                  "on_success": "on_success_callback", "on_execute": "on_execute_callback"}
_PASS_THROUGH = ("retries", "retry_delay", "retry_exponential_backoff", "max_retry_delay", "execution_timeout",
                 "pool", "queue", "priority_weight")


def build_dag(plan: PipelinePlan, project: Project, *, register: bool = True) -> DAG:
    """Build the DAG; ``register=False`` keeps Airflow from collecting it from the calling DAG file."""
    from airflow.sdk import DAG, TaskGroup

    with DAG(**_dag_kwargs(plan, project), auto_register=register) as dag:
        nodes: dict[str, Any] = {}
        groups: dict[str | None, Any] = {None: None}
        assets = _Assets()
        for step in plan.steps.values():  # parents come before their children
            if step.is_group:
                local_id = step.id.rsplit(".", 1)[-1]
                nodes[step.id] = groups[step.id] = TaskGroup(
                    group_id=local_id, tooltip=step.spec.group.tooltip, parent_group=groups[step.parent]
                )
                continue
            with _in_group(groups[step.parent]):
                nodes[step.id] = _build_task(plan, step, nodes, assets)
        # Task-to-task edges first: a TaskGroup edge attaches to the group's roots and
        # leaves as they are when it is set.
        edges = [(up, node) for node, ups in plan.upstream.items() for up in sorted(ups)]
        edges.sort(key=lambda e: plan.steps[e[0]].is_group or plan.steps[e[1]].is_group)
        for upstream_id, node_id in edges:
            nodes[upstream_id] >> nodes[node_id]
    dag.doc_md = _doc(plan)
    return dag


class _in_group:
    """Enter a TaskGroup if there is one (``None`` = the DAG's root)."""

    def __init__(self, group: Any) -> None:
        self.group = group

    def __enter__(self) -> None:
        if self.group is not None:
            self.group.__enter__()

    def __exit__(self, *exc: object) -> None:
        if self.group is not None:
            self.group.__exit__(*exc)


def _build_task(plan: PipelinePlan, step: StepPlan, nodes: dict[str, Any], assets: _Assets) -> Any:
    block_type = BLOCKS[step.spec.block_name]
    assert block_type.build is not None
    env = BuildEnv(
        task_id=step.id.rsplit(".", 1)[-1],
        warehouse=step.warehouse,
        pipeline_dir=plan.parsed.path.parent,
        task_kwargs=_task_kwargs(step, assets),
        output_of=lambda name: nodes[_resolve(name, step, plan)].output,
    )
    return block_type.build(step.spec.block, env)


def _resolve(name: str, step: StepPlan, plan: PipelinePlan) -> str:
    resolved = resolve_step_name(name, step.parent, plan.steps)
    assert resolved is not None  # checked while planning
    return resolved


class _Assets(dict[TableRef, Any]):
    """The Assets of one DAG: a writer's outlet and its readers' inlets share one object."""

    def __missing__(self, ref: TableRef) -> Any:
        asset = self[ref] = table_asset(ref)
        return asset


def _task_kwargs(step: StepPlan, assets: _Assets) -> dict[str, Any]:
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
        kwargs["outlets"] = [assets[ref] for ref in sorted(step.writes)]
    if step.reads:
        kwargs["inlets"] = [assets[ref] for ref in sorted(step.reads)]
    return kwargs


def _callback(entry: Any) -> Any:
    if isinstance(entry, NotifierSpec):
        return import_dotted(entry.notifier)(**entry.args)
    return import_dotted(entry)


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
        "default_args": {"owner": ",".join(spec.owners) or "osds"},
        "params": _params(spec),
        "template_searchpath": [str(plan.parsed.path.parent)],
        "max_active_runs": spec.max_active_runs,
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
    from airflow.sdk import Param

    out: dict[str, Any] = {}
    for name, value in spec.params.items():
        if isinstance(value, ParamSpec):
            schema = value.model_dump(exclude={"default"}, exclude_none=True)
            out[name] = Param(value.default, **schema)
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
    from airflow.sdk import AssetOrTimeSchedule

    return AssetOrTimeSchedule(timetable=timetable, assets=assets)


def _timetable(cron: str | None, every: dt.timedelta | None, tz: str) -> Any:
    if cron is not None:
        from airflow.sdk import CronTriggerTimetable

        return CronTriggerTimetable(cron, timezone=tz)
    if every is not None:
        from airflow.sdk import DeltaTriggerTimetable

        return DeltaTriggerTimetable(every)
    return None


def _data_condition(data: Any, plan: PipelinePlan, project: Project) -> Any:
    from airflow.sdk import AssetAll, AssetAny

    if isinstance(data, DataCondition):
        items = data.all_of if data.all_of is not None else data.any_of
        parts = [
            _data_condition(item, plan, project) if isinstance(item, DataCondition) else table_asset(_table(item, plan))
            for item in items or []
        ]
        return AssetAll(*parts) if data.all_of is not None else AssetAny(*parts)
    assets = [table_asset(ref) for ref in project.upstream_tables(plan)]
    return AssetAll(*assets) if data == "all" else AssetAny(*assets)


def _table(name: str, plan: PipelinePlan) -> TableRef:
    return parse_table(name, conn_id=plan.warehouse)


def _doc(plan: PipelinePlan) -> str:
    spec = plan.parsed.spec
    lines = [spec.doc or spec.description or "", "", f"Built by airflow-osds from `{plan.parsed.path.name}`."]
    if plan.writes:
        lines.append("Writes: " + ", ".join(f"`{r.qualified}`" for r in sorted(plan.writes)) + ".")
    return "\n".join(lines).strip()
