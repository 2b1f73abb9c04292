"""Singer EL: taps and targets in their own virtualenvs, state in the warehouse, and ``osds-target-postgres`` (no Airflow imports)."""

from __future__ import annotations

import re

__all__ = ["OSDS_TARGET", "table_name"]

#: This package's COPY target (a console script installed with it): the target a step uses unless it names another.
OSDS_TARGET = "osds-target-postgres"


def table_name(stream: str) -> str:
    """The table a stream lands in, named as Singer SDK SQL targets name it (MeltanoLabs target-postgres):
    the part after the last ``-`` (``public-customers`` → ``customers``; the schema is the target's),
    lower-cased, every other character than ``a-z0-9_`` as ``_``, and ``_`` before a leading digit."""
    name = re.sub(r"[^a-z0-9_]", "_", stream.rsplit("-", 1)[-1].lower()) or "_"
    return "_" + name if name[0].isdigit() else name
