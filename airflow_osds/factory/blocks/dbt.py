"""``dbt``: a dbt project rendered from its manifest into tasks, one Asset per model.

At parse time only ``target/manifest.json`` is read (written by ``osds dbt-parse``, see
:mod:`airflow_osds.dbt.fingerprint`): no dbt import, no ``dbt ls``, no subprocess. The
step reads the dbt sources (and models outside the selection) and writes every selected
model, seed and snapshot, so it wires itself after the steps and pipelines that load its
sources, with no ``after:``.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from airflow_osds.exceptions import OsdsError
from airflow_osds.assets import parse_table
from airflow_osds.factory.blocks import BlockType, DataIO, FieldProblem, FileField, ProviderModules, StepContext
from airflow_osds.factory.compiled import AssetOf, GroupNode, TaskNode
from airflow_osds.factory.types import Duration, Strict

__all__ = ["DbtBlock", "RenderedDbt", "render"]


class WaitForSources(Strict):
    """How the step waits for fresh sources (dbt's own `freshness` thresholds decide)."""

    poke_interval: Duration = Field(dt.timedelta(minutes=5), description="Time between checks (in the triggerer).")
    timeout: Duration = Field(dt.timedelta(hours=6), description="Fail after waiting this long.")
    allow_warn: bool = Field(False, description="Count dbt's `warn` state as fresh enough.")


class DbtBlock(Strict):
    """Run a dbt project: one task per model (with its tests), per folder, or one for all."""

    project: str = Field(description="dbt project directory, relative to the pipeline file.", examples=["../dbt/web_analytics"])
    select: list[str] = Field(default_factory=list, description="dbt selectors (`path:`, `tag:`, `+model`, `model+`…).")
    exclude: list[str] = Field(default_factory=list, description="dbt selectors to leave out.")
    wait_for_sources: bool | WaitForSources = Field(
        False,
        description="Start with a deferrable sensor that waits, in the triggerer, until the dbt sources this step "
        "reads are fresh (their `loaded_at_field` and `freshness` in the project): `true` or the sensor's settings.",
    )
    state: str | None = Field(
        None,
        description="Where the manifest of the step's last successful run is kept, for `state:` selectors "
        "(`select: [state:modified+]`): `warehouse` (the osds_state schema) or a folder or object-store URL.",
        examples=["warehouse", "s3://dbt-artifacts/state/web_analytics/"],
    )
    selector: str | None = Field(
        None,
        description="A YAML selector of the project's selectors.yml (instead of `select`/`exclude`). Without "
        "either, the project's `default: true` selector applies, as in dbt.",
        examples=["nightly"],
    )
    granularity: Literal["model", "folder", "selector", "project"] = Field(
        "model", description="`model`: a task per model/seed/snapshot with its tests; `folder`: a task per folder; "
        "`selector`: a task per entry of `groups`; `project`: one `dbt build`."
    )
    groups: dict[str, list[str]] = Field(
        default_factory=dict,
        description="With `selector`: task name → dbt selectors; a node goes to the first group selecting it.",
        examples=[{"web": ["tag:web"], "crm": ["tag:crm"], "rest": ["path:models"]}],
    )
    folder_depth: int = Field(
        1, ge=1, description="With `folder`: how many folders under the resource path make a group (1: `models/marts`)."
    )
    vars: dict[str, Any] = Field(default_factory=dict, description="dbt `--vars` (templated; never secrets).")
    env_vars: dict[str, str] | list[str] = Field(
        default_factory=dict,
        description="Environment variables for the project's `env_var()`: values, or names passed on from the "
        "worker's environment (the way to give dbt a secret).",
        examples=[["SNOWPLOW_API_TOKEN"], {"DBT_TARGET_ENV": "prod"}],
    )
    full_refresh: bool = Field(False, description="`--full-refresh`.")
    target_schema: str | None = Field(
        None,
        description="Schema dbt builds into; must be the one the manifest was parsed with "
        "(`osds dbt-parse --target-schema`), which is the default.",
    )
    threads: int = Field(4, ge=1, description="dbt threads.")
    executable: str | None = Field(None, description="A `dbt` executable or virtualenv to run dbt from (default: in process).")
    manifest: str | None = Field(None, description="manifest.json path (default: `<project>/target/manifest.json`).")
    sources: dict[str, str] = Field(
        default_factory=dict,
        description="dbt source → warehouse table, when a source's schema/identifier is not the table name the "
        "producer writes, e.g. `{snowplow.events: atomic.events}`.",
    )
    warehouse: str | None = Field(None, description="Connection id; overrides defaults.warehouse.")

    @field_validator("select", "exclude")
    @classmethod
    def _selector_syntax(cls, value: list[str]) -> list[str]:
        _check_selectors(value)
        return value

    @field_validator("groups")
    @classmethod
    def _group_selectors(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for name, selectors in value.items():
            if not re.match(r"^[A-Za-z][A-Za-z0-9_]*$", name):
                raise ValueError(f"group name {name!r} must start with a letter and use only letters, digits and _")
            _check_selectors(selectors)
        return value

    @model_validator(mode="after")
    def _groups_with_selector(self) -> DbtBlock:
        if (self.granularity == "selector") != bool(self.groups):
            raise ValueError("`granularity: selector` goes with `groups: {name: [selectors]}` (and only with it)")
        if self.selector is not None and (self.select or self.exclude):
            raise ValueError("give `selector` (a YAML selector) or `select`/`exclude`, not both: dbt refuses the mix")
        from airflow_osds.dbt.state import uses_state

        if uses_state(self.select):
            if self.granularity != "project":
                raise ValueError("`state:` selectors need `granularity: project`: what changed is known only when "
                                 "dbt runs, so the step is one task")
            if self.state is None:
                raise ValueError("`state:` selectors compare with a stored manifest: say where it is kept with "
                                 "`state: warehouse` (or a folder or object-store URL)")
        elif self.state is not None:
            raise ValueError("`state` is used by `state:` selectors, e.g. `select: [state:modified+]`; add one or drop it")
        return self


def _check_selectors(selectors: list[str]) -> None:
    from airflow_osds.dbt.errors import DbtSelectionError
    from airflow_osds.dbt.selection import parse_selectors

    try:
        parse_selectors(selectors)
    except DbtSelectionError as exc:
        raise ValueError(str(exc)) from None


@dataclass(frozen=True)
class RenderedDbt:
    """What a ``dbt`` step becomes: task groups, their nodes, tables read and written.

    It keeps no reference to the manifest, so a large one is freed before the DAG is built.
    """

    test_selectors: dict[str, str]  # unique id → exact selector of the tests the groups run
    parse: Any  # the ParseRecord the manifest was written with
    groups: dict[str, Any]
    nodes: dict[str, Any]
    reads: set[str]
    writes: dict[str, set[str]]  # group id → tables
    # Sources the selection reads, `source_name.table` → (warehouse table, freshness declared?).
    sources: dict[str, tuple[str, bool]]
    # group id → the tables its nodes and tests read that it does not build (its task's inlets).
    group_reads: dict[str, set[str]]


def _paths(block: DbtBlock, pipeline_dir: Path) -> tuple[Path, Path]:
    project = (pipeline_dir / block.project).resolve()
    manifest = (pipeline_dir / block.manifest).resolve() if block.manifest else project / "target" / "manifest.json"
    return project, manifest


# The planner (reads/writes) and the builder both need the rendering: do it once per process
# while the manifest, the project's files and the block stay the same.
_RENDERED: dict[tuple[Any, ...], RenderedDbt] = {}


def render(block: DbtBlock, pipeline_dir: Path, ctx: StepContext | None = None) -> RenderedDbt:
    """Read the manifest (cached per process) and render the selection; errors are ``OSError``/``ValueError``.

    With ``ctx``, the manifest, its fingerprint and the project's files become the step's
    dependencies (a changed model makes the manifest stale, so the step must be re-checked).
    """
    from airflow_osds.dbt.errors import DbtArtifactError
    from airflow_osds.dbt.fingerprint import FINGERPRINT_FILE, project_files, project_fingerprint, read_parse_record

    project, manifest_path = _paths(block, pipeline_dir)
    if ctx is not None:
        files = project_files(project) if project.is_dir() else []
        for path in {manifest_path, manifest_path.parent / FINGERPRINT_FILE, project, *files, *(f.parent for f in files)}:
            ctx.depend_on(path)
    fix = f"run `osds dbt-parse {project}`"
    if not manifest_path.is_file():
        raise FileNotFoundError(errno.ENOENT, f"no dbt manifest; {fix}", str(manifest_path))
    fingerprint = project_fingerprint(project)
    record = read_parse_record(manifest_path.parent)
    if record is None or record.fingerprint != fingerprint:
        raise ValueError(f"the dbt manifest {manifest_path} is older than the project's files; {fix}")
    _check_parse_settings(block, record, project)
    stat = manifest_path.stat()
    key = (str(manifest_path), stat.st_mtime_ns, stat.st_size, fingerprint, block.model_dump_json())
    rendered = _RENDERED.get(key)
    if rendered is None:
        if len(_RENDERED) > 64:
            _RENDERED.clear()
        try:
            rendered = _RENDERED[key] = _render(block, project, manifest_path, record)
        except DbtArtifactError as exc:  # not JSON, or not dbt's shape
            raise ValueError(f"{exc}; {fix}") from exc
    if block.wait_for_sources and not any(checkable for _, checkable in rendered.sources.values()):
        raise FieldProblem(
            "wait_for_sources",
            "none of the dbt sources this step reads declares `loaded_at_field` and `freshness` "
            f"({', '.join(sorted(rendered.sources)) or 'it reads no source'}); declare them in the project or drop it",
        )
    return rendered


def _render(block: DbtBlock, project: Path, manifest_path: Path, record: Any) -> RenderedDbt:
    from airflow_osds.dbt.artifacts import Manifest
    from airflow_osds.dbt.graph import group_nodes, node_selector, render_nodes

    # Not the in-process manifest cache: the compiled cache is what spares re-reading it.
    manifest = Manifest.from_path(manifest_path)
    try:
        selected = _selected(block, manifest, project)
        nodes = render_nodes(manifest, selected)
        assignment = _assignment(block, manifest, nodes) if block.granularity == "selector" else None
        groups = group_nodes(nodes, block.granularity, folder_depth=block.folder_depth, assignment=assignment)
    except OsdsError as exc:  # selection matching nothing, folder cycles: the spec's problem
        raise ValueError(str(exc)) from None
    writes = {
        gid: {f"{n.relation[0]}.{n.relation[1]}" for uid in g.nodes if (n := nodes[uid]).relation and n.relation[0]}
        for gid, g in groups.items()
    }
    test_selectors = {t: node_selector(manifest.nodes[t]) for g in groups.values() for t in g.tests}
    group_reads = {gid: set().union(*(_tables_read(uid, block, manifest) for uid in (*g.nodes, *g.tests))) - writes[gid]
                   for gid, g in groups.items()}
    return RenderedDbt(
        test_selectors, record, groups, nodes, _reads(block, manifest, nodes), writes, _sources(block, manifest, nodes),
        group_reads,
    )


def _schemas_built(unit: Any, rendered: RenderedDbt) -> list[str]:
    return sorted({n.relation[0] for uid in unit.nodes if (n := rendered.nodes[uid]).relation and n.relation[0]})


def _selected(block: DbtBlock, manifest: Any, project: Path) -> frozenset[str]:
    """What the step runs: its YAML selector, its select/exclude, else the project's default selector."""
    from airflow_osds.dbt.errors import DbtSelectionError
    from airflow_osds.dbt.selection import select_nodes
    from airflow_osds.dbt.yaml_selectors import default_selector, load_selectors, resolve_selector

    if block.select or block.exclude:
        return select_nodes(manifest, block.select or None, block.exclude or None)
    selectors = load_selectors(project)
    name = block.selector or (default.name if (default := default_selector(selectors)) else None)
    if name is None:
        return select_nodes(manifest)
    selected = resolve_selector(manifest, name, selectors)
    if not selected:
        raise DbtSelectionError(name, "this YAML selector selects no model, seed, snapshot or test")
    return selected


def _assignment(block: DbtBlock, manifest: Any, nodes: dict[str, Any]) -> dict[str, str]:
    """Rendered node → the first group (in YAML order) whose selectors pick it."""
    from airflow_osds.dbt.selection import select_nodes

    assignment: dict[str, str] = {}
    for name, selectors in block.groups.items():
        for uid in select_nodes(manifest, selectors):
            if uid in nodes:
                assignment.setdefault(uid, name)
    return assignment


def _sources(block: DbtBlock, manifest: Any, nodes: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """The dbt sources the selection reads (through ephemeral models too): their table (``sources:`` may map
    it) and whether dbt can check their freshness."""
    out = {}
    for uid in nodes:
        for parent, source in _upstream(uid, manifest):
            if parent in manifest.sources:
                out[f"{source.source_name}.{source.name}"] = (
                    _source_table(block, source), bool(source.loaded_at_field and source.freshness is not None))
    return out


def _source_table(block: DbtBlock, source: Any) -> str:
    """The warehouse table of a dbt source: ``sources:`` may map it, else its schema and identifier."""
    return block.sources.get(f"{source.source_name}.{source.name}") or f"{source.schema}.{source.identifier}"


def _upstream(uid: str, manifest: Any) -> Iterator[tuple[str, Any]]:
    """The sources and relation-backed models a node reads: its parents, and through an ephemeral parent
    (inlined into the node) what that one reads."""
    stack, seen = list(manifest.nodes[uid].depends_on), set()
    while stack:
        parent = stack.pop()
        if parent in seen:
            continue
        seen.add(parent)
        if (source := manifest.sources.get(parent)) is not None:
            yield parent, source
        elif (node := manifest.nodes.get(parent)) is not None:
            if node.is_ephemeral:
                stack.extend(node.depends_on)
            else:
                yield parent, node


def _tables_read(uid: str, block: DbtBlock, manifest: Any) -> set[str]:
    """The tables a node reads: its sources and the relations of its parents, through ephemeral models."""
    tables: set[str] = set()
    for parent, item in _upstream(uid, manifest):
        if parent in manifest.sources:
            tables.add(_source_table(block, item))
        elif item.relation and item.relation[0]:
            tables.add(f"{item.relation[0]}.{item.relation[1]}")
    return tables


def _reads(block: DbtBlock, manifest: Any, nodes: dict[str, Any]) -> set[str]:
    """Sources the selection depends on, and models outside it (through ephemeral models too)."""
    reads = {table for table, _ in _sources(block, manifest, nodes).values()}
    for uid in nodes:
        for parent, node in _upstream(uid, manifest):
            if parent in nodes or parent in manifest.sources:
                continue
            if node.relation and node.relation[0]:
                reads.add(f"{node.relation[0]}.{node.relation[1]}")
    return reads


def data(block: DbtBlock, ctx: StepContext) -> DataIO:
    rendered = render(block, ctx.pipeline_dir, ctx)
    return DataIO(reads=frozenset(rendered.reads), writes=frozenset(t for ts in rendered.writes.values() for t in ts))


def compile_group(block: DbtBlock, ctx: StepContext) -> GroupNode:
    """A task group: one ``DbtBuildOperator`` per rendered unit, wired as dbt's graph is."""
    rendered = render(block, ctx.pipeline_dir, ctx)
    project, manifest_path = _paths(block, ctx.pipeline_dir)
    common = ctx.member_settings
    group = GroupNode(id=ctx.step_id, group_id=ctx.task_id, where=ctx.where)
    ids: dict[str, str] = {}
    used_ids: set[str] = {_SENSOR_ID} if block.wait_for_sources else set()
    for gid, unit in rendered.groups.items():
        task_id = _task_id(gid, rendered, used_ids)
        ids[gid] = f"{ctx.step_id}.{task_id}"
        select, indirect = _selection(block, unit, rendered)
        kwargs = {
            "project_dir": str(project),
            "warehouse_conn_id": ctx.warehouse,
            "select": select,
            "exclude": [] if block.granularity != "project" else block.exclude,
            "vars": block.vars or None,
            **({"env_vars": block.env_vars} if block.env_vars else {}),
            "full_refresh": block.full_refresh,
            # The schema the manifest was parsed with: it named every relation (and Asset);
            # never the connection's, which could build the models elsewhere.
            "target_schema": rendered.parse.target_schema,
            "threads": block.threads,
            "dbt_executable": block.executable,
            "indirect_selection": indirect,
            **({"populate_cache": False} if block.granularity != "project" else {}),
            "parse_state": str(manifest_path.parent),  # every task starts from the recorded parse
            **({"state": block.state} if block.state else {}),
            **common,
            "outlets": [AssetOf(parse_table(t, conn_id=ctx.warehouse)) for t in sorted(rendered.writes[gid])],
            # Parallel tasks would otherwise race on dbt's own CREATE SCHEMA (see DbtOperator).
            **({"create_schemas": schemas} if (schemas := _schemas_built(unit, rendered)) else {}),
            # What this task's models and tests read: its lineage inputs (scheduling follows the step's reads).
            **({"inlets": [AssetOf(parse_table(t, conn_id=ctx.warehouse)) for t in sorted(rendered.group_reads[gid])]}
               if rendered.group_reads[gid] else {}),
        }
        group.children.append(ctx.member(task_id, _OPERATOR, kwargs))
    group.edges = [(ids[up], ids[gid]) for gid, unit in rendered.groups.items() for up in sorted(unit.upstream)]
    if block.wait_for_sources:
        sensor = _freshness_sensor(block, ctx, rendered, project)
        group.children.insert(0, sensor)
        group.edges[:0] = [(sensor.id, ids[gid]) for gid, unit in rendered.groups.items() if not unit.upstream]
    return group


def _freshness_sensor(block: DbtBlock, ctx: StepContext, rendered: RenderedDbt, project: Path) -> TaskNode:
    """A deferrable sensor waiting until the checkable sources are fresh; the group's first task."""
    settings = block.wait_for_sources if isinstance(block.wait_for_sources, WaitForSources) else WaitForSources()
    names = sorted(name for name, (_, checkable) in rendered.sources.items() if checkable)
    kwargs = {
        "project_dir": str(project),
        "sources": names,
        "warehouse_conn_id": ctx.warehouse,
        "allow_warn": settings.allow_warn,
        "deferrable": True,
        "poke_interval": settings.poke_interval.total_seconds(),
        "timeout": settings.timeout.total_seconds(),
        **ctx.member_settings,
        "inlets": [AssetOf(parse_table(rendered.sources[n][0], conn_id=ctx.warehouse)) for n in names],
    }
    if block.manifest:
        kwargs["manifest_path"] = str((ctx.pipeline_dir / block.manifest).resolve())
    return ctx.member(_SENSOR_ID, _SENSOR, kwargs)


_SENSOR = "airflow_osds.sensors.dbt.DbtSourceFreshnessSensor"
_SENSOR_ID = "sources_fresh"


_OPERATOR = "airflow_osds.operators.dbt.DbtBuildOperator"


def _selection(block: DbtBlock, unit: Any, rendered: RenderedDbt) -> tuple[list[str], str | None]:
    if block.granularity == "project" and block.selector is None:
        return list(block.select), None  # dbt applies the default selector itself when there is none
    # Exactly this unit's nodes (for selector groups too: a node claimed by an earlier group
    # must not run twice), plus the tests assigned to it, each by a selector matching it alone
    # in whatever package; `cautious` keeps dbt from also running a multi-parent test whose
    # other parent another task builds.
    nodes = [rendered.nodes[uid].selector for uid in unit.nodes]
    tests = [rendered.test_selectors[t] for t in unit.tests]
    return nodes + tests, "cautious"


def _check_parse_settings(block: DbtBlock, record: Any, project: Path) -> None:
    """The step must run as the manifest was parsed: its relation names and models depend on it."""
    command = f"osds dbt-parse {project}"
    if record.target_schema is None:
        raise FieldProblem(
            "project", f"the manifest does not say which target schema it was parsed with (plain `dbt parse`?); "
            f"run `{command} --target-schema <schema>`"
        )
    if block.target_schema is not None and block.target_schema != record.target_schema:
        raise FieldProblem(
            "target_schema",
            f"the manifest was parsed with target schema `{record.target_schema}`, so its relations (and this "
            f"step's Assets) are named for it; run `{command} --target-schema {block.target_schema}` or drop "
            "`target_schema`",
        )
    if not _same_vars(block.vars, dict(record.vars)):
        raise FieldProblem(
            "vars",
            f"the manifest was parsed with vars {json.dumps(dict(record.vars), sort_keys=True, default=str)}, not "
            f"the step's; run `{command} --vars '{json.dumps(block.vars, sort_keys=True, default=str)}'`",
        )


def _same_vars(step: dict[str, Any], parsed: dict[str, Any]) -> bool:
    """Same keys, and the same values except where the step's value is a template (rendered per run)."""
    if set(step) != set(parsed):
        return False
    return all(_templated(value) or value == parsed[key] for key, value in step.items())


def _templated(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def _task_id(gid: str, rendered: RenderedDbt, used: set[str]) -> str:
    """The model's name (a folder's path for folder groups), prefixed by its kind if taken."""
    node = rendered.nodes.get(gid)
    base = node.name if node is not None else gid
    task_id = re.sub(r"[^A-Za-z0-9_]+", "_", base).strip("_") or "dbt"
    if task_id in used and node is not None:
        task_id = f"{node.kind}_{task_id}"
    used.add(task_id)
    return task_id


BLOCK = BlockType(
    name="dbt",
    model=DbtBlock,
    description="Run a dbt project rendered from its manifest (a task per model, folder or project).",
    compile=compile_group,
    data=data,
    file_fields=(FileField("project"), FileField("manifest")),
    warehouse_field="warehouse",
    provides=ProviderModules(
        integration="dbt Core", operators=("airflow_osds.operators.dbt",), hooks=("airflow_osds.hooks.dbt",),
        sensors=("airflow_osds.sensors.dbt",), triggers=("airflow_osds.triggers.dbt",),
        external_doc_url="https://docs.getdbt.com/",
    ),
)
