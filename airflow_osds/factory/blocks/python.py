"""``python``: call a Python function by dotted path, optionally mapped over a list."""

from __future__ import annotations

import itertools
from typing import Any

from pydantic import Field, model_validator

from airflow_osds.factory.blocks import BlockType, DottedField, StepContext
from airflow_osds.factory.compiled import OutputOf, Ref, TaskNode
from airflow_osds.factory.types import DottedPath, FromStep, Strict, steps_mapped_from


class PythonBlock(Strict):
    """Call ``callable(**kwargs)``; its return value becomes the step's output (XCom)."""

    callable: DottedPath = Field(description="Function to call.", examples=["my_pkg.tasks.clean_orders"])
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments (templated).")
    expand: dict[str, list[Any] | FromStep] = Field(
        default_factory=dict,
        description="Run one task per value: `{arg: [v1, v2]}` (several args: every combination) "
        "or `{arg: {from: step}}` to map over another step's returned list.",
    )

    @model_validator(mode="after")
    def _single_source_for_from(self) -> PythonBlock:
        if len(self.expand) > 1 and any(isinstance(v, FromStep) for v in self.expand.values()):
            raise ValueError("`expand` over another step's output (`from:`) takes exactly one argument")
        return self


def compile_task(block: PythonBlock, ctx: StepContext) -> TaskNode:
    kwargs: dict[str, Any] = {"python_callable": Ref(block.callable)}
    if not block.expand:
        return ctx.task(_OPERATOR, {**kwargs, "op_kwargs": block.kwargs})
    return ctx.task(_OPERATOR, kwargs, expand={"op_kwargs": mapped_kwargs(block.kwargs, block.expand, ctx)})


_OPERATOR = "airflow.providers.standard.operators.python.PythonOperator"


def mapped_kwargs(fixed: dict[str, Any], expand: dict[str, list[Any] | FromStep], ctx: StepContext) -> Any:
    """The list of kwargs to map over: every combination of literal lists, or another step's output."""
    ((first_key, first),) = list(expand.items())[:1]
    if isinstance(first, FromStep):
        assert ctx.output_of is not None
        output = ctx.output_of(first.from_)
        return OutputOf(output.step, merge_into=dict(fixed), merge_key=first_key)
    keys = list(expand)
    combos = itertools.product(*(expand[k] for k in keys))
    return [{**fixed, **dict(zip(keys, combo, strict=True))} for combo in combos]


BLOCK = BlockType(
    name="python",
    model=PythonBlock,
    description="Call a Python function.",
    compile=compile_task,
    dotted_paths=(DottedField("callable", must_be="callable"),),
    mapped_from=lambda block: steps_mapped_from(block.expand),
)
