"""The pipeline language as typed models: what a pipeline YAML file may say.

Closed schema: every model forbids unknown keys, so a typo is an error instead of a
silently ignored setting. Field descriptions and examples feed the JSON Schema
(``osds schema``), editor completion and the docs from one declaration.
"""

from __future__ import annotations

import datetime as dt
import re
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, WrapValidator, create_model, field_validator, model_validator

from airflow_osds.factory.blocks import BLOCKS
from airflow_osds.factory.blocks.group import GroupBlock
from airflow_osds.factory.types import IDENTIFIER_PATTERN, CallbackSpec, Duration, Identifier, Strict

__all__ = [
    "DataCondition",
    "LazyBlock",
    "FolderDefaults",
    "ParamSpec",
    "PipelineCallbacks",
    "PipelineSpec",
    "ScheduleSpec",
    "StepSpec",
    "TaskCallbacks",
    "TaskSettings",
]

TriggerRule = Literal[
    "all_success", "all_failed", "all_done", "all_done_min_one_success", "all_skipped", "one_success",
    "one_done", "one_failed", "none_failed", "none_failed_min_one_success", "none_skipped", "always",
]


class TaskCallbacks(Strict):
    """Task callbacks: dotted paths of functions or notifiers, called with the task context."""

    on_failure: list[CallbackSpec] = Field(default_factory=list)
    on_retry: list[CallbackSpec] = Field(default_factory=list)
    on_success: list[CallbackSpec] = Field(default_factory=list)
    on_execute: list[CallbackSpec] = Field(default_factory=list)


class PipelineCallbacks(Strict):
    """Pipeline-run callbacks (the DAG run failed / succeeded)."""

    on_failure: list[CallbackSpec] = Field(default_factory=list)
    on_success: list[CallbackSpec] = Field(default_factory=list)


class TaskSettings(Strict):
    """Task arguments set in `defaults` (folder or pipeline) and overridable on each step."""

    warehouse: str | None = Field(
        None,
        description="Airflow connection id of the warehouse (PostgreSQL). Default: [osds] default_warehouse_conn_id.",
        examples=["warehouse"],
    )
    retries: int | None = Field(None, ge=0, description="Retries after a failure.", examples=[2])
    retry_delay: Duration | None = Field(None, description="Wait between retries.", examples=["5m"])
    retry_exponential_backoff: bool | None = Field(None, description="Double the wait after each retry.")
    max_retry_delay: Duration | None = Field(None, description="Cap of the exponential backoff.", examples=["1h"])
    execution_timeout: Duration | None = Field(None, description="Fail a try that runs longer.", examples=["30m"])
    pool: str | None = Field(None, description="Airflow pool the task takes a slot from.")
    queue: str | None = Field(None, description="Executor queue (Celery).")
    priority_weight: int | None = Field(None, description="Scheduling priority.")
    callbacks: TaskCallbacks | None = Field(None, description="Task callbacks and notifiers.")


class ParamSpec(Strict):
    """A run parameter with a default and a JSON-Schema type, shown in the trigger form."""

    default: Any = Field(description="Value used when a run does not set it.")
    type: Literal["string", "integer", "number", "boolean", "array", "object", "null"] | None = None
    description: str | None = None
    enum: list[Any] | None = None
    minimum: float | None = None
    maximum: float | None = None


class DataCondition(Strict):
    """Run when all (`all_of`) or any (`any_of`) of these tables changed; items may nest."""

    all_of: list[str | DataCondition] | None = None
    any_of: list[str | DataCondition] | None = None

    @model_validator(mode="after")
    def _one_operator(self) -> DataCondition:
        if (self.all_of is None) == (self.any_of is None):
            raise ValueError("give exactly one of `all_of` or `any_of`")
        items = self.all_of if self.all_of is not None else self.any_of
        if not items:
            raise ValueError("a data condition needs at least one table")
        return self


class ScheduleSpec(Strict):
    """When the pipeline runs: on time (`cron` or `every`), on upstream data (`data`), or both."""

    cron: str | None = Field(None, description="Cron expression or preset.", examples=["0 6 * * *", "@hourly"])
    every: Duration | None = Field(None, description="Fixed interval.", examples=["30m"])
    data: Literal["all", "any"] | DataCondition | None = Field(
        None,
        description="`all`: when every table this pipeline reads from other pipelines changed; `any`: when one "
        "did; or an explicit condition on tables.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> ScheduleSpec:
        if self.cron is not None and self.every is not None:
            raise ValueError("give `cron` or `every`, not both")
        if self.cron is None and self.every is None and self.data is None:
            raise ValueError("give at least one of `cron`, `every` or `data`")
        if self.cron in RUN_PRESETS and self.data is not None:
            raise ValueError(f"`{self.cron}` cannot be combined with `data`: use a cron or `every` with `data`")
        return self

    @property
    def continuous(self) -> bool:
        """``@continuous``: a new run as soon as the last one ends (one at a time)."""
        return self.cron == "@continuous"


#: Presets that are not cron expressions: Airflow's own timetables for them.
RUN_PRESETS = ("@continuous", "@once")


def _schedule_shorthand(value: Any) -> Any:
    if value is None or isinstance(value, dict):
        return value
    if isinstance(value, str):
        if value.strip().lower() == "data":
            return {"data": "all"}
        if value.strip().lower() in ("none", "manual", ""):
            return None
        return {"cron": value}
    return value


class LazyBlock:
    """A step's field for one block, validated by the block's own model, imported on first use.

    The step model has a field per block name, but building it must not build the pydantic
    models of every block (most pipelines use two or three): the field's value is validated
    by ``BLOCKS[name].model`` only when a step gives it. Errors keep their locations, since a
    ``ValidationError`` raised here nests under the field. The JSON Schema is the block model's.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._validator: tuple[Any, Any] = (None, None)  # (block, its validator), once a step used the block

    @property
    def model(self) -> Any:
        return BLOCKS[self.name].model

    def __call__(self, value: Any, handler: Any) -> Any:
        if value is None:
            return None
        block = BLOCKS[self.name]
        cached, validate = self._validator
        if cached is not block:  # first use, or the block was replaced in the registry
            # Called once per step: straight to pydantic-core's validator, without model_validate's wrapper.
            core, expand = block.model.__pydantic_validator__.validate_python, block.expand_shorthand
            validate = core if expand is None else (lambda v: core(expand(v)))
            self._validator = (block, validate)
        return validate(value)

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: Any) -> dict[str, Any]:
        from pydantic import TypeAdapter

        block = BLOCKS[self.name]
        options = [block.model, type(None)]
        if block.shorthand_type is not None:
            options.insert(0, block.shorthand_type)
        # Through the generator itself, so the block's model becomes a `$defs` entry as a plain field's would.
        generate = handler.generate_json_schema.generate_inner
        return {"anyOf": [generate(TypeAdapter(t).core_schema) for t in options],
                "default": None, "description": block.description}


def _block_field(name: str) -> Any:
    if name == "group":  # nests steps (a recursive model), and is small: validated as a plain field
        return (GroupBlock | None, Field(None, description=BLOCKS[name].description))
    lazy = LazyBlock(name)
    return (Annotated[Any, WrapValidator(lazy), lazy], Field(None))


def _step_model() -> type[Strict]:
    block_fields: dict[str, Any] = {name: _block_field(name) for name in BLOCKS}
    return create_model(
        "StepSpec",
        __base__=_StepBase,
        __doc__="One task (or a `group` of steps). A step holds exactly one block.",
        **block_fields,
    )


# A base only subclassed (and `defaults.yml`'s model, for folders that have one) builds its validator
# when first used: pydantic builds each class's whole schema, bases included (~1–1.5 ms each).
_BASE_ONLY = ConfigDict(defer_build=True)
_BUILT = ConfigDict(defer_build=False)


class _StepBase(TaskSettings):
    after: list[str] = Field(default_factory=list, description="Steps (or groups) that must finish first.")
    reads: list[str | dict[str, str]] | None = Field(
        None,
        description="Data this step reads — tables (`schema.table`, `conn:schema.table`) or `{dashboard: key, "
        "connection: c}`, `{destination: object, connection: c}`, `{files: path-or-url}`; replaces what is "
        "derived from its block.",
        examples=[["raw.orders", {"files": "data/incoming/"}]],
    )
    writes: list[str | dict[str, str]] | None = Field(
        None, description="Data this step writes, in the same forms as `reads`; replaces what is derived from its block."
    )
    trigger_rule: TriggerRule | None = Field(None, description="When to run relative to upstream outcomes.")
    doc: str | None = Field(None, description="Markdown shown on the task in Airflow's UI.")

    @model_validator(mode="after")
    def _exactly_one_block(self) -> _StepBase:
        given = self._blocks_given()
        if len(given) != 1:
            given = [name for name in BLOCKS if name in given]  # in the registry's order
            names = ", ".join(f"`{n}`" for n in BLOCKS)
            found = f"found {', '.join(given)}" if given else "found none"
            raise ValueError(f"a step needs exactly one block among {names} ({found})")
        return self

    def _blocks_given(self) -> list[str]:
        # From the fields given (a set, usually 1–3 names) rather than a getattr per block: pydantic runs
        # the validator twice per nested step, and a project has thousands of steps.
        return [name for name in self.model_fields_set if name in BLOCKS and getattr(self, name) is not None]

    @cached_property
    def block_name(self) -> str:
        return self._blocks_given()[0]

    @cached_property
    def block(self) -> Any:
        return getattr(self, self.block_name)


StepSpec = _step_model()
GroupBlock.model_rebuild(_types_namespace={"StepSpec": StepSpec})
StepSpec.model_rebuild()


class _PipelineLevel(Strict):
    """Keys a folder's `defaults.yml` may share with the pipelines below it."""

    model_config = _BASE_ONLY

    start_date: dt.date | dt.datetime | None = Field(None, description="First date the schedule covers.")
    end_date: dt.date | dt.datetime | None = Field(None, description="Last date the schedule covers.")
    timezone: str | None = Field(None, description="IANA time zone of dates and cron.", examples=["Europe/Paris"])
    catchup: bool | None = Field(None, description="Run intervals missed since start_date.")
    tags: list[str] = Field(default_factory=list, description="Tags shown in Airflow's UI (folder tags are added).")
    owners: list[str] = Field(default_factory=list, description="Owners shown in Airflow's UI.")
    defaults: TaskSettings = Field(default_factory=TaskSettings, description="Task settings for every step.")
    callbacks: PipelineCallbacks | None = Field(None, description="Pipeline-run callbacks.")

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str | None) -> str | None:
        if value is not None:
            import pendulum

            try:
                pendulum.timezone(value)
            except Exception:
                raise ValueError(f"unknown time zone {value!r}: use an IANA name such as 'Europe/Paris' or 'UTC'") from None
        return value


class FolderDefaults(_PipelineLevel):
    """`defaults.yml`: settings shared by every pipeline file in its folder and below."""


class PipelineSpec(_PipelineLevel):
    """A pipeline file: one Airflow DAG."""

    model_config = _BUILT

    pipeline: Identifier = Field(description="Pipeline id, used as the DAG id.", examples=["orders"])
    description: str = Field("", description="One line shown in Airflow's DAG list.")
    doc: str | None = Field(None, description="Markdown documentation shown on the DAG page.")
    schedule: ScheduleSpec | None = Field(
        None,
        description="Cron/preset string, `data` (run when upstream data changed), or a mapping with "
        "`cron`/`every`/`data`. Omitted: manual runs only.",
        examples=["@daily", "@continuous", "data", {"cron": "@daily", "data": "any"}],
    )
    max_active_runs: int | None = Field(None, ge=1, description="Concurrent runs of this pipeline.")
    dagrun_timeout: Duration | None = Field(None, description="Fail a run that takes longer.")
    params: dict[str, ParamSpec | Any] = Field(
        default_factory=dict, description="Run parameters: `name: value` or `name: {default:, type:, …}`."
    )
    steps: dict[str, StepSpec] = Field(min_length=1, description="Steps keyed by id; each becomes a task.")  # type: ignore[valid-type]

    @field_validator("schedule", mode="before", json_schema_input_type=str | ScheduleSpec | None)
    @classmethod
    def _schedule(cls, value: Any) -> Any:
        return _schedule_shorthand(value)

    @model_validator(mode="after")
    def _continuous_runs_one_at_a_time(self) -> PipelineSpec:
        if self.schedule is not None and self.schedule.continuous and (self.max_active_runs or 1) > 1:
            raise ValueError("`schedule: \"@continuous\"` runs one run at a time: drop `max_active_runs` or set it to 1")
        return self

    @field_validator("params", mode="before")
    @classmethod
    def _params(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: ParamSpec(**v) if isinstance(v, dict) and "default" in v else v for k, v in value.items()}
        return value

    @field_validator("steps")
    @classmethod
    def _step_ids(cls, steps: dict[str, Any]) -> dict[str, Any]:
        _check_step_ids(steps)
        return steps


def _check_step_ids(steps: dict[str, Any]) -> None:
    for step_id, step in steps.items():
        if not re.match(IDENTIFIER_PATTERN, step_id):
            raise ValueError(f"step id {step_id!r} must start with a letter and use only letters, digits and _")
        if step.group is not None:
            _check_step_ids(step.group.steps)
