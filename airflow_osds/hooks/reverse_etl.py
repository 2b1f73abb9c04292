"""Hook for HTTP API destinations of reverse-ETL syncs (connection type ``reverse_etl_http``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from airflow.sdk import BaseHook

from airflow_osds.hooks._urls import base_url_from_connection

__all__ = ["HttpDestinationConfig", "HttpDestinationHook"]

AuthType = Literal["none", "bearer", "header", "basic"]


@dataclass(frozen=True)
class HttpDestinationConfig:
    """What a ``reverse_etl_http`` connection holds; secrets are kept out of ``repr``."""

    base_url: str
    auth_type: AuthType = "bearer"
    login: str = ""
    secret: str = field(default="", repr=False)
    api_key_header: str = "X-API-Key"
    timeout: float = 30.0
    max_requests_per_second: float = 0.0
    verify_ssl: bool = True

    def auth_headers(self) -> dict[str, str]:
        """Headers that authenticate a request (basic auth is left to the HTTP client)."""
        if self.auth_type == "bearer" and self.secret:
            return {"Authorization": f"Bearer {self.secret}"}
        if self.auth_type == "header" and self.secret:
            return {self.api_key_header: self.secret}
        return {}


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
