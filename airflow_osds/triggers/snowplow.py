"""Trigger waiting, in Airflow's triggerer, until enriched files not yet loaded appear at a source."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

__all__ = ["SnowplowNewFilesTrigger"]


class SnowplowNewFilesTrigger(BaseTrigger):
    """
    Poll ``source`` until it holds files the ledger does not list as loaded into ``<schema>.events``,
    then fire ``{"status": "found", "files": [uri, …]}``; ``{"status": "timeout"}`` after ``end_time``.

    Listing (local or object storage) and the ledger query are blocking calls: they run in a
    thread, never on the triggerer's event loop. The connections are looked up inside the
    triggerer, so no password is part of the kwargs Airflow stores.

    :param source: local file/folder or object-storage URL (already rendered and resolved).
    :param warehouse_conn_id: the warehouse's ``postgres`` connection (the ledger is there).
    :param source_conn_id: the connection object-storage URLs are read with.
    :param schema: the events table's schema.
    :param end_time: UNIX time after which the trigger gives up (absolute: survives a triggerer restart).
    :param poke_interval: seconds between polls.
    """

    def __init__(self, *, source: str, warehouse_conn_id: str, source_conn_id: str | None = None,
                 schema: str = "atomic", end_time: float, poke_interval: float = 60.0) -> None:
        super().__init__()
        self.source = source
        self.warehouse_conn_id = warehouse_conn_id
        self.source_conn_id = source_conn_id
        self.schema = schema
        self.end_time = end_time
        self.poke_interval = poke_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}", {
            "source": self.source, "warehouse_conn_id": self.warehouse_conn_id,
            "source_conn_id": self.source_conn_id, "schema": self.schema, "end_time": self.end_time,
            "poke_interval": self.poke_interval,
        })  # fmt: skip

    def _pending(self) -> list[str]:
        from airflow_osds.hooks.snowplow import SnowplowHook

        hook = SnowplowHook(self.warehouse_conn_id, source_conn_id=self.source_conn_id)
        try:
            return [f.uri for f in hook.pending(self.source, schema=self.schema)]
        except FileNotFoundError:
            return []  # the folder/prefix may appear later

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while True:
            try:
                found = await asyncio.to_thread(self._pending)
            except Exception as exc:  # noqa: BLE001 — the event carries the error to the task
                yield TriggerEvent({"status": "error", "message": f"{type(exc).__name__}: {exc}", "files": []})
                return
            if found:
                self.log.info("%d enriched file(s) not loaded yet at %s", len(found), self.source)
                yield TriggerEvent({"status": "found", "files": found})
                return
            self.log.info("%s: nothing new to load yet", self.source)
            remaining = self.end_time - time.time()
            if remaining <= 0:
                yield TriggerEvent({"status": "timeout", "files": []})
                return
            await asyncio.sleep(min(self.poke_interval, remaining))
