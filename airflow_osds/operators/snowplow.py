"""Load Snowplow enriched events into the warehouse."""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_osds.hooks.snowplow import SnowplowHook
from airflow_osds.operators._lineage import OpenLineageMixin
from airflow_osds.snowplow import DEFAULT_CHUNK_LINES, DEFAULT_MAX_BAD_RATIO

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_osds.snowplow.loader import LoadOptions, LoadReport

__all__ = ["SnowplowLoadOperator"]


class SnowplowLoadOperator(OpenLineageMixin, BaseOperator):
    """
    Load the enriched-event files at ``source`` that are not loaded yet into ``<schema>.events``
    and one table per entity schema, as Snowplow's Postgres Loader lays them out.

    Lines that cannot load become self-describing bad rows (``<schema>.osds_bad_rows``); the task
    fails when they are past ``max_bad_rows`` / ``max_bad_ratio`` (the good events stay loaded).
    A re-run, or a retry after a crash in the middle of a file, adds nothing twice and skips
    nothing (a ledger of files in ``osds_state.snowplow_files``, and events deduplicated on
    ``event_id`` + ``event_fingerprint``). A run that finds no file to load is skipped, saying so.

    Each outlet whose table received rows gets an Asset event with ``rows`` in its extra.

    :param source: a local file or folder, or an object-storage URL (templated, e.g.
        ``s3://bucket/enriched/{{ ds }}/``). Relative local paths resolve against ``base_dir``.
    :param iglu: Iglu registries in priority order: static registry directories (relative ones
        against ``base_dir``) and/or ``http(s)://`` registry URLs.
    :param warehouse_conn_id: the warehouse's ``postgres`` connection.
    :param source_conn_id: the connection object-storage URLs are read with.
    :param schema: schema of ``events`` and the entity tables.
    :param bad_rows_table: ``schema.table`` for bad rows (default ``<schema>.osds_bad_rows``).
    :param max_bad_rows: fail past this many bad rows (default: no count limit).
    :param max_bad_ratio: fail when bad rows exceed this fraction of the lines read (default 1 %).
    :param chunk_lines: lines per transaction.
    :param parse_helper: parse in a helper process once the load has parsed 10,000 lines
        (:mod:`airflow_osds.snowplow.helper`); ``False`` keeps the load in one process.
    :param base_dir: what relative local paths resolve against (the pipeline file's folder).
    """

    template_fields: Sequence[str] = ("source",)
    ui_color = "#6638b6"

    def __init__(
        self,
        *,
        source: str,
        iglu: Sequence[str],
        warehouse_conn_id: str = "warehouse",
        source_conn_id: str | None = None,
        schema: str = "atomic",
        bad_rows_table: str | None = None,
        max_bad_rows: int | None = None,
        max_bad_ratio: float | None = DEFAULT_MAX_BAD_RATIO,
        chunk_lines: int = DEFAULT_CHUNK_LINES,
        parse_helper: bool = True,
        base_dir: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.iglu = list(iglu)
        self.warehouse_conn_id = warehouse_conn_id
        self.source_conn_id = source_conn_id
        self.schema = schema
        self.bad_rows_table = bad_rows_table
        self.max_bad_rows = max_bad_rows
        self.max_bad_ratio = max_bad_ratio
        self.chunk_lines = chunk_lines
        self.parse_helper = parse_helper
        self.base_dir = base_dir

    @cached_property
    def hook(self) -> SnowplowHook:
        return SnowplowHook(self.warehouse_conn_id, iglu=[_resolve(p, self.base_dir) for p in self.iglu],
                            source_conn_id=self.source_conn_id)

    def options(self) -> LoadOptions:
        from airflow_osds.snowplow import DEFAULT_HELPER_AFTER_LINES
        from airflow_osds.snowplow.loader import LoadOptions

        return LoadOptions(schema=self.schema, bad_rows_table=self.bad_rows_table, chunk_lines=self.chunk_lines,
                           max_bad_rows=self.max_bad_rows, max_bad_ratio=self.max_bad_ratio,
                           helper_after_lines=DEFAULT_HELPER_AFTER_LINES if self.parse_helper else None)

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        from airflow_osds.snowplow.loader import BadRowsExceededError

        source = _resolve(self.source, self.base_dir)
        options = self.options()
        try:
            report = self.hook.load(source, options, say=self.log.info)
        except BadRowsExceededError as exc:
            self._record(exc.report, context)
            self.log.error("%s", _describe(exc.report))
            raise AirflowFailException(str(exc)) from None
        self.log.info("%s", _describe(report))
        if not report.loaded_files:
            why = f"{len(report.files)} file(s), all already loaded" if report.files else "no file"
            raise AirflowSkipException(f"Nothing to load at {source}: {why}")
        self._record(report, context)
        return report.summary()

    def _record(self, report: LoadReport, context: Context) -> None:
        """Put the rows each table received on its outlet's Asset event."""
        from airflow_osds.assets import parse_table, table_asset_uri

        by_uri = {table_asset_uri(parse_table(t, conn_id=self.warehouse_conn_id)): n
                  for t, n in report.table_rows.items()}
        for outlet in self.outlets:
            uri = getattr(outlet, "uri", None)
            if uri in by_uri:
                context["outlet_events"][outlet].extra = {"rows": by_uri[uri]}


def _resolve(path: str, base_dir: str) -> str:
    if "://" in path or not base_dir or os.path.isabs(path):
        return path
    return os.path.normpath(os.path.join(base_dir, path))


def _describe(report: LoadReport) -> str:
    s = report.summary()
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(s["bad_by_kind"].items())) or "none"
    tables = ", ".join(f"{t} +{n:,}" for t, n in sorted(s["table_rows"].items())) or "none"
    return (f"Snowplow load: {s['files']} file(s) loaded, {s['skipped_files']} skipped; {s['lines']:,} lines → "
            f"{s['events']:,} new events, {s['duplicates']:,} duplicates, {s['bad_rows']:,} bad rows ({kinds}); "
            f"rows added: {tables}")
