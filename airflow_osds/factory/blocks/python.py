"""``python``: call a Python function by dotted path, optionally mapped over a list."""

from __future__ import annotations

import itertools
from typing import Any

from pydantic import Field, model_validator

from airflow_osds.factory.blocks import BlockType, BuildEnv
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


def kwargs_with(fixed: dict[str, Any], key: str) -> Any:
    """A function merging each mapped value into the fixed kwargs.

    A plain function, not a callable object: Airflow serialises ``XComArg.map`` callables
    through ``inspect.getsource`` (workers re-parse the DAG to get the real one).
    """

    def merge(value: Any) -> dict[str, Any]:
        return {**fixed, key: value}

    return merge


def build(block: PythonBlock, env: BuildEnv) -> Any:
    from airflow.providers.standard.operators.python import PythonOperator

    from airflow_osds.factory.imports import import_dotted

    func = import_dotted(block.callable)
    if not block.expand:
        return PythonOperator(task_id=env.task_id, python_callable=func, op_kwargs=block.kwargs, **env.task_kwargs)
    partial = PythonOperator.partial(task_id=env.task_id, python_callable=func, **env.task_kwargs)
    return partial.expand(op_kwargs=mapped_kwargs(block.kwargs, block.expand, env))


def mapped_kwargs(fixed: dict[str, Any], expand: dict[str, list[Any] | FromStep], env: BuildEnv) -> Any:
    """The list of kwargs to map over: every combination of literal lists, or another step's output."""
    ((first_key, first),) = list(expand.items())[:1]
    if isinstance(first, FromStep):
        return env.output_of(first.from_).map(kwargs_with(fixed, first_key))
    keys = list(expand)
    combos = itertools.product(*(expand[k] for k in keys))
    return [{**fixed, **dict(zip(keys, combo, strict=True))} for combo in combos]


BLOCK = BlockType(
    name="python",
    model=PythonBlock,
    description="Call a Python function.",
    build=build,
    imports=lambda block: {"callable": block.callable},
    mapped_from=lambda block: steps_mapped_from(block.expand),
)
