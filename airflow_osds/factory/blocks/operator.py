"""``operator``: any importable Airflow operator class with keyword arguments (the long tail)."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from airflow_osds.factory.blocks import BlockType, BuildEnv
from airflow_osds.factory.types import DottedPath, FromStep, Strict, steps_mapped_from


class OperatorBlock(Strict):
    """Instantiate ``class(task_id=<step id>, **kwargs)``; ``expand`` maps keyword arguments."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    class_: DottedPath = Field(
        alias="class", description="Operator class.", examples=["airflow.providers.standard.operators.bash.BashOperator"]
    )
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments of the operator.")
    expand: dict[str, list[Any] | FromStep] = Field(
        default_factory=dict,
        description="Dynamic task mapping: `{kwarg: [v1, v2]}` (several kwargs: every combination) "
        "or `{kwarg: {from: step}}`.",
    )


def build(block: OperatorBlock, env: BuildEnv) -> Any:
    from airflow_osds.factory.imports import import_dotted

    cls = import_dotted(block.class_)
    if not block.expand:
        return cls(task_id=env.task_id, **block.kwargs, **env.task_kwargs)
    mapped = {
        key: env.output_of(value.from_) if isinstance(value, FromStep) else value for key, value in block.expand.items()
    }
    return cls.partial(task_id=env.task_id, **block.kwargs, **env.task_kwargs).expand(**mapped)


BLOCK = BlockType(
    name="operator",
    model=OperatorBlock,
    description="Any Airflow operator class.",
    build=build,
    imports=lambda block: {"class": block.class_},
    mapped_from=lambda block: steps_mapped_from(block.expand),
    build_can_fail=True,
)
