"""The OpenLineage dataset of every piece of data airflow-osds names.

Assets are named by connection id (see :mod:`airflow_osds.assets`), which is all a DAG
file may know. OpenLineage names a dataset by where it lives, so the mapping needs the
connection's host, port and database: it is computed at run time, from an
:class:`Endpoint` (the non-secret fields of the connection), never at parse time.

==================================  =====================================  ================================
data                                namespace                              name
==================================  =====================================  ================================
table (PostgreSQL warehouse)        ``postgres://{host}:{port}``           ``{database}.{schema}.{table}``
dashboard (Superset)                ``superset://{host}:{port}``           the dashboard's key (slug, title
                                                                           or id, as the YAML names it)
destination, ``postgres`` conn      ``postgres://{host}:{port}``           ``{database}.{schema}.{table}``
destination, HTTP API conn          the base URL (``https://api.x.com``)   the object (``contacts``,
                                                                           ``hooks/records``, ``lists/…``)
files ``file:///p``                 ``file``                               ``/p``
files ``s3://bucket/p``             ``s3://bucket``                        ``p``
unknown connection or type          ``osds://{conn_id}`` (the Asset's      ``{schema}.{table}``, the key or
                                    scheme: ``osds+dashboard://…``)        the object
==================================  =====================================  ================================

PostgreSQL follows OpenLineage's naming spec (the port is always written, 5432 by
default), the same names Airflow's own SQL operators report, so lineage from both meets.
A Unix-socket connection (its host is a directory) is named ``localhost``: the server is
on this machine. Pure Python: no Airflow, no OpenLineage import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from airflow_osds.assets import DashboardRef, DataRef, DestinationRef, FilesRef, TableRef, parse_table
from airflow_osds.hooks._urls import base_url_from_connection

__all__ = ["Endpoint", "LineageDataset", "dataset_of", "files_dataset", "postgres_dataset"]

POSTGRES_TYPES = frozenset({"postgres", "postgresql"})
POSTGRES_PORT = 5432
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Endpoint:
    """What lineage needs of an Airflow connection: where it points, never its secrets.

    :ivar schema: the connection's ``schema`` field: the database of a ``postgres``
        connection, the URL scheme of an HTTP one whose host is a bare name.
    """

    conn_type: str
    host: str = ""
    port: int | None = None
    schema: str = ""
    login: str = ""

    @classmethod
    def from_connection(cls, conn: Any) -> Endpoint:
        """From an Airflow ``Connection`` (or anything with its fields)."""
        port = getattr(conn, "port", None)
        return cls(conn_type=str(getattr(conn, "conn_type", "") or ""), host=str(getattr(conn, "host", "") or ""),
                   port=int(port) if port else None, schema=str(getattr(conn, "schema", "") or ""),
                   login=str(getattr(conn, "login", "") or ""))

    @property
    def is_postgres(self) -> bool:
        return self.conn_type.lower() in POSTGRES_TYPES


@dataclass(frozen=True, order=True)
class LineageDataset:
    """An OpenLineage dataset identity: ``namespace`` (the data source) and ``name`` (within it)."""

    namespace: str
    name: str


def dataset_of(ref: DataRef, endpoint: Endpoint | None) -> LineageDataset:
    """The dataset ``ref`` names; ``endpoint`` is its connection (``None``: not found)."""
    if isinstance(ref, FilesRef):
        return files_dataset(ref.url)
    if endpoint is not None:
        if isinstance(ref, TableRef) and endpoint.is_postgres:
            return postgres_dataset(endpoint, ref.schema, ref.table)
        if isinstance(ref, DestinationRef) and endpoint.is_postgres:
            table = parse_table(ref.parts[0], conn_id=ref.conn_id)
            return postgres_dataset(endpoint, table.schema, table.table)
        if isinstance(ref, DestinationRef) and endpoint.host:
            return LineageDataset(_base_url(endpoint, ref.conn_id, default_scheme="https"), ref.parts[0])
        if isinstance(ref, DashboardRef) and endpoint.host:
            url = urlsplit(_base_url(endpoint, ref.conn_id, default_scheme="http"))
            authority = _authority(url.hostname or "", url.port or _DEFAULT_PORTS.get(url.scheme))
            return LineageDataset(f"superset://{authority}{url.path.rstrip('/')}", ref.parts[0])
    return _unresolved(ref)


def postgres_dataset(endpoint: Endpoint, schema: str, table: str) -> LineageDataset:
    """OpenLineage's PostgreSQL naming: ``postgres://{host}:{port}`` and ``{database}.{schema}.{table}``."""
    host = endpoint.host.strip()
    if not host or host.startswith("/"):  # libpq's default, or a Unix-socket directory
        host = "localhost"
    # libpq connects to the database named like the user when none is given.
    database = endpoint.schema or endpoint.login or "postgres"
    return LineageDataset(f"postgres://{_authority(host, endpoint.port or POSTGRES_PORT)}", f"{database}.{schema}.{table}")


def files_dataset(url: str) -> LineageDataset:
    """A file location, named as Airflow's ``file`` and ``s3`` Asset converters name it."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        return LineageDataset(f"file://{parts.netloc}" if parts.netloc else "file", parts.path or "/")
    return LineageDataset(f"{parts.scheme}://{parts.netloc}", parts.path.lstrip("/") or "/")


def _unresolved(ref: DataRef) -> LineageDataset:
    """The Asset's own identity, when the connection is unknown or of a type with no naming here."""
    scheme = urlsplit(ref.uri).scheme
    name = ".".join(ref.parts) if isinstance(ref, TableRef) else "/".join(ref.parts)
    return LineageDataset(f"{scheme}://{ref.conn_id}", name)


def _base_url(endpoint: Endpoint, conn_id: str, *, default_scheme: str) -> str:
    """The service's base URL as its hook builds it, without user info and a default port."""
    url = urlsplit(base_url_from_connection(endpoint, conn_id, default_scheme=default_scheme))
    port = url.port if url.port != _DEFAULT_PORTS.get(url.scheme.lower()) else None
    return f"{url.scheme.lower()}://{_authority(url.hostname or '', port)}{url.path.rstrip('/')}"


def _authority(host: str, port: int | None) -> str:
    host = host.lower()
    if ":" in host:  # IPv6
        host = f"[{host}]"
    return f"{host}:{port}" if port else host
