"""The pipeline language as typed models: what a pipeline YAML file may say.

Closed schema: every model forbids unknown keys, so a typo is an error instead of a
silently ignored setting. Field descriptions feed the JSON Schema and the docs.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["Defaults", "PipelineSpec", "SqlBlock", "StepSpec"]

_ID_PATTERN = r"^[A-Za-z][A-Za-z0-9_]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Defaults(_Strict):
    """Settings every step of the pipeline inherits unless it sets its own."""

    warehouse: str | None = Field(
        None,
        description="Airflow connection id of the warehouse (PostgreSQL). Default: [osds] default_warehouse_conn_id.",
        examples=["warehouse"],
    )
    retries: int = Field(0, ge=0, description="Retries of each task.", examples=[2])


class SqlBlock(_Strict):
    """Run SQL on the warehouse: inline ``query`` or a ``file`` relative to the pipeline file."""

    query: str | None = Field(None, description="SQL to run (templated with Jinja).", examples=["SELECT 1"])
    file: str | None = Field(
        None, description="Path of a .sql file, relative to the pipeline file.", examples=["sql/orders_daily.sql"]
    )
    warehouse: str | None = Field(None, description="Connection id; overrides defaults.warehouse.")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        # `sql: "SELECT …"` is the common case; it means `sql: {query: "SELECT …"}`.
        return {"query": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _exactly_one_source(self) -> SqlBlock:
        if (self.query is None) == (self.file is None):
            raise ValueError("give exactly one of `query` or `file`")
        return self


class StepSpec(_Strict):
    """One task. A step holds exactly one typed block (``sql`` for now) plus ordering and data keys."""

    sql: SqlBlock = Field(description="Run SQL on the warehouse.")
    after: list[str] = Field(default_factory=list, description="Steps that must finish first (ordering no data expresses).")
    reads: list[str] = Field(default_factory=list, description="Tables this step reads, as `schema.table`.")
    writes: list[str] = Field(default_factory=list, description="Tables this step writes, as `schema.table`.")


class PipelineSpec(_Strict):
    """A pipeline file: one Airflow DAG."""

    pipeline: str = Field(pattern=_ID_PATTERN, description="Pipeline id, used as the DAG id.", examples=["orders"])
    description: str = Field("", description="One line shown in Airflow's DAG list.")
    schedule: str | None = Field(None, description="Cron expression or preset (`@daily`); omitted: manual only.")
    start_date: dt.date = Field(dt.date(2026, 1, 1), description="First date the schedule applies to.")
    catchup: bool = Field(False, description="Run the intervals missed since start_date.")
    tags: list[str] = Field(default_factory=list, description="Tags shown in Airflow's UI.")
    defaults: Defaults = Field(default_factory=Defaults)
    steps: dict[str, StepSpec] = Field(min_length=1, description="Steps keyed by id; each becomes a task.")

    @field_validator("steps")
    @classmethod
    def _step_ids(cls, steps: dict[str, StepSpec]) -> dict[str, StepSpec]:
        import re

        for step_id in steps:
            if not re.match(_ID_PATTERN, step_id):
                raise ValueError(f"step id {step_id!r} must start with a letter and use only letters, digits and _")
        return steps

    @model_validator(mode="after")
    def _after_refers_to_steps(self) -> PipelineSpec:
        for step_id, step in self.steps.items():
            unknown = [name for name in step.after if name not in self.steps]
            if unknown:
                raise ValueError(f"step {step_id!r}: `after` names unknown step(s) {unknown}; steps are {list(self.steps)}")
        return self
