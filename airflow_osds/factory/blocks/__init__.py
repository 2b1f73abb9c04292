"""Step blocks: the one place where step types are registered.

A step holds exactly one block. A block is one module that declares a ``BLOCK =
BlockType(...)``: its model (what YAML may say), the data it reads and writes, which of its
fields are file paths, dotted paths or the warehouse connection, whether building it can
fail on input validation cannot check, the provider modules it contributes, and how it
compiles into a task (:class:`~airflow_osds.factory.compiled.TaskNode`) or a group of tasks.
Everything else — the step schema, error messages, the JSON Schema, provider info, the
planner — is derived from this registry.

Built-in blocks are the modules of this package; other packages add blocks through the
``airflow_osds.blocks`` entry-point group (``name = package.module:BLOCK``).
"""

from __future__ import annotations

import functools
import importlib
import logging
import pkgutil
import sys
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from airflow_osds.assets import DataRef

if TYPE_CHECKING:
    from airflow_osds.factory.compiled import Node, OutputOf, TaskNode

__all__ = [
    "BLOCKS",
    "BLOCK_LOAD_ERRORS",
    "NO_DATA",
    "ENTRY_POINT_GROUP",
    "BlockType",
    "DataIO",
    "DottedField",
    "FieldProblem",
    "FileField",
    "ProviderModules",
    "StepContext",
    "no_data",
]

ENTRY_POINT_GROUP = "airflow_osds.blocks"
log = logging.getLogger(__name__)


class FieldProblem(ValueError):
    """A block's data cannot be derived because of one of its fields: reported at that field
    (``"source"``, or a path into the block such as ``("tap", "catalog")``)."""

    def __init__(self, field: str | tuple[str | int, ...], message: str) -> None:
        self.path: tuple[str | int, ...] = (field,) if isinstance(field, str) else tuple(field)
        super().__init__(message)


@dataclass(frozen=True)
class DataIO:
    """What a block reads and writes: typed references, or table names (``schema.table``,
    ``conn:schema.table``) resolved against the step's warehouse."""

    reads: frozenset[DataRef | str] = frozenset()
    writes: frozenset[DataRef | str] = frozenset()
    # Problems that are not errors (e.g. SQL the scanner could not read): the step's warnings.
    notes: tuple[str, ...] = ()
    # The step also reads every table the pipeline's other steps write, so it runs after all of them
    # (a BI refresh that follows whatever the pipeline rebuilt); compile sees them in ``StepContext.reads``.
    reads_pipeline_tables: bool = False


@dataclass(frozen=True)
class FileField:
    """A field holding a path relative to the pipeline file; ``text`` files must also read as UTF-8."""

    field: str
    text: bool = False


@dataclass(frozen=True)
class DottedField:
    """A field holding an importable dotted path, and what the imported object must be."""

    field: str  # the YAML key
    must_be: str = "any"  # "callable", "operator" (a BaseOperator subclass), "class", "any"


@dataclass(frozen=True)
class ProviderModules:
    """Modules a block contributes to the provider info Airflow reads (``get_provider_info``)."""

    integration: str
    operators: tuple[str, ...] = ()
    sensors: tuple[str, ...] = ()
    hooks: tuple[str, ...] = ()
    triggers: tuple[str, ...] = ()
    external_doc_url: str = ""


@dataclass
class StepContext:
    """What a block sees while it is compiled: no connection, no network, no Airflow object.

    Files it reads through :meth:`read_file` or declares with :meth:`depend_on` become
    part of the compiled cache's key, so editing them recompiles the pipeline.
    """

    step_id: str  # full id ("group.step")
    task_id: str  # local id
    warehouse: str
    pipeline_dir: Path
    where: Any  # StepLocation of the step (build errors are reported there)
    task_kwargs: dict[str, Any] = field(default_factory=dict)  # retries, callbacks, inlets/outlets, …
    output_of: Callable[[str], OutputOf] | None = field(default=None, repr=False)
    dependencies: set[Path] = field(default_factory=set)
    reads: frozenset[DataRef] = frozenset()  # while compiling: what the step reads, as planned

    def path(self, relative: str) -> Path:
        return (self.pipeline_dir / relative).resolve()

    def read_file(self, relative: str) -> str:
        path = self.path(relative)
        self.dependencies.add(path)
        return path.read_bytes().decode("utf-8")

    def depend_on(self, path: Path) -> None:
        self.dependencies.add(path)

    def task(self, operator: str, kwargs: dict[str, Any], *, expand: dict[str, Any] | None = None) -> TaskNode:
        """The step's task: ``operator(task_id=…, **kwargs, **task settings)``."""
        from airflow_osds.factory.compiled import TaskNode

        merged = {**kwargs, **self.task_kwargs}
        return TaskNode(
            id=self.step_id, task_id=self.task_id, operator=operator, kwargs=merged, where=self.where, expand=expand,
            deferred=_deferred_keys(merged, expand or {}),
        )

    @property
    def member_settings(self) -> dict[str, Any]:
        """The step's task settings (retries, callbacks…) for a task inside its group, without the step's
        inlets and outlets: each member declares the lineage it has itself."""
        return {k: v for k, v in self.task_kwargs.items() if k not in ("outlets", "inlets")}

    def member(self, task_id: str, operator: str, kwargs: dict[str, Any]) -> TaskNode:
        """A task inside the step's group (node id ``<step>.<task_id>``): ``operator(task_id=…, **kwargs)``."""
        from airflow_osds.factory.compiled import TaskNode

        return TaskNode(id=f"{self.step_id}.{task_id}", task_id=task_id, operator=operator, kwargs=kwargs,
                        where=self.where, deferred=_deferred_keys(kwargs))


def _deferred_keys(*mappings: dict[str, Any]) -> tuple[str, ...]:
    """The keys holding Deferred values: the only ones the builder looks into."""
    from airflow_osds.factory.compiled import has_deferred

    return tuple(k for m in mappings for k, v in m.items() if has_deferred(v))


NO_DATA = DataIO()


def no_data(block: Any, ctx: StepContext) -> DataIO:
    """A block that reads and writes nothing it could name (``operator``, ``python``): only the step's
    own ``reads:``/``writes:`` say. The planner skips building a context for it."""
    return NO_DATA


@dataclass(frozen=True)
class BlockType:
    name: str
    model: type[BaseModel]
    description: str
    # The step's task(s); None only for `group`, which the compiler nests itself.
    compile: Callable[[Any, StepContext], Node] | None
    data: Callable[[Any, StepContext], DataIO] = no_data  # what the block reads and writes
    file_fields: tuple[FileField, ...] = ()  # checked while planning; a change recompiles the pipeline
    dotted_paths: tuple[DottedField, ...] = ()
    warehouse_field: str | None = None  # the field that overrides the step's warehouse connection
    mapped_from: Callable[[Any], list[str]] = lambda block: []  # steps whose output the block maps over
    # Checks that need the block's imports: (location under the block, message) per problem.
    check: Callable[[Any], list[tuple[tuple[str, ...], str]]] = lambda block: []
    # True when building can fail on input validation cannot check (arbitrary operator kwargs).
    build_can_fail: bool = False
    provides: ProviderModules | None = None
    # A scalar the block also accepts (e.g. `sql: "SELECT 1"`) and how to expand it.
    shorthand_type: type | None = None
    expand_shorthand: Callable[[Any], Any] | None = None
    package: str = "airflow-osds"  # the distribution that installed it (third-party blocks)

    def dotted(self, block: Any) -> dict[str, tuple[str, str]]:
        """YAML key → (dotted path, what it must be) for the paths this block instance names."""
        out = {}
        for spec in self.dotted_paths:
            value = getattr(block, _attribute_of(type(block), spec.field), None)
            if value:
                out[spec.field] = (str(value), spec.must_be)
        return out

    def warehouse_of(self, block: Any) -> str | None:
        return getattr(block, self.warehouse_field, None) if self.warehouse_field else None


@functools.cache  # per model and key: planning asks once per step
def _attribute_of(model: type[BaseModel], key: str) -> str:
    """The attribute holding YAML key ``key`` (``class`` is held by ``class_``)."""
    return next((name for name, f in model.model_fields.items() if f.alias == key), key)


# Blocks that could not be loaded: name → why (shown where a pipeline uses the block).
BLOCK_LOAD_ERRORS: dict[str, str] = {}


def _builtin_names() -> list[str]:
    # The group block nests other steps: keep it last so the step schema lists real work first.
    names = sorted(info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_"))
    return sorted(names, key=lambda name: name == "group")


def _entry_points() -> list[tuple[Any, str]]:
    """(entry point, distribution name) of every block entry point, each once.

    In a process that imported ``airflow.sdk`` (a DAG processor, a worker), Airflow has read
    every distribution's entry points already (``entry_points_with_dist``, cached per process);
    asking importlib.metadata again would read all of them a second time (~7 ms with a few
    hundred distributions) in every cold compile. Elsewhere (the ``osds`` command) Airflow is
    not imported for this: importing it sets up its logging.
    """
    shared = sys.modules.get("airflow.sdk._shared.module_loading")
    entry_points_with_dist = getattr(shared, "entry_points_with_dist", None)
    if entry_points_with_dist is None:
        from importlib.metadata import entry_points

        return [(ep, ep.dist.name if ep.dist is not None else "?") for ep in entry_points(group=ENTRY_POINT_GROUP)]
    seen: dict[tuple[str, str], tuple[Any, str]] = {}
    for ep, dist in entry_points_with_dist(ENTRY_POINT_GROUP):  # a distribution on two sys.path entries: once
        seen.setdefault((ep.name, ep.value), (ep, dist.name or "?"))
    return list(seen.values())


def _entry_point_blocks() -> list[BlockType]:
    blocks = []
    for ep, package in _entry_points():
        try:
            block = ep.load()
            if not isinstance(block, BlockType):
                raise TypeError(f"{ep.value} is a {type(block).__name__}, not an airflow_osds BlockType")
        except Exception as exc:  # a broken plugin package must not take the built-in blocks down
            BLOCK_LOAD_ERRORS[ep.name] = f"package {package} provides block `{ep.name}` but it failed to load: " \
                                         f"{type(exc).__name__}: {exc}"
            log.warning("%s", BLOCK_LOAD_ERRORS[ep.name])
            continue
        blocks.append(block if block.package != "airflow-osds" else _with_package(block, package))
    return blocks


def _with_package(block: BlockType, package: str) -> BlockType:
    from dataclasses import replace

    return replace(block, package=package)


class _Registry(MutableMapping[str, BlockType]):
    """Block name → :class:`BlockType`: the built-in blocks (this package's modules), then the entry points'.

    A built-in block's module is imported the first time its name is looked up, not when the
    registry is: a cold compile of pipelines that use two blocks does not build the pydantic
    models of the other nine (~30 ms). Third-party blocks are loaded with the registry, so a
    broken plugin package is known (``BLOCK_LOAD_ERRORS``) before any pipeline is read.
    """

    def __init__(self) -> None:
        self._builtin = _builtin_names()
        self._loaded: dict[str, BlockType] = {}
        for block in _entry_point_blocks():
            if block.name in self._builtin or block.name in self._loaded:
                first = "airflow-osds" if block.name in self._builtin else self._loaded[block.name].package
                BLOCK_LOAD_ERRORS[block.name] = (
                    f"package {block.package} provides block `{block.name}`, which {first} already provides; "
                    "the first one is used"
                )
                log.warning("%s", BLOCK_LOAD_ERRORS[block.name])
                continue
            self._loaded[block.name] = block
        self._names = [*self._builtin, *self._loaded]  # the entry points' blocks: none shares a built-in's name

    def __getitem__(self, name: str) -> BlockType:
        block = self._loaded.get(name)
        if block is None:
            if name not in self._builtin:
                raise KeyError(name)
            block = self._loaded[name] = importlib.import_module(f"{__name__}.{name}").BLOCK
        return block

    def __setitem__(self, name: str, block: BlockType) -> None:
        """Register (or replace) a block in this process: what a test injecting a fault does."""
        self._loaded[name] = block
        if name not in self._names:
            self._names.append(name)

    def __delitem__(self, name: str) -> None:
        self._loaded.pop(name, None)  # a built-in block is imported again on its next lookup
        if name not in self._builtin:
            self._names.remove(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._builtin or name in self._loaded


BLOCKS: Mapping[str, BlockType] = _Registry()
