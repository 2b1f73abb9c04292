"""``snowplow``: load Snowplow enriched events into the warehouse (``atomic.events`` + one table per entity schema)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from pydantic import ConfigDict, Field, field_validator

from airflow_osds.assets import FilesRef, TableRef
from airflow_osds.factory.blocks import BlockType, DataIO, FieldProblem, ProviderModules, StepContext
from airflow_osds.factory.compiled import GroupNode, TaskNode
from airflow_osds.factory.types import Duration, Strict
from airflow_osds.snowplow import DEFAULT_CHUNK_LINES, DEFAULT_HELPER_AFTER_LINES, DEFAULT_MAX_BAD_RATIO

_ENTITY = re.compile(r"^(?:iglu:)?([a-zA-Z0-9-_.]+)/([a-zA-Z0-9-_]+)/(?:jsonschema/)?([1-9][0-9]*)(?:-[0-9]+-[0-9]+)?$")


class WaitForFiles(Strict):
    """How the step waits for enriched files its ledger does not list yet (in the triggerer, no worker held)."""

    poke_interval: Duration = Field(dt.timedelta(seconds=30), description="Time between listings of the source.")
    timeout: Duration = Field(dt.timedelta(hours=1), description="Give up waiting after this long.")
    soft_fail: bool = Field(True, description="On timeout, skip the load (and what needs it) instead of failing.")


class SnowplowBlock(Strict):
    """Load the enriched-event files (Snowplow's 131-field TSV, gzip or not) at ``source`` that are
    not loaded yet into ``<schema>.events`` and one table per entity schema (``vendor_name_model``),
    their contexts validated against Iglu. Bad lines become bad rows in ``<schema>.osds_bad_rows``;
    the task fails past ``max_bad_rows`` / ``max_bad_ratio``. Re-runs and retries add nothing twice.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    source: str = Field(
        description="A local file or folder (relative to the pipeline file) or an object-storage URL (templated).",
        examples=["../data/enriched/", "s3://acme-snowplow/enriched/{{ ds }}/"],
    )
    iglu: list[str] = Field(
        description="Iglu registries in priority order: static registry folders (relative to the pipeline file) "
        "and/or http(s):// registry URLs.",
        examples=[["../iglu"], ["../iglu", "http://iglucentral.com"]],
    )
    entities: list[str] = Field(
        default_factory=list,
        description="Entity schemas (`vendor/name/jsonschema/MODEL`) whose tables this step declares as outputs, "
        "so steps that read them run after it. Entities of other schemas load too.",
        examples=[["com.snowplowanalytics.snowplow/web_page/jsonschema/1"]],
    )
    schema_: str = Field("atomic", alias="schema", description="Schema of `events` and the entity tables.")
    warehouse: str | None = Field(None, description="Connection id; overrides defaults.warehouse.")
    source_conn: str | None = Field(None, description="Connection object-storage URLs are read with.")
    bad_rows_table: str | None = Field(None, description="`schema.table` for bad rows (default `<schema>.osds_bad_rows`).")
    max_bad_rows: int | None = Field(None, ge=0, description="Fail past this many bad rows (default: no count limit).")
    max_bad_ratio: float | None = Field(DEFAULT_MAX_BAD_RATIO, ge=0, le=1, description="Fail when bad rows exceed this fraction of the lines read.")
    chunk_lines: int = Field(DEFAULT_CHUNK_LINES, ge=1, description="Lines per transaction (bounds memory).")
    parse_helper: bool = Field(
        True,
        description=f"Parse in a second process once a load has parsed {DEFAULT_HELPER_AFTER_LINES:,} lines, so "
        "parsing and writing use two cores; `false` keeps the load in one process (for a worker whose cores other "
        "tasks need).",
    )
    wait_for_files: bool | WaitForFiles = Field(
        False,
        description="Start with a deferrable sensor that waits until the source holds files not loaded yet, then "
        "load them: `true` or the sensor's settings. The step becomes a group of `new_files` and `load`; with "
        "`schedule: \"@continuous\"` the pipeline loads each batch as it lands.",
    )

    @field_validator("entities")
    @classmethod
    def _entity_keys(cls, value: list[str]) -> list[str]:
        for item in value:
            if not _ENTITY.match(item):
                raise ValueError(f"{item!r} is not an entity schema: write vendor/name/jsonschema/MODEL, "
                                 "e.g. com.snowplowanalytics.snowplow/web_page/jsonschema/1")
        return value


def _location(block: SnowplowBlock, ctx: StepContext) -> str:
    """The source as a stable location URL: a template's fixed prefix; local paths as file:// URLs."""
    source = block.source.split("{{", 1)[0]
    if "://" in source:
        return source
    return "file://" + str(ctx.path(source or "."))


def data(block: SnowplowBlock, ctx: StepContext) -> DataIO:
    from airflow_osds.snowplow.iglu import SchemaKey
    from airflow_osds.snowplow.tables import table_name

    writes: set[Any] = {TableRef(ctx.warehouse, block.schema_, "events")}
    for item in block.entities:
        match = _ENTITY.match(item)
        assert match is not None  # validated
        vendor, name, model = match.groups()
        try:
            key = SchemaKey(vendor=vendor, name=name, format="jsonschema", model=int(model), revision=0, addition=0)
            writes.add(TableRef(ctx.warehouse, block.schema_, table_name(key)))
        except ValueError as exc:
            raise FieldProblem("entities", str(exc)) from None
    return DataIO(reads=frozenset({FilesRef(_location(block, ctx))}), writes=frozenset(writes))


def compile_step(block: SnowplowBlock, ctx: StepContext) -> TaskNode | GroupNode:
    """The load task; with ``wait_for_files``, a group of the new-files sensor then the load."""
    if not block.wait_for_files:
        return ctx.task(_LOAD, _load_kwargs(block, ctx))
    settings = block.wait_for_files if isinstance(block.wait_for_files, WaitForFiles) else WaitForFiles()
    # The step's outlets (and lineage inputs) belong to the load; the other settings (retries…) to both.
    sensor_kwargs: dict[str, Any] = {
        "source": block.source,
        "warehouse_conn_id": ctx.warehouse,
        "schema": block.schema_,
        "base_dir": str(ctx.pipeline_dir),
        "deferrable": True,
        "poke_interval": settings.poke_interval.total_seconds(),
        "timeout": settings.timeout.total_seconds(),
        "soft_fail": settings.soft_fail,
        **ctx.member_settings,
    }
    if block.source_conn:
        sensor_kwargs["source_conn_id"] = block.source_conn
    sensor = ctx.member(_SENSOR_ID, _SENSOR, sensor_kwargs)
    load = ctx.member(_LOAD_ID, _LOAD, {**_load_kwargs(block, ctx), **ctx.task_kwargs})
    return GroupNode(id=ctx.step_id, group_id=ctx.task_id, where=ctx.where, tooltip="Wait for new enriched files, then load them",
                     children=[sensor, load], edges=[(sensor.id, load.id)])


_LOAD = "airflow_osds.operators.snowplow.SnowplowLoadOperator"
_LOAD_ID = "load"
_SENSOR = "airflow_osds.sensors.snowplow.SnowplowNewFilesSensor"
_SENSOR_ID = "new_files"


def _load_kwargs(block: SnowplowBlock, ctx: StepContext) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "source": block.source,
        "iglu": block.iglu,
        "warehouse_conn_id": ctx.warehouse,
        "schema": block.schema_,
        "max_bad_rows": block.max_bad_rows,
        "max_bad_ratio": block.max_bad_ratio,
        "chunk_lines": block.chunk_lines,
        "parse_helper": block.parse_helper,
        "base_dir": str(ctx.pipeline_dir),
    }
    if block.source_conn:
        kwargs["source_conn_id"] = block.source_conn
    if block.bad_rows_table:
        kwargs["bad_rows_table"] = block.bad_rows_table
    return kwargs


BLOCK = BlockType(
    name="snowplow",
    model=SnowplowBlock,
    description="Load Snowplow enriched events into the warehouse.",
    compile=compile_step,
    data=data,
    warehouse_field="warehouse",
    provides=ProviderModules(
        integration="Snowplow",
        operators=("airflow_osds.operators.snowplow",),
        sensors=("airflow_osds.sensors.snowplow",),
        hooks=("airflow_osds.hooks.snowplow",),
        triggers=("airflow_osds.triggers.snowplow",),
        external_doc_url="https://docs.snowplow.io/docs/api-reference/loaders-storage-targets/snowplow-postgres-loader/",
    ),
)
