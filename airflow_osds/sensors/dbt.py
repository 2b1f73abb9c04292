"""Sensor waiting until the dbt sources a step reads are fresh, in the worker or in the triggerer."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook, BaseSensorOperator, PokeReturnValue, conf
from airflow.sdk.exceptions import AirflowFailException

from airflow_osds.dbt.artifacts import Manifest, load_manifest
from airflow_osds.dbt.errors import DbtArtifactError
from airflow_osds.operators._lineage import OpenLineageMixin
from airflow_osds.dbt.freshness import (
    APPLICATION_NAME,
    DbtFreshnessError,
    FreshnessCheck,
    FreshnessResult,
    check_freshness,
    describe_results,
    freshness_checks,
)
from airflow_osds.postgres import connect_kwargs
from airflow_osds.triggers.dbt import TRIGGER_STATUSES, DbtSourceFreshnessTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["DbtSourceFreshnessSensor", "DbtSourcesNotFreshError"]

# The scheduler's own deferral timeout is only a backstop (a triggerer that never reports):
# the trigger's deadline fires first and names the stale sources.
_DEFERRAL_GRACE_S = 60.0


class DbtSourcesNotFreshError(AirflowFailException):
    """The sources did not become fresh in time, or their freshness could not be checked.

    :ivar status: the trigger's status, ``timeout`` or ``error``.
    :ivar stale: the sources that were not fresh at the last check (empty on ``error``).
    """

    def __init__(self, message: str, *, status: str, stale: Sequence[FreshnessResult] = ()) -> None:
        self.status = status
        self.stale = tuple(stale)
        super().__init__(message)


class DbtSourceFreshnessSensor(OpenLineageMixin, BaseSensorOperator):
    """
    Wait until dbt sources are fresh by their ``loaded_at_field`` and freshness thresholds.

    The checks are dbt's ``source freshness`` (``max(loaded_at_field)`` against ``warn_after`` /
    ``error_after``), run as plain queries on the warehouse: dbt is not invoked. With
    ``deferrable=True`` the task defers at once and
    :class:`~airflow_osds.triggers.dbt.DbtSourceFreshnessTrigger` polls from the triggerer, so no
    worker slot is held while waiting; otherwise it pokes like any sensor (``mode="poke"`` or
    ``"reschedule"``). Either way the task returns every source's result as its XCom.

    .. seealso::
        https://docs.getdbt.com/reference/resource-properties/freshness

    :param project_dir: the dbt project; its ``target/manifest.json`` is read when the task runs.
    :param sources: ``source_name.table`` names, ``source:`` selectors (``source:snowplow`` for
        all of a source's tables) or unique ids (templated).
    :param manifest_path: another manifest, relative to ``project_dir`` unless absolute (templated).
    :param warehouse_conn_id: the warehouse's ``postgres`` connection.
    :param allow_warn: count sources in dbt's ``warn`` state as fresh (only ``error_after`` must hold).
    :param deferrable: wait in the triggerer; default ``[operators] default_deferrable``.
    :param poke_interval: seconds between checks (``BaseSensorOperator``'s argument).
    :param timeout: seconds before the sensor fails (``BaseSensorOperator``'s argument).
    """

    template_fields: Sequence[str] = ("sources", "manifest_path")
    ui_color = "#ff694b"

    def __init__(
        self,
        *,
        project_dir: str,
        sources: str | Sequence[str],
        manifest_path: str | None = None,
        warehouse_conn_id: str = "warehouse",
        allow_warn: bool = False,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.project_dir = project_dir
        self.sources = sources
        self.manifest_path = manifest_path
        self.warehouse_conn_id = warehouse_conn_id
        self.allow_warn = allow_warn
        self.deferrable = deferrable

    @cached_property
    def checks(self) -> tuple[FreshnessCheck, ...]:
        """The checks, from the manifest as it is when the task runs."""
        try:
            if self.manifest_path:
                manifest = Manifest.from_path(Path(self.project_dir) / self.manifest_path)
            else:
                manifest = load_manifest(self.project_dir)
            return freshness_checks(manifest, self.sources)
        except (DbtArtifactError, DbtFreshnessError) as exc:
            raise AirflowFailException(str(exc)) from exc  # a project problem: retrying cannot help

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        self._defer()

    def _defer(self) -> None:
        self.log.info("Deferring until fresh: %s", ", ".join(c.source for c in self.checks))
        trigger = DbtSourceFreshnessTrigger(
            conn_id=self.warehouse_conn_id,
            checks=[c.to_dict() for c in self.checks],
            end_time=time.time() + self.timeout,
            poke_interval=self.poke_interval,
            allow_warn=self.allow_warn,
        )
        self.defer(
            trigger=trigger, method_name="execute_complete", timeout=timedelta(seconds=self.timeout + _DEFERRAL_GRACE_S)
        )

    def poke(self, context: Context) -> PokeReturnValue:
        import psycopg

        conn = BaseHook.get_connection(self.warehouse_conn_id)
        kwargs = connect_kwargs(
            host=conn.host, port=conn.port, login=conn.login, password=conn.password, dbname=conn.schema,
            extra=conn.extra_dejson, application_name=APPLICATION_NAME,
        )
        try:
            with psycopg.connect(autocommit=True, **kwargs) as pg:
                results = check_freshness(pg, self.checks, allow_warn=self.allow_warn)
        except DbtFreshnessError as exc:
            raise DbtSourcesNotFreshError(str(exc), status="error") from exc
        self.log.info("Source freshness:\n%s", describe_results(results))
        return PokeReturnValue(all(r.fresh for r in results), [r.to_dict() for r in results])

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Resume from the trigger's event: return the results when fresh, else fail naming each stale source."""
        status = event.get("status") if isinstance(event, dict) else None
        if status not in TRIGGER_STATUSES:
            raise AirflowFailException(f"{self.task_id}: unexpected trigger event {event!r}; expected a status in {TRIGGER_STATUSES}")
        assert event is not None
        results = [FreshnessResult.from_dict(r) for r in event.get("results") or ()]
        if status == "fresh":
            self.log.info("Source freshness:\n%s", describe_results(results))
            return [r.to_dict() for r in results]
        stale = [r for r in results if not r.fresh]
        if status == "timeout":
            message = f"dbt sources still not fresh after {self.timeout:.0f} s: " + "; ".join(r.describe() for r in stale)
        else:
            message = f"dbt source freshness check failed: {event.get('message')}"
        raise DbtSourcesNotFreshError(message, status=status, stale=stale)
