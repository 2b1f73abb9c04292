"""Hooks for reverse-ETL syncs: HTTP API destinations (connection type ``reverse_etl_http``) and the sync itself."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from airflow_osds.hooks._urls import base_url_from_connection
from airflow_osds.reverse_etl.destinations._http import HttpDestinationConfig

if TYPE_CHECKING:
    import psycopg

    from airflow_osds.reverse_etl.destinations.base import Destination
    from airflow_osds.reverse_etl.diff import Preview
    from airflow_osds.reverse_etl.spec import SyncSpec
    from airflow_osds.reverse_etl.sync import SyncReport

__all__ = ["HttpDestinationConfig", "HttpDestinationHook", "ReverseEtlHook"]


class HttpDestinationHook(BaseHook):
    """
    Describes an HTTP API that receives reverse-ETL records.

    :param http_destination_conn_id: Airflow connection id of type ``reverse_etl_http``.
    """

    conn_name_attr = "http_destination_conn_id"
    default_conn_name = "reverse_etl_http_default"
    conn_type = "reverse_etl_http"
    hook_name = "Reverse ETL HTTP API destination"

    def __init__(self, http_destination_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.http_destination_conn_id = http_destination_conn_id

    def get_conn(self) -> HttpDestinationConfig:
        conn = self.get_connection(self.http_destination_conn_id)
        extra = conn.extra_dejson
        host = base_url_from_connection(conn, self.http_destination_conn_id, default_scheme="https")
        auth_type = str(extra.get("auth_type", "bearer"))
        if auth_type not in ("none", "bearer", "header", "basic"):
            raise ValueError(
                f"Connection {self.http_destination_conn_id!r}: auth_type {auth_type!r} is not one of "
                "none, bearer, header, basic."
            )
        return HttpDestinationConfig(
            base_url=host,
            auth_type=auth_type,  # type: ignore[arg-type]
            login=conn.login or "",
            secret=conn.password or "",
            api_key_header=str(extra.get("api_key_header", "X-API-Key")),
            timeout=float(extra.get("timeout", 30)),
            max_requests_per_second=float(extra.get("max_requests_per_second", 0)),
            verify_ssl=bool(extra.get("verify_ssl", True)),
        )


class ReverseEtlHook(BaseHook):
    """
    Runs reverse-ETL syncs: the diff and the delivered state on the warehouse, the destination built
    from its own Airflow connection (see :mod:`airflow_osds.reverse_etl`).

    :param warehouse_conn_id: Airflow connection (type ``postgres``) of the warehouse holding the
        source rows and the sync state (``osds_state.reverse_etl_delivered`` / ``_rejections``).
    """

    conn_name_attr = "warehouse_conn_id"
    default_conn_name = "warehouse"
    conn_type = "postgres"
    hook_name = "Reverse ETL (state on a PostgreSQL connection)"

    def __init__(self, warehouse_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.warehouse_conn_id = warehouse_conn_id

    def get_conn(self) -> psycopg.Connection[Any]:
        """A psycopg 3 connection (autocommit) to the warehouse."""
        from airflow_osds.hooks.warehouse import connect

        return connect(self.get_connection(self.warehouse_conn_id), application_name="airflow-osds reverse-etl")

    def destination(self, settings: Mapping[str, Any], *, source_key: str = "") -> Destination:
        """The destination ``settings`` describe (the YAML block's ``destination``, rendered): ``kind``,
        ``connection``, optional ``batch_size`` / ``rate_limit``, and the kind's own settings.
        ``source_key`` is the key column a ``postgres`` table is matched on unless it names its own."""
        kind = settings.get("kind")
        conn_id = str(settings.get("connection") or "")
        if not conn_id:
            raise ValueError(f"the {kind or 'reverse-ETL'} destination needs a `connection`")
        sized: dict[str, Any] = {"batch_size": int(settings["batch_size"])} if settings.get("batch_size") else {}
        destination: Destination
        if kind == "postgres":
            from airflow_osds.hooks.warehouse import connect
            from airflow_osds.reverse_etl.destinations.postgres import PostgresDestination

            connection = self.get_connection(conn_id)
            destination = PostgresDestination(
                lambda: connect(connection, application_name="airflow-osds reverse-etl"), str(settings["table"]),
                str(settings.get("key_column") or source_key),
                object_name=f"{conn_id}/{settings['table']}", **sized,
            )
        else:
            config = HttpDestinationHook(conn_id).get_conn()
            if kind == "http":
                from airflow_osds.reverse_etl.destinations.http import HttpDestination

                destination = HttpDestination(config, str(settings["path"]), method=str(settings.get("method", "POST")),
                                              body_template=settings.get("body"),
                                              object_name=f"{conn_id}/{settings.get('object') or str(settings['path']).strip('/')}",
                                              **sized)
            elif kind == "hubspot":
                from airflow_osds.reverse_etl.destinations.hubspot import HubSpotDestination

                destination = HubSpotDestination(config, str(settings.get("object_type", "contacts")),
                                                 str(settings.get("id_property", "email")), **sized)
            elif kind == "mailchimp":
                from airflow_osds.reverse_etl.destinations.mailchimp import MailchimpDestination

                options = {k: settings[k] for k in ("status", "update_existing", "sync_tags") if k in settings}
                destination = MailchimpDestination(config, str(settings["list_id"]), **options, **sized)
            else:
                raise ValueError(f"unknown reverse-ETL destination kind {kind!r} (http, postgres, hubspot, mailchimp)")
        if settings.get("rate_limit") is not None:
            destination.rate_limit = float(settings["rate_limit"])
        return destination

    def sync(self, spec: SyncSpec, destination: Mapping[str, Any], *, full_resync: bool = False,
             max_rejected: int | None = None, max_rejected_ratio: float | None = None,
             say: Callable[[str], Any] = print) -> SyncReport:
        """One run of ``spec`` to the destination ``destination`` describes (see :func:`~airflow_osds.reverse_etl.sync.run_sync`)."""
        from airflow_osds.hooks.warehouse import connect
        from airflow_osds.reverse_etl.sync import run_sync

        target = self.destination(destination, source_key=spec.key)
        warehouse = self.get_connection(self.warehouse_conn_id)
        # Two connections: the changes stream on one while the answers are recorded on the other.
        with connect(warehouse, application_name="airflow-osds reverse-etl") as conn, \
                connect(warehouse, application_name="airflow-osds reverse-etl recorder") as record_conn:
            return run_sync(conn, spec, target, full_resync=full_resync, max_rejected=max_rejected,
                            max_rejected_ratio=max_rejected_ratio, say=say, record_conn=record_conn)

    def preview(self, spec: SyncSpec, *, limit: int = 20, full_resync: bool = False) -> Preview:
        """What a run would send (counts and the first ``limit`` records); nothing is sent or recorded."""
        from airflow_osds.reverse_etl.diff import preview

        with self.get_conn() as conn:
            return preview(conn, spec, limit, full_resync=full_resync)
