"""Sync warehouse rows to an operational tool, sending only what changed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_osds.assets import DestinationRef, ref_from_uri
from airflow_osds.hooks.reverse_etl import ReverseEtlHook
from airflow_osds.operators._lineage import OpenLineageMixin
from airflow_osds.operators._templated import rendered_flag

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_osds.reverse_etl.spec import SyncSpec

__all__ = ["ReverseEtlSyncOperator"]


class ReverseEtlSyncOperator(OpenLineageMixin, BaseOperator):
    """
    Sync the rows of ``source`` to ``destination``, sending only what changed since what was last
    *delivered* (a hash per key kept in the warehouse, the changes computed in SQL).

    Records the destination rejects are stored with the reason (``osds_state.reverse_etl_rejections``)
    and sent again next run; the task fails past ``max_rejected`` / ``max_rejected_ratio``, after the
    acknowledged records are recorded. Batches are retried on 429, 5xx and timeouts with a backoff that
    honours ``Retry-After``; when the retries run out the task fails retryably, and its retry sends just
    what is left. A run with nothing to send is skipped, saying so (the destination is up to date: no
    Asset event); otherwise the destination's outlet gets an Asset event with the counts in its extra.

    :param source: ``{"table": "schema.table"}`` or ``{"sql": "..."}`` (templated), and ``key``.
    :param fields: destination field → source column, or ``{"value": …}`` / ``{"sql": …}`` (templated).
    :param destination: ``kind`` (``http``, ``postgres``, ``hubspot``, ``mailchimp``), ``connection``
        and the kind's settings (templated); see :meth:`ReverseEtlHook.destination`.
    :param mode: ``upsert``, ``update``, ``insert`` or ``mirror``.
    :param groups: group name → SQL condition over the source's columns.
    :param group_field: the destination field holding the names of a record's groups.
    :param sync_id: the state's id (default ``<dag_id>.<task_id>``).
    :param full_resync: send every record again (templated; ``"true"`` works).
    :param dry_run: log what would be sent (counts and the first records); send and record nothing.
    """

    template_fields: Sequence[str] = ("source", "fields", "destination", "full_resync", "sync_id")
    template_fields_renderers = {"source": "json", "fields": "json", "destination": "json"}
    ui_color = "#fde8d7"

    def __init__(
        self,
        *,
        source: Mapping[str, Any],
        fields: Mapping[str, Any],
        destination: Mapping[str, Any],
        mode: str = "upsert",
        warehouse_conn_id: str = "warehouse",
        groups: Mapping[str, str] | None = None,
        group_field: str | None = None,
        sync_id: str | None = None,
        full_resync: bool | str = False,
        max_rejected: int | None = None,
        max_rejected_ratio: float | None = None,
        dry_run: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source = dict(source)
        self.fields = dict(fields)
        self.destination = dict(destination)
        self.mode = mode
        self.warehouse_conn_id = warehouse_conn_id
        self.groups = dict(groups or {})
        self.group_field = group_field
        self.sync_id = sync_id
        self.full_resync = full_resync
        self.max_rejected = max_rejected
        self.max_rejected_ratio = max_rejected_ratio
        self.dry_run = dry_run

    @cached_property
    def hook(self) -> ReverseEtlHook:
        return ReverseEtlHook(self.warehouse_conn_id)

    def spec(self, sync_id: str) -> SyncSpec:
        from airflow_osds.reverse_etl.spec import spec_from_settings

        return spec_from_settings(sync_id=sync_id, source=self.source, fields=self.fields, mode=self.mode,
                                  groups=self.groups, group_field=self.group_field)

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

        from airflow_osds.exceptions import OsdsError
        from airflow_osds.reverse_etl.destinations.base import RetryableError
        from airflow_osds.reverse_etl.preview import describe_preview

        sync_id = self.sync_id or f"{context['dag'].dag_id}.{self.task_id}"
        full_resync = rendered_flag(self.full_resync, name="full_resync")
        try:
            spec = self.spec(sync_id)
            if self.dry_run:
                preview = self.hook.preview(spec, full_resync=full_resync)
                self.log.info("dry run, nothing sent:\n%s", describe_preview(preview))
                return {"dry_run": True, **preview.counts.as_dict()}
            report = self.hook.sync(spec, self.destination, full_resync=full_resync, max_rejected=self.max_rejected,
                                    max_rejected_ratio=self.max_rejected_ratio, say=self.log.info)
        except RetryableError as exc:
            raise AirflowException(str(exc)) from None  # the task's retry sends what is left
        except OsdsError as exc:
            raise AirflowFailException(str(exc)) from None
        counts = report.counts()
        if not report.sent:
            raise AirflowSkipException(f"nothing to send: {report.summary()}")
        for outlet in self.outlets:
            if isinstance(ref_from_uri(getattr(outlet, "uri", "")), DestinationRef):
                context["outlet_events"][outlet].extra = counts
        return counts
