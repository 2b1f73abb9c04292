"""Helpers shared by the hooks of HTTP services."""

from __future__ import annotations

from typing import Any


def base_url_from_connection(conn: Any, conn_id: str, *, default_scheme: str) -> str:
    """Base URL of an HTTP service from a connection whose host is a URL or a bare host name."""
    host = (conn.host or "").rstrip("/")
    if not host:
        raise ValueError(f"Connection {conn_id!r} has no host: set it to the service's base URL.")
    if "://" not in host:
        host = f"{conn.schema or default_scheme}://{host}"
    if conn.port and host.count(":") < 2:
        host = f"{host}:{conn.port}"
    return host
