"""A compiled pipeline → an Airflow DAG: instantiate the operators, groups and edges it lists.

This is the whole steady-state parse: no YAML, no validation, no planning (see
:mod:`airflow_osds.factory.compiled`). A constructor that raises becomes a
``PipelineSpecError`` located at its step, so the caller can drop that one pipeline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_osds.exceptions import PipelineSpecError
from airflow_osds.factory.compiled import (
    AssetOf,
    Call,
    CompiledPipeline,
    Deferred,
    GroupNode,
    Node,
    OutputOf,
    Ref,
    TaskNode,
    import_object,
)

if TYPE_CHECKING:
    from airflow.sdk import DAG

__all__ = ["build_dag", "kwargs_with", "link"]


def build_dag(pipeline: CompiledPipeline, *, register: bool = True) -> DAG:
    """Build the DAG; ``register=False`` keeps Airflow from collecting it from the calling DAG file."""
    from airflow.sdk import DAG

    resolver = Resolver()
    dag_kwargs = {k: resolver.value(v) for k, v in pipeline.dag_kwargs.items()}
    try:
        with DAG(**dag_kwargs, auto_register=register) as dag:
            try:
                for node in pipeline.nodes:
                    _build_node(node, resolver, None)
                for upstream, downstream in pipeline.edges:
                    link(resolver.nodes[upstream], resolver.nodes[downstream])
            except BaseException:
                dag.auto_register = False  # a half-built DAG must never reach the DagBag
                raise
    except _StepFailed as failed:
        raise PipelineSpecError(pipeline.file, [failed.problem]) from failed.__cause__
    if pipeline.doc_md:
        dag.doc_md = pipeline.doc_md
    return dag


class _StepFailed(Exception):
    def __init__(self, problem: Any) -> None:
        self.problem = problem


def _build_node(node: Node, resolver: Resolver, group: Any) -> Any:
    try:
        if isinstance(node, TaskNode):
            built = _build_task(node, resolver, group)
        else:
            built = _build_group(node, resolver, group)
    except _StepFailed:
        raise
    except Exception as exc:  # an operator constructor (or a callable it was given) refused its arguments
        raise _StepFailed(node.where.problem(f"building the task failed: {type(exc).__name__}: {exc}")) from exc
    resolver.nodes[node.id] = built
    return built


def _build_task(node: TaskNode, resolver: Resolver, group: Any) -> Any:
    operator = import_object(node.operator)
    kwargs = node.kwargs
    expand = node.expand
    if node.deferred:
        kwargs = dict(kwargs)
        expand = dict(expand) if expand is not None else None
        for key in node.deferred:
            if key in kwargs:
                kwargs[key] = resolver.value(kwargs[key])
            if expand is not None and key in expand:
                expand[key] = resolver.value(expand[key])
    if group is not None:
        kwargs = {**kwargs, "task_group": group}
    if expand is None:
        return operator(task_id=node.task_id, **kwargs)
    return operator.partial(task_id=node.task_id, **kwargs).expand(**expand)


def _build_group(node: GroupNode, resolver: Resolver, parent: Any) -> Any:
    from airflow.sdk import TaskGroup

    group = TaskGroup(group_id=node.group_id, tooltip=node.tooltip, parent_group=parent)
    for child in node.children:
        _build_node(child, resolver, group)
    for upstream, downstream in node.edges:
        link(resolver.nodes[upstream], resolver.nodes[downstream])
    return group


def link(upstream: Any, downstream: Any) -> None:
    """``upstream >> downstream``, in time linear in the DAG's size.

    Between two unmapped tasks of one DAG, ``>>`` records exactly the two id sets written here
    (``DAGNode._set_relatives``: ``update_relative`` is a no-op for an operator). It also
    collects the DAGs of both ends into a set, hashing the DAG twice per edge, and a DAG's
    hash covers all its task ids: a 1,000-task chain spent ~65 ms on that, more than the
    rest of its edges. Groups and mapped tasks keep ``>>``, which records what they need.
    """
    if (
        _plain_edges(type(upstream))
        and _plain_edges(type(downstream))
        and upstream.has_dag()
        and downstream.has_dag()
        and upstream.dag is downstream.dag
    ):
        upstream.downstream_task_ids.add(downstream.node_id)
        downstream.upstream_task_ids.add(upstream.node_id)
    else:
        upstream >> downstream


# What `a >> b` runs on either end; a class overriding any of them keeps `>>`.
_EDGE_METHODS = ("__rshift__", "set_downstream", "_set_relatives", "update_relative", "roots", "leaves")
_PLAIN_EDGES: dict[type, bool] = {}


def _plain_edges(cls: type) -> bool:
    plain = _PLAIN_EDGES.get(cls)
    if plain is None:
        from airflow.sdk import BaseOperator

        plain = _PLAIN_EDGES[cls] = issubclass(cls, BaseOperator) and all(
            getattr(cls, name) is getattr(BaseOperator, name) for name in _EDGE_METHODS
        )
    return plain


class Resolver:
    """Turns deferred values into Airflow objects; one per DAG (its Assets are shared by its tasks)."""

    __slots__ = ("assets", "nodes")

    def __init__(self) -> None:
        self.assets: dict[Any, Any] = {}
        self.nodes: dict[str, Any] = {}

    def value(self, value: Any) -> Any:
        if isinstance(value, Deferred):
            return self._deferred(value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        return value

    def _deferred(self, value: Deferred) -> Any:
        if isinstance(value, AssetOf):
            asset = self.assets.get(value.ref)
            if asset is None:
                asset = self.assets[value.ref] = value.ref.asset()
            return asset
        if isinstance(value, OutputOf):
            output = self.nodes[value.step].output
            if value.merge_key is None:
                return output
            return output.map(kwargs_with(value.merge_into or {}, value.merge_key))
        if isinstance(value, Ref):
            return import_object(value.path)
        if isinstance(value, Call):
            args = [self.value(a) for a in value.args]
            return import_object(value.path)(*args, **{k: self.value(v) for k, v in value.kwargs.items()})
        raise TypeError(f"unknown deferred value {value!r}")


def kwargs_with(fixed: dict[str, Any], key: str) -> Any:
    """A function merging each mapped value into the fixed kwargs.

    A plain function, not a callable object: Airflow serialises ``XComArg.map`` callables
    through ``inspect.getsource`` (workers re-parse the DAG to get the real one).
    """

    def merge(value: Any) -> dict[str, Any]:
        return {**fixed, key: value}

    return merge
