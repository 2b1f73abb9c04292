"""Trigger waiting, in Airflow's triggerer, until dbt sources are fresh in the warehouse."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

from airflow.sdk import BaseHook
from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_osds.dbt.freshness import (
    APPLICATION_NAME,
    FreshnessCheck,
    FreshnessResult,
    acheck_freshness,
    describe_results,
)
from airflow_osds.postgres import connect_kwargs

__all__ = ["TRIGGER_STATUSES", "DbtSourceFreshnessTrigger", "freshness_event"]

#: The ``status`` of the one event :class:`DbtSourceFreshnessTrigger` yields.
TRIGGER_STATUSES = ("fresh", "timeout", "error")


def freshness_event(status: str, message: str, results: Iterable[FreshnessResult] = ()) -> TriggerEvent:
    """The trigger's terminal event: ``{"status", "message", "results": [FreshnessResult.to_dict()]}``."""
    if status not in TRIGGER_STATUSES:
        raise ValueError(f"freshness event status {status!r} is not one of {TRIGGER_STATUSES}")
    return TriggerEvent({"status": status, "message": message, "results": [r.to_dict() for r in results]})


class DbtSourceFreshnessTrigger(BaseTrigger):
    """
    Poll the warehouse until every source table is fresh, then fire one event.

    Each poll connects with async psycopg (autocommit), runs one ``max(loaded_at_field)``
    query per table and applies dbt's thresholds; dbt itself never runs here. The connection
    is looked up when the trigger runs, inside the triggerer, so no password is ever part of
    the trigger's kwargs (which Airflow stores in its metadata database).

    .. seealso::
        :class:`airflow_osds.sensors.dbt.DbtSourceFreshnessSensor`, which builds the checks.

    :param conn_id: the warehouse's ``postgres`` connection.
    :param checks: :meth:`FreshnessCheck.to_dict` of each table to check.
    :param end_time: UNIX time after which the trigger gives up with ``timeout``. An absolute
        time, not a duration: a trigger re-created after a triggerer restart keeps the deadline.
    :param poke_interval: seconds between polls.
    :param allow_warn: count sources in dbt's ``warn`` state as fresh.
    """

    def __init__(
        self,
        *,
        conn_id: str,
        checks: list[dict[str, Any]],
        end_time: float,
        poke_interval: float = 60.0,
        allow_warn: bool = False,
    ) -> None:
        super().__init__()
        # Only JSON primitives: Airflow serialises trigger kwargs with serde, which rejects
        # other types, and re-creates the trigger from them in the triggerer.
        self.conn_id = conn_id
        self.checks = checks
        self.end_time = end_time
        self.poke_interval = poke_interval
        self.allow_warn = allow_warn

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airflow_osds.triggers.dbt.DbtSourceFreshnessTrigger",
            {
                "conn_id": self.conn_id,
                "checks": self.checks,
                "end_time": self.end_time,
                "poke_interval": self.poke_interval,
                "allow_warn": self.allow_warn,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        checks = [FreshnessCheck.from_dict(c) for c in self.checks]
        while True:
            try:
                results = await self._poll(checks)
            except Exception as exc:  # any failure ends the wait with an event the task reports
                yield freshness_event("error", f"{type(exc).__name__}: {exc}")
                return
            stale = [r for r in results if not r.fresh]
            if not stale:
                yield freshness_event("fresh", f"{len(results)} source(s) fresh", results)
                return
            remaining = self.end_time - time.time()
            if remaining <= 0:
                yield freshness_event("timeout", f"{len(stale)} of {len(results)} source(s) still stale", results)
                return
            self.log.info("Still stale, next check in %.0f s:\n%s", min(self.poke_interval, remaining), describe_results(stale))
            await asyncio.sleep(min(self.poke_interval, remaining))

    async def _poll(self, checks: list[FreshnessCheck]) -> list[FreshnessResult]:
        import psycopg

        # The async lookup: the sync one would block the triggerer's event loop (and can deadlock
        # with the runner's own calls to its supervisor).
        conn = await BaseHook.aget_connection(self.conn_id)
        # aextra_dejson masks secrets without the sync call that would block the loop; a
        # backend returning another connection class may lack it.
        aextra = getattr(conn, "aextra_dejson", None)
        kwargs = connect_kwargs(
            host=conn.host, port=conn.port, login=conn.login, password=conn.password, dbname=conn.schema,
            extra=await aextra() if aextra is not None else conn.extra_dejson, application_name=APPLICATION_NAME,
        )
        # A connection per poll: polls may be hours apart, and an idle one could be dropped meanwhile.
        async with await psycopg.AsyncConnection.connect(autocommit=True, **kwargs) as pg:
            return await acheck_freshness(pg, checks, allow_warn=self.allow_warn)
