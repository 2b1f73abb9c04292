"""``reverse_etl``: sync warehouse rows to an operational tool (an HTTP API, HubSpot, Mailchimp, another
PostgreSQL), sending only what changed since what was last delivered."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, model_validator

from airflow_osds.assets import DestinationRef, parse_table
from airflow_osds.factory.blocks import BlockType, DataIO, ProviderModules, StepContext
from airflow_osds.factory.compiled import TaskNode
from airflow_osds.factory.types import Strict


class SyncSource(Strict):
    """The rows to sync: a table (a dbt model's relation too) or a query, with a unique key."""

    table: str | None = Field(None, description="`schema.table` on the warehouse.", examples=["marts.high_value_users"])
    sql: str | None = Field(None, description="A query (templated); its tables are read from it.")
    key: str = Field(description="The column that identifies a record (unique, not null).", examples=["user_id"])

    @model_validator(mode="after")
    def _one(self) -> SyncSource:
        if (self.table is None) == (self.sql is None):
            raise ValueError("give exactly one of `table` or `sql`")
        return self


class ComputedField(Strict):
    """A destination field that is not a plain source column: a constant or a SQL expression."""

    value: Any = Field(None, description="A constant (templated: `{{ ds }}`).")
    sql: str | None = Field(None, description="A SQL expression over the source's columns.", examples=["lower(email)"])

    @model_validator(mode="after")
    def _one(self) -> ComputedField:
        if (self.sql is None) == ("value" not in self.model_fields_set):
            raise ValueError("give exactly one of `value` or `sql`")
        return self


class _Destination(Strict):
    connection: str = Field(description="The Airflow connection of the destination.")
    batch_size: int | None = Field(None, ge=1, description="Records per request (default: the destination's).")
    rate_limit: float | None = Field(None, ge=0, description="Requests per second (default: the destination's).")


class HttpTarget(_Destination):
    """A JSON batch endpoint or webhook (`reverse_etl_http` connection: base URL, auth header)."""

    kind: Literal["http"]
    path: str = Field(description="Path under the connection's base URL.", examples=["/contacts/batch"])
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    body: Any = Field(None, description='The request body, with "$records" where the batch goes and "$op" '
                      'for the batch\'s operation (default {"records": [...]}; templated).',
                      examples=[{"event": "customers.$op", "items": "$records"}])
    object: str | None = Field(None, description="What the outputs call it (default: the path).")

    @model_validator(mode="after")
    def _body(self) -> HttpTarget:
        _http_body(self.body)
        return self


class PostgresTarget(_Destination):
    """A table in another PostgreSQL database (`postgres` connection), upserted by key."""

    kind: Literal["postgres"]
    table: str = Field(description="`schema.table`; it must exist, with a unique key column.")
    key_column: str | None = Field(None, description="The table's key column (default: the source key).")


class HubSpotTarget(_Destination):
    """HubSpot CRM objects, upserted in batches by a unique property (`reverse_etl_http` connection: token)."""

    kind: Literal["hubspot"]
    object_type: str = Field("contacts", description="The CRM object type.", examples=["contacts", "companies"])
    id_property: str = Field("email", description="The unique property records are matched on.")


class MailchimpTarget(_Destination):
    """Members of a Mailchimp audience (`reverse_etl_http` connection: base URL `https://<dc>.api.mailchimp.com`,
    the API key as password). `email_address` (or `email`) addresses a member; the other fields are merge
    fields; the record's groups become tags."""

    kind: Literal["mailchimp"]
    list_id: str = Field(description="The audience (list) id.")
    status: Literal["subscribed", "pending", "unsubscribed", "transactional"] = Field(
        "subscribed", description="The status of members whose record has no `status` field.")
    update_existing: bool = Field(True, description="Update members already on the list (else only add new ones).")
    sync_tags: bool = Field(False, description="Replace each member's tags by the record's groups (else groups are "
                            "only added; tags set outside the sync would be removed too).")


Destination = Annotated[HttpTarget | PostgresTarget | HubSpotTarget | MailchimpTarget, Field(discriminator="kind")]


class ReverseEtlBlock(Strict):
    """Sync warehouse rows to an operational tool, sending only what changed: a hash per key of what
    was last *delivered* is kept in the warehouse and the changes are computed in SQL. Records the
    destination rejects are stored with the reason and retried next run; only acknowledged records
    count as delivered, so a failed run's retry sends just the rest.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    source: SyncSource
    fields: dict[str, str | ComputedField] = Field(description="Destination field → source column, or a "
                                                   "`{value: …}` constant / `{sql: …}` expression.",
                                                   examples=[{"email": "email", "plan": {"sql": "upper(plan)"}}])
    destination: Destination
    mode: Literal["upsert", "update", "insert", "mirror"] = Field(
        "upsert", description="upsert: create and update; update: send every new or changed record as an update "
        "(the destination rejects those it does not have); insert: only new records; mirror: upsert, and delete "
        "what left the source.")
    groups: dict[str, str] = Field(default_factory=dict, description="Named groups → SQL condition; each record "
                                   "carries the names of the groups it is in.",
                                   examples=[{"vip": "lifetime_value >= 10000"}])
    group_field: str | None = Field(None, description="The destination field that holds the group names (a list).")
    sync_id: str | None = Field(None, description="The state's id (default `<pipeline>.<step>`).")
    full_resync: bool | str = Field(False, description="Send every record again (templated).")
    max_rejected: int | None = Field(None, ge=0, description="Fail past this many rejected records.")
    max_rejected_ratio: float | None = Field(None, ge=0, le=1, description="Fail when more than this fraction "
                                             "of the records sent is rejected.")
    warehouse: str | None = Field(None, description="Connection id of the source's warehouse; overrides defaults.warehouse.")

    @model_validator(mode="after")
    def _groups(self) -> ReverseEtlBlock:
        if self.group_field and not self.groups:
            raise ValueError("`group_field` needs `groups`")
        if self.group_field in self.fields:
            raise ValueError(f"`group_field` {self.group_field!r} is also a mapped field")
        return self


def destination_object(destination: Any) -> str:
    """The object of the destination's asset (``destination:<conn>/<object>``)."""
    if destination.kind == "http":
        return destination.object or destination.path.strip("/")
    if destination.kind == "postgres":
        return destination.table
    if destination.kind == "hubspot":
        return destination.object_type
    return f"lists/{destination.list_id}"


def data(block: ReverseEtlBlock, ctx: StepContext) -> DataIO:
    writes = frozenset({DestinationRef(block.destination.connection, destination_object(block.destination))})
    if block.source.table is not None:
        return DataIO(reads=frozenset({parse_table(block.source.table, conn_id=ctx.warehouse)}), writes=writes)
    from airflow_osds.factory.blocks.sql import sql_data

    scanned = sql_data(block.source.sql or "", ctx.warehouse, reads_only=True)
    return DataIO(reads=scanned.reads, writes=writes, notes=scanned.notes)


def _http_body(body: Any) -> Any:
    from airflow_osds.reverse_etl.destinations.http import RECORDS

    if body is not None and RECORDS not in str(body):
        raise ValueError(f"`body` must hold {RECORDS!r} where the batch of records goes")
    return body


def compile_task(block: ReverseEtlBlock, ctx: StepContext) -> TaskNode:
    kwargs: dict[str, Any] = {
        "source": block.source.model_dump(exclude_none=True),
        "fields": {k: v if isinstance(v, str) else v.model_dump(exclude_unset=True) for k, v in block.fields.items()},
        "destination": block.destination.model_dump(exclude_none=True),
        "mode": block.mode,
        "warehouse_conn_id": ctx.warehouse,
        "full_resync": block.full_resync,
    }
    for name in ("groups", "group_field", "sync_id"):
        if getattr(block, name):
            kwargs[name] = getattr(block, name)
    for name in ("max_rejected", "max_rejected_ratio"):  # 0 is a threshold too
        if getattr(block, name) is not None:
            kwargs[name] = getattr(block, name)
    return ctx.task("airflow_osds.operators.reverse_etl.ReverseEtlSyncOperator", kwargs)


BLOCK = BlockType(
    name="reverse_etl",
    model=ReverseEtlBlock,
    description="Sync warehouse rows to an operational tool, sending only what changed.",
    compile=compile_task,
    data=data,
    warehouse_field="warehouse",
    provides=ProviderModules(
        integration="Reverse ETL",
        operators=("airflow_osds.operators.reverse_etl",),
        hooks=("airflow_osds.hooks.reverse_etl",),
    ),
)
