"""Wait for enriched-event files that are not loaded yet."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout, AirflowSkipException
from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_osds.operators._lineage import OpenLineageMixin

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["SnowplowNewFilesSensor"]

_DEFERRAL_GRACE_S = 60.0


class SnowplowNewFilesSensor(OpenLineageMixin, BaseSensorOperator):
    """
    Succeeds when ``source`` holds enriched files that the loader's ledger does not list as loaded
    into ``<schema>.events``; returns (XCom) their URIs. Deferrable by default: the waiting happens in
    the triggerer (:class:`~airflow_osds.triggers.snowplow.SnowplowNewFilesTrigger`), no worker slot held.

    :param source: a local file or folder, or an object-storage URL (templated).
    :param warehouse_conn_id: the warehouse's ``postgres`` connection.
    :param source_conn_id: the connection object-storage URLs are read with.
    :param schema: the events table's schema.
    :param base_dir: what relative local paths resolve against.
    :param deferrable: wait in the triggerer (default) rather than poking from a worker.
    """

    template_fields: Sequence[str] = ("source",)
    ui_color = "#8f6ad4"

    def __init__(self, *, source: str, warehouse_conn_id: str = "warehouse", source_conn_id: str | None = None,
                 schema: str = "atomic", base_dir: str = "", deferrable: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.warehouse_conn_id = warehouse_conn_id
        self.source_conn_id = source_conn_id
        self.schema = schema
        self.base_dir = base_dir
        self.deferrable = deferrable

    def _source(self) -> str:
        from airflow_osds.operators.snowplow import _resolve

        return _resolve(self.source, self.base_dir)

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        from airflow_osds.triggers.snowplow import SnowplowNewFilesTrigger

        source = self._source()
        self.log.info("Deferring until %s holds enriched files not loaded into %s.events", source, self.schema)
        self.defer(
            trigger=SnowplowNewFilesTrigger(
                source=source, warehouse_conn_id=self.warehouse_conn_id, source_conn_id=self.source_conn_id,
                schema=self.schema, end_time=time.time() + self.timeout, poke_interval=self.poke_interval,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout + _DEFERRAL_GRACE_S),
        )

    def poke(self, context: Context) -> PokeReturnValue:
        found = self.pending_files()
        self.log.info("%d enriched file(s) not loaded yet at %s", len(found), self._source())
        return PokeReturnValue(bool(found), found)

    def pending_files(self) -> list[str]:
        """URIs of the files at the (rendered) source that the ledger does not list as loaded."""
        from airflow_osds.hooks.snowplow import SnowplowHook

        hook = SnowplowHook(self.warehouse_conn_id, source_conn_id=self.source_conn_id)
        try:
            return [f.uri for f in hook.pending(self._source(), schema=self.schema)]
        except FileNotFoundError:
            return []

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> list[str]:
        status = event.get("status") if isinstance(event, dict) else None
        if status == "found":
            assert event is not None
            self.log.info("New enriched files: %s", ", ".join(event["files"]))
            return list(event["files"])
        if status == "timeout":
            message = f"No new enriched files at {self._source()} after {self.timeout:.0f} s"
            if self.soft_fail:  # BaseSensorOperator applies soft_fail to poking only, not to a deferred wait
                raise AirflowSkipException(f"{message} (soft_fail: skipped)")
            raise AirflowSensorTimeout(message)
        message = event.get("message") if isinstance(event, dict) else event
        raise AirflowFailException(f"{self.task_id}: waiting for enriched files failed: {message}")
