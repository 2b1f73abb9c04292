"""The cross-pipeline data graph: pipelines, the data they write and read, and which reads trigger a run.

One structure (:func:`data_graph`) for every view of it: ``osds graph`` prints it as Mermaid
(:func:`mermaid`), and the data-stack view in Airflow's UI (:mod:`airflow_osds.ui`) draws it.
Pure logic over a loaded :class:`~airflow_osds.factory.project.Project`, no Airflow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from airflow_osds.assets import DataRef
from airflow_osds.factory.plan import PipelinePlan
from airflow_osds.factory.project import Project

__all__ = ["DataGraph", "DataNode", "DataEdge", "data_graph", "mermaid", "pipeline_node_id", "schedule_label"]

EdgeKind = Literal["writes", "reads", "triggers"]


@dataclass(frozen=True)
class DataNode:
    """A pipeline (``ref`` is ``None``) or a piece of data (``ref`` names its Asset)."""

    id: str  # "pipeline:<id>" for pipelines, the Asset name for data: unique across both
    label: str
    ref: DataRef | None = None
    plan: PipelinePlan | None = field(default=None, compare=False, repr=False)

    @property
    def kind(self) -> str:
        """``pipeline`` or the data's kind (``table``, ``dashboard``, ``destination``, ``files``)."""
        return "pipeline" if self.ref is None else self.ref.kind


@dataclass(frozen=True)
class DataEdge:
    """``source`` → ``target``: a pipeline ``writes`` data, data is ``reads`` of a pipeline, or
    ``triggers`` it (a read its ``schedule: data`` waits for)."""

    source: str
    target: str
    kind: EdgeKind


@dataclass(frozen=True)
class DataGraph:
    nodes: tuple[DataNode, ...]  # pipelines first, then data; each sorted
    edges: tuple[DataEdge, ...]


def pipeline_node_id(pipeline_id: str) -> str:
    return f"pipeline:{pipeline_id}"


def data_graph(project: Project) -> DataGraph:
    """The valid pipelines of ``project`` and the data between them.

    A pipeline's reads of its own writes stay inside it (they order its tasks), so only
    ``external_reads`` become edges into it.
    """
    plans = sorted(project.plans.values(), key=lambda p: p.id)
    nodes = [DataNode(pipeline_node_id(plan.id), plan.id, plan=plan) for plan in plans]
    refs: set[DataRef] = set()
    edges: list[DataEdge] = []
    for plan in plans:
        refs |= plan.writes | plan.reads
        triggers = set(project.upstream_data(plan)) if plan.is_data_scheduled else set()
        pipeline = pipeline_node_id(plan.id)
        edges.extend(DataEdge(pipeline, ref.name, "writes") for ref in sorted(plan.writes))
        edges.extend(DataEdge(ref.name, pipeline, "triggers" if ref in triggers else "reads")
                     for ref in sorted(plan.external_reads))
    nodes.extend(DataNode(ref.name, ref.name, ref=ref) for ref in sorted(refs))
    return DataGraph(tuple(nodes), tuple(edges))


# -- Mermaid (`osds graph`) ---------------------------------------------------------------
_ARROWS = {"writes": "-->", "reads": "-.->", "triggers": "==>"}


def _node_id(prefix: str, name: str) -> str:
    # `_` escaped as `__` first, so `raw.crm_contacts` and `raw_crm.contacts` stay two nodes.
    return f"{prefix}_{re.sub(r'[^A-Za-z0-9_]', '_', name.replace('_', '__'))}"


def _mermaid_id(node: DataNode) -> str:
    return _node_id("p", node.label) if node.ref is None else _node_id("t", node.ref.name)


def mermaid(project: Project) -> str:
    """Pipelines are boxes, tables cylinders, other data rounded; `==>` marks a read that triggers a
    data-scheduled pipeline."""
    graph = data_graph(project)
    by_id = {node.id: node for node in graph.nodes}
    lines = ["flowchart LR"]
    for node in graph.nodes:
        if node.plan is not None:
            schedule = schedule_label(node.plan)
            label = node.label if not schedule else f"{node.label}<br/><small>{schedule}</small>"
            lines.append(f'  {_mermaid_id(node)}["{label}"]')
        else:
            lines.append(f"  {_mermaid_id(node)}{_shape(node)}")
    for edge in graph.edges:
        lines.append(f"  {_mermaid_id(by_id[edge.source])} {_ARROWS[edge.kind]} {_mermaid_id(by_id[edge.target])}")
    return "\n".join(lines) + "\n"


def schedule_label(plan: PipelinePlan) -> str:
    """``cron: @daily``, ``data: all``, … ("" for a pipeline without a schedule)."""
    schedule = plan.parsed.spec.schedule
    if schedule is None:
        return ""
    parts = []
    for key in ("cron", "every", "data"):
        value = getattr(schedule, key)
        if value is not None:
            parts.append(f"{key}: {value if isinstance(value, str) else type(value).__name__ if key == 'data' else value}")
    return ", ".join(parts)


def _shape(node: DataNode) -> str:
    label = node.label.replace('"', "'")
    return f'[("{label}")]' if node.kind == "table" else f'("{label}")'
