"""The compiled form of a pipeline: what ``build`` turns into Airflow objects, and what the cache stores.

A compiled pipeline is plain data: operator class paths with their keyword arguments, task
groups, edges, and the DAG's arguments. Values only Airflow can make (an Asset shared by a
writer and its readers, another task's output, an imported callable, a timetable) are
*deferred*: small records resolved when the DAG is built. So building needs neither the
YAML, nor the pydantic models, nor the planner — a DAG processor with a warm cache and a
worker starting a task import only this module, :mod:`airflow_osds.factory.build` and the
operator classes themselves.
"""

from __future__ import annotations

import importlib
from typing import Any

from airflow_osds.assets import DataRef
from airflow_osds.exceptions import PipelineSpecError, SpecProblem

__all__ = [
    "AssetOf",
    "Call",
    "CompiledPipeline",
    "CompiledProject",
    "Deferred",
    "GroupNode",
    "Node",
    "OutputOf",
    "Record",
    "Ref",
    "StepLocation",
    "TaskNode",
    "has_deferred",
    "import_object",
]


class Record:
    """A small record: slots, keyword construction, equality and repr from the slots.

    Not a dataclass: this module is imported by every steady-state parse, and creating a
    dataclass costs ~0.4 ms, a plain class ~5 µs.
    """

    __slots__: tuple[str, ...] = ()
    _defaults: dict[str, Any] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if args:
            kwargs.update(zip(self.__slots__, args))
        setter = object.__setattr__
        for name in self.__slots__:
            if name in kwargs:
                setter(self, name, kwargs[name])
            else:  # a default; a callable one (list, dict) makes a fresh value per record
                value = self._defaults[name]
                setter(self, name, value() if callable(value) else value)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and all(getattr(self, s) == getattr(other, s) for s in self.__slots__)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{s}={getattr(self, s)!r}' for s in self.__slots__)})"


def _hashable(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value


class Deferred(Record):
    """A value computed when the DAG is built (see ``build.Resolver``)."""

    __slots__ = ()

    def __hash__(self) -> int:
        return hash((type(self), *(_hashable(getattr(self, s)) for s in self.__slots__)))


class Ref(Deferred):
    """An importable object (``package.module.name``), e.g. a callback or a callable."""

    __slots__ = ("path",)
    path: str


class Call(Deferred):
    """``path(*args, **kwargs)``, its arguments resolved first (notifiers, timetables, Asset conditions)."""

    __slots__ = ("path", "args", "kwargs")
    _defaults = {"args": (), "kwargs": dict}
    path: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


class AssetOf(Deferred):
    """The DAG's one Asset object for a data reference (a writer's outlet is its readers' inlet)."""

    __slots__ = ("ref",)
    ref: DataRef


class OutputOf(Deferred):
    """Another task's output (``XComArg``), for dynamic task mapping.

    With ``merge_key``, each mapped value becomes ``{**merge_into, merge_key: value}``
    (a python step mapping one argument of its kwargs).
    """

    __slots__ = ("step", "merge_into", "merge_key")
    _defaults = {"merge_into": None, "merge_key": None}
    step: str
    merge_into: dict[str, Any] | None
    merge_key: str | None


class StepLocation(Record):
    """Where a step is in its pipeline file; line and column are only worked out for an error."""

    __slots__ = ("file", "path")
    file: str
    path: tuple[str | int, ...]  # keys and indexes from the document root to the step

    def problem(self, message: str) -> SpecProblem:
        """``message`` located at the step's key (the file is read again: this is the error path)."""
        from pathlib import Path

        from airflow_osds.factory.yaml_source import Locator

        try:
            line, column = Locator(Path(self.file).read_text(encoding="utf-8")).locate_key(list(self.path))
        except Exception:  # the file changed or went away since it was compiled: still say what failed
            line = column = None
        return SpecProblem(message, line=line, column=column, location=".".join(map(str, self.path)))


class TaskNode(Record):
    """One operator: ``operator(task_id=task_id, **kwargs)``, or ``.partial(...).expand(**expand)``."""

    __slots__ = ("id", "task_id", "operator", "kwargs", "where", "expand", "deferred")
    _defaults = {"expand": None, "deferred": ()}
    id: str  # the node's id in its pipeline: "group.step" inside groups
    task_id: str  # local id (Airflow prefixes the group ids itself)
    operator: str  # dotted path of the operator class
    kwargs: dict[str, Any]
    where: StepLocation  # the step in its file: build errors are reported there
    expand: dict[str, Any] | None
    # Keys of kwargs/expand that hold Deferred values: the only ones the builder looks into.
    deferred: tuple[str, ...]


class GroupNode(Record):
    """A task group and its children; ``edges`` link children by their node ids."""

    __slots__ = ("id", "group_id", "where", "tooltip", "children", "edges")
    _defaults = {"tooltip": "", "children": list, "edges": list}
    id: str
    group_id: str
    where: StepLocation
    tooltip: str
    children: list[TaskNode | GroupNode]
    edges: list[tuple[str, str]]


Node = TaskNode | GroupNode


class CompiledPipeline(Record):
    __slots__ = ("dag_id", "file", "dag_kwargs", "nodes", "edges", "doc_md")
    _defaults = {"doc_md": ""}
    dag_id: str
    file: str
    dag_kwargs: dict[str, Any]  # may hold Deferred values (schedule, callbacks)
    nodes: list[Node]
    # Edges between the top-level nodes and group members, task edges first: an edge to a
    # TaskGroup attaches to the group's roots and leaves as they are when it is set.
    edges: list[tuple[str, str]]
    doc_md: str


class CompiledProject(Record):
    """Everything the two DAG files need: the compiled pipelines, the errors and warnings of the folder."""

    __slots__ = ("folder", "pipelines", "errors", "warnings", "files")
    _defaults = {"warnings": list, "files": list}
    folder: str
    pipelines: dict[str, CompiledPipeline]
    errors: list[PipelineSpecError]
    warnings: list[tuple[str, SpecProblem]]
    files: list[str]  # every pipeline file found, valid or not


_IMPORTED: dict[str, Any] = {}


def import_object(path: str) -> Any:
    """``package.module.name`` → the object, cached per process (task builds repeat class paths)."""
    obj = _IMPORTED.get(path)
    if obj is None:
        module, _, name = path.rpartition(".")
        obj = _IMPORTED[path] = getattr(importlib.import_module(module), name)
    return obj


def has_deferred(value: Any) -> bool:
    """Whether ``value`` is, or contains (in lists and dicts), a deferred value."""
    if isinstance(value, Deferred):
        return True
    if isinstance(value, list):
        return any(has_deferred(v) for v in value)
    if isinstance(value, dict):
        return any(has_deferred(v) for v in value.values())
    return False
