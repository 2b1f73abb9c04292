"""A validated pipeline → its plan: flattened steps, the tables each reads and writes, the edges.

Pure logic, no Airflow: this is what ``osds validate`` checks and what the DAG builder
follows. Inside one pipeline a step that reads a table runs after every step that writes
it; ``after:`` adds edges no data expresses (and wins over a data edge in the other
direction, which is how two steps that both read and write a table are ordered).
"""

from __future__ import annotations

import graphlib
from dataclasses import dataclass, field
from typing import Any

from pathlib import Path

from airflow_osds.assets import DataRef, TableRef, data_ref_from_yaml, parse_table
from airflow_osds.exceptions import PipelineSpecError, SpecProblem
from airflow_osds.factory.blocks import BLOCKS, NO_DATA, FieldProblem, StepContext, no_data
from airflow_osds.factory.compiled import StepLocation
from airflow_osds.factory.imports import check_dotted
from airflow_osds.factory.loader import ParsedPipeline
from airflow_osds.factory.spec import DataCondition, StepSpec, TaskSettings
from airflow_osds.factory.types import NotifierSpec

__all__ = ["PipelinePlan", "StepPlan", "plan_pipeline", "resolve_step_name", "step_context"]

_SETTING_FIELDS = tuple(TaskSettings.model_fields)


@dataclass
class StepPlan:
    """One step (a task, or a group of steps) with everything resolved."""

    id: str  # full id: "group.step" inside groups (Airflow's task id)
    spec: Any  # StepSpec
    location: tuple[Any, ...]  # where the step sits in the YAML document
    parent: str | None
    settings: dict[str, Any]  # effective task settings: step > enclosing groups > pipeline defaults
    reads: frozenset[DataRef] = frozenset()
    writes: frozenset[DataRef] = frozenset()
    after: set[str] = field(default_factory=set)
    children: list[str] = field(default_factory=list)
    reads_pipeline_tables: bool = False  # see DataIO.reads_pipeline_tables
    # A field, not a property of `spec`: planning and compiling ask it ~10 times per step.
    is_group: bool = field(init=False)

    def __post_init__(self) -> None:
        self.is_group = self.spec.group is not None

    @property
    def warehouse(self) -> str:
        return str(self.settings["warehouse"])


@dataclass
class PipelinePlan:
    parsed: ParsedPipeline
    steps: dict[str, StepPlan]
    upstream: dict[str, set[str]]  # node id → node ids it runs after (nodes are tasks or groups)
    default_warehouse: str
    warnings: list[SpecProblem] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.parsed.spec.pipeline

    @property
    def warehouse(self) -> str:
        """The pipeline's warehouse connection id (from `defaults`, else the provider's default)."""
        return str(self.parsed.spec.defaults.warehouse or self.default_warehouse)

    @property
    def is_data_scheduled(self) -> bool:
        """True for `schedule: data` (all/any of the tables other pipelines write)."""
        schedule = self.parsed.spec.schedule
        return schedule is not None and schedule.data in ("all", "any")

    def tasks(self) -> list[StepPlan]:
        return [s for s in self.steps.values() if not s.is_group]

    @property
    def writes(self) -> frozenset[DataRef]:
        return frozenset(ref for s in self.tasks() for ref in s.writes)

    @property
    def reads(self) -> frozenset[DataRef]:
        return frozenset(ref for s in self.tasks() for ref in s.reads)

    @property
    def external_reads(self) -> frozenset[DataRef]:
        """Data read here that no step of this pipeline writes."""
        return self.reads - self.writes


def plan_pipeline(
    parsed: ParsedPipeline, *, default_warehouse: str, dependencies: set[Path] | None = None
) -> PipelinePlan:
    """Plan a parsed pipeline; raise ``PipelineSpecError`` with every located problem.

    :param dependencies: collects the files planning reads (SQL files, dbt manifests), even
        when the pipeline turns out invalid: a change to one of them may fix it.
    """
    problems: list[SpecProblem] = []
    spec = parsed.spec
    base = {name: getattr(spec.defaults, name) for name in _SETTING_FIELDS}
    base["warehouse"] = base["warehouse"] or default_warehouse
    steps: dict[str, StepPlan] = {}
    _flatten(spec.steps, ("steps",), None, base, steps)
    warnings: list[SpecProblem] = []
    dependencies = set() if dependencies is None else dependencies
    for step in steps.values():
        if step.is_group:
            continue
        if _check_files(parsed, step, dependencies, problems):  # no use reading what cannot be read
            _step_data(parsed, step, dependencies, problems, warnings)
        _check_imports(parsed, step, problems)
    _add_pipeline_tables(steps)
    _resolve_after(parsed, steps, problems)
    _check_callbacks(parsed, problems)
    _check_schedule_tables(parsed, base["warehouse"], problems)
    upstream = _edges(steps)
    if not problems:
        _check_cycles(parsed, steps, upstream, problems)
    if problems:
        raise PipelineSpecError(str(parsed.path), problems)
    return PipelinePlan(parsed=parsed, steps=steps, upstream=upstream, default_warehouse=default_warehouse, warnings=warnings)


def _flatten(
    specs: dict[str, StepSpec], location: tuple[Any, ...], parent: StepPlan | None, inherited: dict[str, Any],
    out: dict[str, StepPlan],
) -> None:
    for local_id, spec in specs.items():
        settings = {name: inherited[name] if (value := getattr(spec, name)) is None else value for name in _SETTING_FIELDS}
        block_warehouse = BLOCKS[spec.block_name].warehouse_of(spec.block)
        if block_warehouse:
            settings["warehouse"] = block_warehouse
        step_id = f"{parent.id}.{local_id}" if parent else local_id
        step = StepPlan(id=step_id, spec=spec, location=(*location, local_id), parent=parent.id if parent else None, settings=settings)
        out[step_id] = step
        if parent is not None:
            parent.children.append(step_id)
        if spec.group is not None:
            _flatten(spec.group.steps, (*location, local_id, "group", "steps"), step, settings, out)


def step_context(parsed: ParsedPipeline, step: StepPlan) -> StepContext:
    """The context a block is planned and compiled in."""
    return StepContext(
        step_id=step.id,
        task_id=step.id.rsplit(".", 1)[-1],
        warehouse=step.warehouse,
        pipeline_dir=parsed.folder,
        where=StepLocation(str(parsed.path), step.location),
    )


def _check_files(parsed: ParsedPipeline, step: StepPlan, dependencies: set[Path], problems: list[SpecProblem]) -> bool:
    """Every path the block names (``file_fields``) must exist; text files must also read as UTF-8."""
    block_type = BLOCKS[step.spec.block_name]
    before = len(problems)
    for file_field in block_type.file_fields:
        value = getattr(step.spec.block, file_field.field, None)
        if not value:
            continue
        path = (parsed.folder / value).resolve()
        where = (*step.location, step.spec.block_name, file_field.field)
        dependencies.add(path)
        try:
            if file_field.text:
                path.read_bytes().decode("utf-8")
            elif not path.exists():
                raise FileNotFoundError(2, "No such file or directory", str(path))
        except OSError as exc:
            problems.append(parsed.problem(f"cannot read {path}: {exc.strerror}", where))
        except UnicodeDecodeError as exc:
            problems.append(parsed.problem(f"{path} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x}); save it as UTF-8", where))
    return len(problems) == before


def _step_data(
    parsed: ParsedPipeline, step: StepPlan, dependencies: set[Path], problems: list[SpecProblem], warnings: list[SpecProblem]
) -> None:
    spec = step.spec
    block_type = BLOCKS[spec.block_name]
    derived = NO_DATA
    if (spec.reads is None or spec.writes is None) and block_type.data is not no_data:  # else nothing to derive
        ctx = step_context(parsed, step)
        try:
            derived = block_type.data(spec.block, ctx)
        except Exception as exc:  # whatever a block raises, it is this step's problem, located
            problems.append(parsed.problem(_data_failure(exc), _failure_location(step, block_type, exc)))
            return
        finally:
            dependencies |= ctx.dependencies
        for note in derived.notes:
            warnings.append(parsed.problem(f"step `{step.id}`: {note}", (*step.location, spec.block_name)))
    step.reads = _refs(parsed, step, "reads", derived.reads, problems)
    step.writes = _refs(parsed, step, "writes", derived.writes, problems)
    step.reads_pipeline_tables = derived.reads_pipeline_tables and spec.reads is None


def _add_pipeline_tables(steps: dict[str, StepPlan]) -> None:
    """Steps that read what the pipeline writes get every table the other steps write (not the steps that
    run after them by `after:`, which would make a cycle)."""
    for step in steps.values():
        if not step.reads_pipeline_tables:
            continue
        later = {s.id for s in steps.values() if any(resolve_step_name(name, s.parent, steps) == step.id
                                                     for name in s.spec.after)}
        step.reads = step.reads | frozenset(
            ref for other in steps.values() if other.id != step.id and other.id not in later and not other.is_group
            for ref in other.writes if isinstance(ref, TableRef))


def _data_failure(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename:
        return f"cannot read {exc.filename}: {exc.strerror}"
    return str(exc) if isinstance(exc, (OSError, ValueError)) else f"{type(exc).__name__}: {exc}"


def _failure_location(step: StepPlan, block_type: Any, exc: BaseException) -> tuple[Any, ...]:
    """The field the failure names, else the file field it names, else the first file field, else the block."""
    if isinstance(exc, FieldProblem):
        return (*step.location, step.spec.block_name, *exc.path)
    fields = [f.field for f in block_type.file_fields]
    filename = str(getattr(exc, "filename", "") or "")
    named = [f for f in fields if getattr(step.spec.block, f, None) and str(getattr(step.spec.block, f)) in filename]
    chosen = (named or [f for f in fields if getattr(step.spec.block, f, None)] or [None])[0]
    return (*step.location, step.spec.block_name, *([chosen] if chosen else []))


def _refs(
    parsed: ParsedPipeline, step: StepPlan, key: str, derived: frozenset[Any], problems: list[SpecProblem]
) -> frozenset[DataRef]:
    """The step's explicit ``reads:``/``writes:`` if given (located per entry), else what its block derived."""
    explicit = getattr(step.spec, key)
    entries = list(enumerate(explicit)) if explicit is not None else [(None, item) for item in sorted(derived, key=str)]
    refs = set()
    for i, item in entries:
        try:
            refs.add(item if isinstance(item, DataRef) else
                     data_ref_from_yaml(item, conn_id=step.warehouse, base_dir=parsed.folder))
        except ValueError as exc:
            problems.append(parsed.problem(str(exc), (*step.location, key, i) if i is not None else step.location))
    return frozenset(refs)


def _check_imports(parsed: ParsedPipeline, step: StepPlan, problems: list[SpecProblem]) -> None:
    block_type = BLOCKS[step.spec.block_name]
    where = (*step.location, step.spec.block_name)
    failed = False
    for key, (path, must_be) in block_type.dotted(step.spec.block).items():
        problem = check_dotted(path, must_be)
        if problem:
            failed = True
            problems.append(parsed.problem(problem, (*where, key)))
    if not failed:
        try:
            checked = block_type.check(step.spec.block)
        except Exception as exc:  # a block's own check failing is still this step's problem
            checked = [((), f"checking the block failed: {type(exc).__name__}: {exc}")]
        problems.extend(parsed.problem(message, (*where, *relative), key=True) for relative, message in checked)
    callbacks = step.spec.callbacks
    if callbacks is not None:
        _check_callback_lists(parsed, callbacks, (*step.location, "callbacks"), problems)


def _check_callbacks(parsed: ParsedPipeline, problems: list[SpecProblem]) -> None:
    spec = parsed.spec
    if spec.callbacks is not None:
        _check_callback_lists(parsed, spec.callbacks, ("callbacks",), problems)
    if spec.defaults.callbacks is not None:
        _check_callback_lists(parsed, spec.defaults.callbacks, ("defaults", "callbacks"), problems)


def _check_callback_lists(parsed: ParsedPipeline, callbacks: Any, location: tuple[Any, ...], problems: list[SpecProblem]) -> None:
    for event in type(callbacks).model_fields:
        for i, entry in enumerate(getattr(callbacks, event)):
            notifier = isinstance(entry, NotifierSpec)
            problem = check_dotted(entry.notifier if notifier else entry, "class" if notifier else "callable")
            if problem:
                problems.append(parsed.problem(problem, (*location, event, i)))


def _check_schedule_tables(parsed: ParsedPipeline, warehouse: str, problems: list[SpecProblem]) -> None:
    schedule = parsed.spec.schedule
    if schedule is None or not isinstance(schedule.data, DataCondition):
        return

    def walk(condition: DataCondition, location: tuple[Any, ...]) -> None:
        key = "all_of" if condition.all_of is not None else "any_of"
        for i, item in enumerate(getattr(condition, key)):
            if isinstance(item, DataCondition):
                walk(item, (*location, key, i))
                continue
            try:
                parse_table(item, conn_id=warehouse)
            except ValueError as exc:
                problems.append(parsed.problem(str(exc), (*location, key, i)))

    walk(schedule.data, ("schedule", "data"))


def _resolve_after(parsed: ParsedPipeline, steps: dict[str, StepPlan], problems: list[SpecProblem]) -> None:
    for step in steps.values():
        names = list(step.spec.after) + BLOCKS[step.spec.block_name].mapped_from(step.spec.block)
        for i, name in enumerate(names):
            target = resolve_step_name(name, step.parent, steps)
            if target is None or target == step.id or step.id.startswith(f"{target}."):
                where = (*step.location, "after", i) if i < len(step.spec.after) else (*step.location, step.spec.block_name, "expand")
                known = ", ".join(s for s in steps if s != step.id)
                reason = "cannot run after itself or its own group" if target else f"names no step; steps are: {known}"
                problems.append(parsed.problem(f"`{name}` {reason}", where))
            else:
                step.after.add(target)


def resolve_step_name(name: str, parent: str | None, steps: dict[str, StepPlan]) -> str | None:
    """A sibling's short id first, then the enclosing groups', then a full id."""
    scope = parent
    while scope is not None:
        if f"{scope}.{name}" in steps:
            return f"{scope}.{name}"
        scope = steps[scope].parent
    return name if name in steps else None


def _edges(steps: dict[str, StepPlan]) -> dict[str, set[str]]:
    writers: dict[DataRef, list[str]] = {}
    for step in steps.values():
        for ref in step.writes:
            writers.setdefault(ref, []).append(step.id)
    upstream: dict[str, set[str]] = {step_id: set(step.after) for step_id, step in steps.items()}
    for step in steps.values():
        for ref in step.reads:
            for writer in writers.get(ref, ()):
                if writer != step.id and step.id not in steps[writer].after:
                    upstream[step.id].add(writer)
    return upstream


def _check_cycles(parsed: ParsedPipeline, steps: dict[str, StepPlan], upstream: dict[str, set[str]], problems: list[SpecProblem]) -> None:
    graph: dict[str, set[str]] = {s.id: set() for s in steps.values() if not s.is_group}
    for node, deps in upstream.items():
        for target in _leaves(node, steps):
            for dep in deps:
                graph[target] |= set(_leaves(dep, steps))
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        cycle = exc.args[1]
        first = steps[cycle[0]]
        problems.append(
            parsed.problem(
                f"steps form a cycle: {' → '.join(reversed(cycle))}; a step reading a table another step writes runs "
                "after it — state the intended order with `after:` or narrow `reads:`/`writes:`",
                first.location,
                key=True,
            )
        )


def _leaves(node: str, steps: dict[str, StepPlan]) -> list[str]:
    step = steps[node]
    if not step.is_group:
        return [node]
    return [leaf for child in step.children for leaf in _leaves(child, steps)]
