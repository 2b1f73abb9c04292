"""``sensor``: wait for a SQL condition, a file/object, or another pipeline's step."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import Field, model_validator

from airflow_osds.factory.blocks import BlockType, DataIO, ProviderModules, StepContext
from airflow_osds.factory.compiled import TaskNode
from airflow_osds.factory.blocks.sql import sql_data
from airflow_osds.factory.types import Duration, Identifier, Strict


class SensorBlock(Strict):
    """Wait until a condition holds. Give exactly one of ``sql``, ``path`` or ``pipeline``."""

    sql: str | None = Field(
        None,
        description="Succeeds when the first cell of the first row is truthy (templated).",
        examples=["SELECT count(*) > 0 FROM raw.orders WHERE ordered_at::date = '{{ ds }}'"],
    )
    warehouse: str | None = Field(None, description="Connection id for `sql`; overrides defaults.warehouse.")
    path: str | None = Field(
        None,
        description="A file, glob or object-store URL that must exist (templated). Relative paths "
        "resolve against the pipeline file.",
        examples=["data/incoming/*.csv", "s3://bucket/exports/{{ ds }}/_SUCCESS"],
    )
    pipeline: Identifier | None = Field(None, description="Wait for a run of this pipeline (same logical date).")
    step: str | None = Field(None, description="With `pipeline`: wait for this step only.")
    poke_interval: Duration = Field(dt.timedelta(seconds=60), description="Time between checks.")
    timeout: Duration = Field(dt.timedelta(hours=1), description="Fail (or skip with soft_fail) after this long.")
    mode: Literal["poke", "reschedule"] = Field(
        "reschedule", description="`reschedule` frees the worker slot between checks."
    )
    soft_fail: bool = Field(False, description="Skip instead of failing on timeout.")

    @model_validator(mode="after")
    def _one_condition(self) -> SensorBlock:
        given = [name for name in ("sql", "path", "pipeline") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of `sql`, `path` or `pipeline` (got {', '.join(given) or 'none'})")
        if self.step is not None and self.pipeline is None:
            raise ValueError("`step` needs `pipeline`")
        return self


def data(block: SensorBlock, ctx: StepContext) -> DataIO:
    if block.sql is None:
        return DataIO()
    return sql_data(block.sql, ctx.warehouse, reads_only=True)


def compile_task(block: SensorBlock, ctx: StepContext) -> TaskNode:
    common: dict[str, Any] = {
        "poke_interval": block.poke_interval.total_seconds(),
        "timeout": block.timeout.total_seconds(),
        "mode": block.mode,
        "soft_fail": block.soft_fail,
    }
    if block.sql is not None:
        return ctx.task("airflow.providers.common.sql.sensors.sql.SqlSensor", {"conn_id": ctx.warehouse, "sql": block.sql, **common})
    if block.path is not None:
        return ctx.task("airflow_osds.sensors.path.PathSensor", {"path": block.path, "base_dir": str(ctx.pipeline_dir), **common})
    return ctx.task(
        "airflow.providers.standard.sensors.external_task.ExternalTaskSensor",
        {"external_dag_id": block.pipeline, "external_task_id": block.step, **common},
    )


BLOCK = BlockType(
    name="sensor",
    model=SensorBlock,
    description="Wait for a condition.",
    compile=compile_task,
    data=data,
    warehouse_field="warehouse",
    provides=ProviderModules(integration="Warehouse SQL", sensors=("airflow_osds.sensors.path",)),
)
