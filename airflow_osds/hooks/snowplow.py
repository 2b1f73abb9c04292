"""Hook loading Snowplow enriched events into the warehouse of an Airflow PostgreSQL connection."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

if TYPE_CHECKING:
    import psycopg

    from airflow_osds.snowplow.iglu import Resolver
    from airflow_osds.snowplow.loader import LoadOptions, LoadReport
    from airflow_osds.snowplow.sources import SourceFile

__all__ = ["SnowplowHook", "list_source"]


class SnowplowHook(BaseHook):
    """
    Loads enriched-event files (local, or any ``ObjectStoragePath`` URL) into PostgreSQL, laid out as
    Snowplow's Postgres Loader does (``atomic.events`` plus one table per entity schema), with their
    entities validated against Iglu. See :mod:`airflow_osds.snowplow.loader` for how.

    :param warehouse_conn_id: Airflow connection (type ``postgres``) of the warehouse.
    :param iglu: Iglu registries in priority order: static registry directories and/or
        ``http(s)://`` URLs of static or Iglu Server registries.
    :param source_conn_id: the connection object-storage URLs are read with (e.g. ``aws_default``).
    """

    conn_name_attr = "warehouse_conn_id"
    default_conn_name = "warehouse"
    conn_type = "postgres"
    hook_name = "Snowplow loader (on a PostgreSQL connection)"

    def __init__(
        self,
        warehouse_conn_id: str = default_conn_name,
        *,
        iglu: Sequence[str] = (),
        source_conn_id: str | None = None,
    ) -> None:
        super().__init__()
        self.warehouse_conn_id = warehouse_conn_id
        self.iglu = list(iglu)
        self.source_conn_id = source_conn_id

    def get_conn(self) -> psycopg.Connection[Any]:
        """A psycopg 3 connection to the warehouse (autocommit: the loader opens its own transactions)."""
        from airflow_osds.hooks.warehouse import connect

        return connect(self.get_connection(self.warehouse_conn_id), application_name="airflow-osds snowplow")

    def resolver(self) -> Resolver:
        from airflow_osds.snowplow.iglu import Resolver

        if not self.iglu:
            raise ValueError("no Iglu registry given: pass `iglu` (static registry directories or URLs)")
        return Resolver.from_sources(self.iglu)

    def files(self, source: str) -> list[SourceFile]:
        """The enriched files at ``source`` (a local file or folder, or an object-storage URL)."""
        return list_source(source, conn_id=self.source_conn_id)

    def pending(self, source: str, *, schema: str = "atomic") -> list[SourceFile]:
        """The files at ``source`` not yet loaded into ``<schema>.events``."""
        from airflow_osds.snowplow import ledger

        files = self.files(source)
        with self.get_conn() as conn:
            return ledger.pending(conn, f"{schema}.events", files)

    def load(self, source: str, options: LoadOptions, *, say: Callable[[str], None] | None = None) -> LoadReport:
        """Load every file at ``source`` not loaded yet (see :func:`airflow_osds.snowplow.loader.load`)."""
        from airflow_osds.snowplow.loader import load

        files = self.files(source)
        resolver = self.resolver()
        with self.get_conn() as conn:
            return load(conn, files, resolver, options, say=say or self.log.info)


def list_source(source: str | os.PathLike[str], *, conn_id: str | None = None) -> list[SourceFile]:
    """:class:`~airflow_osds.snowplow.sources.SourceFile` of every file at ``source``, sorted by name.

    Local paths (and ``file://`` URLs) are listed directly; any other URL goes through Airflow's
    ``ObjectStoragePath`` (``s3://`` needs the filesystem its scheme uses: the amazon provider and
    ``s3fs``), listed afresh each call. Either way, ``.``/``_``-prefixed files and folders are skipped,
    and an object's URI (its ledger name) is its plain URL, without the connection id.

    :raises FileNotFoundError: nothing exists at ``source``.
    """
    from airflow_osds.snowplow.sources import _IGNORED_PREFIXES, SourceFile, local_files

    text = os.fspath(source)
    if "://" not in text or text.startswith("file://"):
        return local_files(Path(text.removeprefix("file://")))
    from airflow.sdk import ObjectStoragePath

    root = ObjectStoragePath(text, conn_id=conn_id)
    # Airflow keeps one filesystem per connection for the life of the process (a triggerer polls with
    # the same one for days), and fsspec's listings cache would hide objects written since, or report
    # an old size: list afresh.
    root.fs.invalidate_cache()
    if root.is_file():
        found = [root]
    elif root.is_dir():
        found = sorted((p for p in root.rglob("*") if p.is_file() and not any(
            part.startswith(_IGNORED_PREFIXES) for part in p.relative_to(root).parts)), key=lambda p: p.as_uri())
    else:
        raise FileNotFoundError(f"no enriched events at {text}: nothing exists there")
    # as_uri(), not str(): str() puts the connection id in the URL (s3://aws_default@bucket/…), and the
    # ledger must name a file the same whichever connection reads it.
    return [SourceFile(uri=p.as_uri(), size=int(p.stat().st_size), opener=lambda p=p: p.open("rb")) for p in found]
