"""A dry run, written out: what a sync would send, record by record (for ``osds sync --dry-run`` and the task log)."""

from __future__ import annotations

import json

from airflow_osds.reverse_etl.diff import Preview

__all__ = ["describe_preview"]

VALUE_CHARS = 60  # a long field value is cut: the preview is for reading, the run sends it whole


def _value(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= VALUE_CHARS else text[:VALUE_CHARS - 1] + "…"


def describe_preview(preview: Preview) -> str:
    """The counts, then one line per previewed record: operation, key, fields and groups."""
    c = preview.counts
    lines = [f"would send {c.to_send}: {c.creates} create, {c.updates} update, {c.deletes} delete; "
             f"{c.not_sent_unchanged} unchanged"
             + (f", {c.skipped_updates} changed but not updated ({c.mode} mode)" if c.skipped_updates else "")
             + (f", {c.skipped_deletes} gone from the source but not deleted ({c.mode} mode)" if c.skipped_deletes else "")
             + (" (full resync)" if c.full_resync else "")]
    for change in preview.changes:
        fields = ", ".join(f"{name}={_value(value)}" for name, value in change.fields.items())
        groups = f"  groups={list(change.groups)}" if change.groups else ""
        lines.append(f"  {change.op:<6} {change.key}: {fields}{groups}")
    if c.to_send > len(preview.changes):
        lines.append(f"  … and {c.to_send - len(preview.changes)} more")
    return "\n".join(lines)
