"""``operator``: any importable Airflow operator class with keyword arguments (the long tail)."""

from __future__ import annotations

import difflib
import functools
import inspect
from typing import Any

from pydantic import ConfigDict, Field

from airflow_osds.factory.blocks import BlockType, DottedField, StepContext
from airflow_osds.factory.compiled import TaskNode
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


def check(block: OperatorBlock) -> list[tuple[tuple[str, ...], str]]:
    """Arguments the operator class does not take, and required ones missing, found from its signature.

    Airflow would refuse them only when the DAG is built; found here, they are validation
    errors at their line (building can still fail on values, which the DAG files report).
    """
    from airflow_osds.factory.imports import import_dotted

    try:
        cls = import_dotted(block.class_)
    except ImportError:
        return []  # reported by the dotted-path check
    accepted, required = _parameters(cls)
    problems = []
    suggested: set[str] = set()  # a typo's correction is not also reported as missing
    given = {**{k: ("kwargs", k) for k in block.kwargs}, **{k: ("expand", k) for k in block.expand}}
    for name, where in given.items():
        if name not in accepted:
            hint = difflib.get_close_matches(name, sorted(accepted), n=1)
            suggested.update(hint)
            suggestion = f"did you mean `{hint[0]}`?" if hint else "see the operator's documentation"
            problems.append((where, f"{cls.__name__} takes no argument `{name}`: {suggestion}"))
    missing = sorted(required - set(given) - suggested - _SET_BY_THE_FACTORY)
    if missing:
        problems.append((("kwargs",), f"{cls.__name__} needs {', '.join(f'`{m}`' for m in missing)} in `kwargs`"))
    return problems


# Arguments every step gets from the factory (its id, settings, data), never from `kwargs`.
_SET_BY_THE_FACTORY = frozenset({"task_id"})


@functools.cache  # one signature walk per class, not per step (a DAG repeats its operator classes)
def _parameters(cls: type) -> tuple[frozenset[str], frozenset[str]]:
    """Keyword arguments ``cls(...)`` accepts, and those without a default, down its class chain
    while ``**kwargs`` passes them on (the most derived ``__init__`` decides about defaults)."""
    has_default: dict[str, bool] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(getattr(init, "__wrapped__", init)).parameters.values()
        for p in params:
            if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD):
                has_default.setdefault(p.name, p.default is not p.empty)
        if not any(p.kind is p.VAR_KEYWORD for p in params) or klass.__name__ == "BaseOperator":
            break
    return frozenset(has_default), frozenset(name for name, default in has_default.items() if not default)


def compile_task(block: OperatorBlock, ctx: StepContext) -> TaskNode:
    if not block.expand:
        return ctx.task(block.class_, dict(block.kwargs))
    assert ctx.output_of is not None
    mapped = {key: ctx.output_of(value.from_) if isinstance(value, FromStep) else value for key, value in block.expand.items()}
    return ctx.task(block.class_, dict(block.kwargs), expand=mapped)


BLOCK = BlockType(
    name="operator",
    model=OperatorBlock,
    description="Any Airflow operator class.",
    compile=compile_task,
    dotted_paths=(DottedField("class", must_be="operator"),),
    mapped_from=lambda block: steps_mapped_from(block.expand),
    check=check,
    build_can_fail=True,
)
