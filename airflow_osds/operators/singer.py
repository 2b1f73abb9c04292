"""Sync a Singer tap into a Singer target, with the state kept in the warehouse."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_osds.hooks.singer import SingerHook
from airflow_osds.operators._lineage import OpenLineageMixin
from airflow_osds.operators._templated import rendered_flag

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_osds.singer.sync import SyncReport

__all__ = ["SingerOperator"]


class SingerOperator(OpenLineageMixin, BaseOperator):
    """
    Run ``tap | target``: two processes joined by an OS pipe, each from its own virtualenv (installed on
    first use from its ``pip_url``), their logs in the task log with secrets masked.

    The state is the last line the *target* printed (it had committed everything before it). Each one
    is stored in the warehouse as it arrives (``osds_state.singer_state``) and passed back with
    ``--state`` next run, so a failed run keeps its last committed point and the retry resumes there.
    With a ``select`` or ``metadata`` the tap's catalog is discovered and they are applied to it (or to
    the given ``catalog`` file). A run whose target loaded no record is skipped, saying so.

    Each outlet whose table received records gets an Asset event with ``records`` in its extra.

    :param tap: ``executable`` (or ``name``), ``pip_url``, ``connection`` (an Airflow connection whose
        fields become settings), ``config``, ``select``, ``metadata``, ``catalog`` (a file),
        ``catalog_arg`` (templated).
    :param target: the same keys but the catalog ones (templated); default ``osds-target-postgres`` on
        the warehouse.
    :param schema: the target's ``default_target_schema``.
    :param warehouse_conn_id: the warehouse's ``postgres`` connection, where the state is kept.
    :param state_id: default ``<dag_id>:<task_id>:<tap>-to-<target>`` (templated).
    :param full_refresh: clear the state first (templated; ``"true"``/``"false"`` strings work).
    :param meltano: a Meltano project whose extractor and loader settings lie under ``tap``'s and
        ``target``'s: ``project`` (its meltano.yml), ``environment``, ``extractor``, ``loader``, and
        ``import_state`` (start from the state Meltano kept in a ``file://`` backend when none is stored).
    :param timeout: seconds before both processes are stopped and the task fails.
    """

    template_fields: Sequence[str] = ("tap", "target", "schema", "state_id", "full_refresh")
    template_fields_renderers = {"tap": "json", "target": "json"}
    ui_color = "#e9f0fb"

    def __init__(
        self,
        *,
        tap: Mapping[str, Any],
        target: Mapping[str, Any] | None = None,
        schema: str = "raw",
        warehouse_conn_id: str = "warehouse",
        state_id: str | None = None,
        full_refresh: bool | str = False,
        meltano: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        from airflow_osds.singer import OSDS_TARGET

        self.tap = dict(tap)
        self.target = dict(target or {"executable": OSDS_TARGET, "name": OSDS_TARGET, "connection": warehouse_conn_id})
        self.schema = schema
        self.warehouse_conn_id = warehouse_conn_id
        self.state_id = state_id
        self.full_refresh = full_refresh
        self.meltano = dict(meltano) if meltano else None
        self.timeout = timeout

    @cached_property
    def hook(self) -> SingerHook:
        return SingerHook(self.warehouse_conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

        from airflow_osds.exceptions import OsdsError
        from airflow_osds.singer.runner import SingerError
        from airflow_osds.singer.state import state_id as default_state_id

        try:
            tap_base, target_base, imported = self.hook.meltano_settings(self.meltano) if self.meltano else ({}, {}, None)
            tap = self.hook.plugin(self.tap, base_config=tap_base)
            target = self.hook.plugin(self.target, base_config=target_base,
                                      overrides={"default_target_schema": self.schema})
            sid = self.state_id or default_state_id(context["dag"].dag_id, self.task_id, tap.name, target.name)
            report = self.hook.sync(
                tap, target, state_id=sid, full_refresh=rendered_flag(self.full_refresh, name="full_refresh"),
                catalog=self._catalog(),
                select=self.tap.get("select") or (), metadata=self.tap.get("metadata") or None,
                imported_state=imported, timeout=self.timeout, say=self.log.info,
            )
        except SingerError as exc:
            raise AirflowException(str(exc)) from None  # a failure the retry resumes from the kept state
        except OsdsError as exc:  # bad config, selection, executable: a retry would fail the same way
            raise AirflowFailException(str(exc)) from None
        self.log.info("%s", _describe(report))
        loaded = sum(report.record_counts.values())
        if loaded == 0:
            raise AirflowSkipException(f"{tap.name} → {target.name}: no record was loaded ({_describe(report)})")
        self._record(report, context)
        return {"state_id": report.state_id, "records": report.record_counts, "seconds": round(report.run.seconds, 2),
                "started_from": report.started_from, "state": report.run.state}

    def _catalog(self) -> dict[str, Any] | None:
        path = self.tap.get("catalog")
        if not path:
            return None
        from airflow_osds.singer.catalog import CatalogError

        try:
            with open(path, encoding="utf-8") as handle:
                return json.load(handle)
        except (OSError, ValueError) as exc:
            raise CatalogError(f"cannot read the catalog {path}: {exc}") from None

    def _record(self, report: SyncReport, context: Context) -> None:
        """Put the records each table received on its outlet's Asset event."""
        from airflow_osds.assets import TableRef
        from airflow_osds.singer import table_name

        conn_id = self.target.get("connection") or self.warehouse_conn_id
        by_uri = {TableRef(conn_id, self.schema, table_name(stream)).uri: n for stream, n in report.record_counts.items()}
        for outlet in self.outlets:
            uri = getattr(outlet, "uri", None)
            if uri in by_uri:
                context["outlet_events"][outlet].extra = {"records": by_uri[uri]}



def _describe(report: SyncReport) -> str:
    counts = ", ".join(f"{s} {n:,}" for s, n in sorted(report.record_counts.items())) or "none"
    return (f"Singer sync {report.state_id!r} ({report.started_from}): {sum(report.record_counts.values()):,} records "
            f"in {report.run.seconds:.1f} s ({counts}); {report.run.state_lines} committed state(s)")
