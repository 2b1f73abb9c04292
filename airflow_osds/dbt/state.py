"""``state:modified+``: run only what changed since the last successful run, against a stored manifest.

dbt compares the project with the manifest in ``--state <dir>``. A step keeps the manifest of
its last *successful* run in a named place — the warehouse (``osds_state.dbt_state_manifests``)
or a folder / object-store URL — and the next run compares against it. Which nodes changed
is only known when the task runs, so such a step runs as one task (``granularity: project``)
and, at parse time, declares every node its selection could touch.

Before any state exists (the first run, a new location) there is nothing to compare with:
the step then runs its whole selection without the ``state:`` parts, and says so.
"""

from __future__ import annotations

from collections.abc import Sequence

from airflow_osds.dbt.selection import parse_selectors

__all__ = ["WAREHOUSE", "uses_state", "without_state"]

WAREHOUSE = "warehouse"  # the state location meaning the warehouse's osds_state schema


def uses_state(selectors: Sequence[str]) -> bool:
    """Whether any selector compares with a stored state (``state:…``)."""
    return any(atom.method == "state" for term in parse_selectors(list(selectors)) for atom in term.atoms)


def without_state(selectors: Sequence[str]) -> list[str]:
    """The selection with its ``state:`` parts dropped: what to run when there is no state yet.

    ``state:modified+,tag:web`` becomes ``tag:web``; a term that was nothing but ``state:…``
    becomes everything (``fqn:*``), as every node is new compared with no state at all.
    """
    out = []
    for term in parse_selectors(list(selectors)):
        kept = [atom.text for atom in term.atoms if atom.method != "state"]
        out.append(",".join(kept) if kept else "fqn:*")
    return list(dict.fromkeys(out))
