"""The cross-pipeline data graph as Mermaid: pipelines, the tables they write and read."""

from __future__ import annotations

import re

from airflow_osds.assets import DataRef
from airflow_osds.factory.project import Project

__all__ = ["mermaid"]


def _node_id(prefix: str, name: str) -> str:
    # `_` escaped as `__` first, so `raw.crm_contacts` and `raw_crm.contacts` stay two nodes.
    return f"{prefix}_{re.sub(r'[^A-Za-z0-9_]', '_', name.replace('_', '__'))}"


def mermaid(project: Project) -> str:
    """Pipelines are boxes, tables cylinders, other data rounded; `==>` marks a read that triggers a
    data-scheduled pipeline."""
    lines = ["flowchart LR"]
    tables: set[DataRef] = set()
    for plan in sorted(project.plans.values(), key=lambda p: p.id):
        schedule = plan.parsed.spec.schedule
        label = plan.id if schedule is None else f"{plan.id}<br/><small>{_schedule_label(schedule)}</small>"
        lines.append(f'  {_node_id("p", plan.id)}["{label}"]')
        tables |= plan.writes | plan.reads
    for ref in sorted(tables):
        lines.append(f'  {_node_id("t", ref.name)}{_shape(ref)}')
    for plan in sorted(project.plans.values(), key=lambda p: p.id):
        pipeline_node = _node_id("p", plan.id)
        triggers = set(project.upstream_data(plan)) if plan.is_data_scheduled else set()
        for ref in sorted(plan.writes):
            lines.append(f"  {pipeline_node} --> {_node_id('t', ref.name)}")
        for ref in sorted(plan.external_reads):
            arrow = "==>" if ref in triggers else "-.->"
            lines.append(f"  {_node_id('t', ref.name)} {arrow} {pipeline_node}")
    return "\n".join(lines) + "\n"


def _schedule_label(schedule: object) -> str:
    parts = []
    for key in ("cron", "every", "data"):
        value = getattr(schedule, key)
        if value is not None:
            parts.append(f"{key}: {value if isinstance(value, str) else type(value).__name__ if key == 'data' else value}")
    return ", ".join(parts)


def _shape(ref: DataRef) -> str:
    label = ref.name.replace('"', "'")
    return f'[("{label}")]' if ref.kind == "table" else f'("{label}")'
