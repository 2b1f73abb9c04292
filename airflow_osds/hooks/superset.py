"""Hook for Apache Superset's REST API (connection type ``superset``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from airflow.sdk import BaseHook

from airflow_osds.hooks._urls import base_url_from_connection

if TYPE_CHECKING:
    from airflow_osds.superset.client import SupersetClient

__all__ = ["SupersetConnectionConfig", "SupersetHook"]


@dataclass(frozen=True)
class SupersetConnectionConfig:
    """What a ``superset`` connection holds, validated; the password is kept out of ``repr``."""

    base_url: str
    username: str
    password: str = field(repr=False)
    auth_provider: str = "db"
    verify_ssl: bool = True
    timeout: float = 60.0


class SupersetHook(BaseHook):
    """
    Connects to Apache Superset.

    The connection's host is the base URL (``http://superset:8088``; a bare host gets
    ``http://`` and the port), login/password a Superset user, and the extras
    ``auth_provider`` (``db`` or ``ldap``), ``verify_ssl`` and ``timeout``.

    :param superset_conn_id: Airflow connection id of type ``superset``.
    """

    conn_name_attr = "superset_conn_id"
    default_conn_name = "superset_default"
    conn_type = "superset"
    hook_name = "Apache Superset"

    def __init__(self, superset_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.superset_conn_id = superset_conn_id

    def get_conn(self) -> SupersetConnectionConfig:
        conn = self.get_connection(self.superset_conn_id)
        extra = conn.extra_dejson
        host = base_url_from_connection(conn, self.superset_conn_id, default_scheme="http")
        return SupersetConnectionConfig(
            base_url=host,
            username=conn.login or "",
            password=conn.password or "",
            auth_provider=str(extra.get("auth_provider", "db")),
            verify_ssl=bool(extra.get("verify_ssl", True)),
            timeout=float(extra.get("timeout", 60)),
        )

    def client(self) -> SupersetClient:
        """A logged-in-on-first-call API session (:class:`~airflow_osds.superset.client.SupersetClient`):
        token refresh, the CSRF token with its cookie, retries. Close it (or use it as a context manager)."""
        from airflow_osds.superset.client import SupersetClient

        config = self.get_conn()
        return SupersetClient(config.base_url, config.username, config.password, provider=config.auth_provider,
                              timeout=config.timeout, verify=config.verify_ssl)
