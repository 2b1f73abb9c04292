"""``group``: a task group holding its own steps (ids become ``group.step``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from airflow_osds.factory.blocks import BlockType
from airflow_osds.factory.types import Strict

if TYPE_CHECKING:
    from airflow_osds.factory.spec import StepSpec


class GroupBlock(Strict):
    """A task group; steps inside see each other by their short ids."""

    tooltip: str = Field("", description="Shown when hovering the group in Airflow's graph.")
    steps: dict[str, StepSpec] = Field(min_length=1, description="Steps of the group.")


# The compiler nests the group's steps itself.
BLOCK = BlockType(name="group", model=GroupBlock, description="A group of steps.", compile=None)
