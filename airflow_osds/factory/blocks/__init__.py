"""Step blocks: the one place where step types are registered.

A step holds exactly one block. Each block type declares its model (what YAML may say),
the data it reads and writes when that can be derived from the block itself (explicit
``reads:``/``writes:`` on the step override it), the dotted paths it imports, and how it
becomes an Airflow task. Component blocks (snowplow, singer, dbt, superset, reverse_etl)
add themselves to ``BLOCKS`` the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

__all__ = ["BLOCKS", "BlockType", "BuildEnv", "DataIO", "StepEnv"]


@dataclass(frozen=True)
class DataIO:
    """Tables (``schema.table`` or ``conn:schema.table``) a block reads and writes."""

    reads: frozenset[str] = frozenset()
    writes: frozenset[str] = frozenset()


@dataclass(frozen=True)
class StepEnv:
    """What a block may look at while its data is derived: no connection, no network."""

    pipeline_dir: Path
    warehouse: str

    def read_file(self, relative: str) -> str:
        path = (self.pipeline_dir / relative).resolve()
        return path.read_text(encoding="utf-8")


@dataclass
class BuildEnv:
    """What a block gets to build its task."""

    task_id: str
    warehouse: str
    pipeline_dir: Path
    task_kwargs: dict[str, Any]
    output_of: Callable[[str], Any] = field(repr=False)


@dataclass(frozen=True)
class BlockType:
    name: str
    model: type[BaseModel]
    description: str
    build: Callable[[Any, BuildEnv], Any] | None
    derive_io: Callable[[Any, StepEnv], DataIO] = lambda block, env: DataIO()
    imports: Callable[[Any], Mapping[str, str]] = lambda block: {}
    mapped_from: Callable[[Any], list[str]] = lambda block: []
    # True when building can fail on input validation cannot check (arbitrary operator kwargs):
    # report_pipeline_errors then builds those pipelines to surface the error.
    build_can_fail: bool = False
    # A scalar the block also accepts (e.g. `sql: "SELECT 1"`) and how to expand it.
    shorthand_type: type | None = None
    expand_shorthand: Callable[[Any], Any] | None = None


def _registry() -> dict[str, BlockType]:
    from airflow_osds.factory.blocks import dbt, group, operator, python, sensor, sql

    blocks = [sql.BLOCK, python.BLOCK, operator.BLOCK, sensor.BLOCK, dbt.BLOCK, group.BLOCK]
    return {block.name: block for block in blocks}


BLOCKS: dict[str, BlockType] = _registry()
