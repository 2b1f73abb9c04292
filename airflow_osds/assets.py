"""The one place that names data.

Every table, dashboard and destination gets a stable Asset name computed from the
YAML alone (no connection lookup), identical for every producer and consumer. Tables
are named ``<conn_id>.<schema>.<table>`` with the URI ``osds://<conn_id>/<schema>/<table>``:
the connection id, not its host, so the name is known at parse time and survives
moving the warehouse. Unquoted PostgreSQL identifiers are case-insensitive, hence lower-cased.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow.sdk import Asset

__all__ = ["TableRef", "parse_table", "table_asset", "table_asset_name", "table_asset_uri", "table_ref_from_uri"]

ASSET_SCHEME = "osds"
DEFAULT_SCHEMA = "public"


class TableRef(tuple[str, str, str]):
    """A warehouse table: ``(conn_id, schema, table)``, normalised."""

    __slots__ = ()

    def __new__(cls, conn_id: str, schema: str, table: str) -> TableRef:
        return super().__new__(cls, (conn_id, schema.lower(), table.lower()))

    @property
    def conn_id(self) -> str:
        return self[0]

    @property
    def schema(self) -> str:
        return self[1]

    @property
    def table(self) -> str:
        return self[2]

    @property
    def qualified(self) -> str:
        """``schema.table`` as SQL writes it."""
        return f"{self.schema}.{self.table}"

    def __repr__(self) -> str:
        return f"TableRef({self.conn_id!r}, {self.schema!r}, {self.table!r})"


def parse_table(name: str, *, conn_id: str) -> TableRef:
    """``"schema.table"`` or ``"table"`` (schema ``public``) on the warehouse ``conn_id``;
    ``"other_conn:schema.table"`` names a table on another warehouse connection."""
    if ":" in name:
        conn_id, _, name = name.partition(":")
        if not conn_id.strip():
            raise ValueError(f"{name!r} is not a table name: write 'connection:schema.table'.")
        conn_id = conn_id.strip()
    parts = [p.strip().strip('"') for p in name.split(".")]
    if len(parts) == 1 and parts[0]:
        return TableRef(conn_id, DEFAULT_SCHEMA, parts[0])
    if len(parts) == 2 and all(parts):
        return TableRef(conn_id, parts[0], parts[1])
    raise ValueError(f"{name!r} is not a table name: write 'schema.table', 'table' or 'connection:schema.table'.")


def table_asset_name(ref: TableRef) -> str:
    return f"{ref.conn_id}.{ref.schema}.{ref.table}"


def table_asset_uri(ref: TableRef) -> str:
    return f"{ASSET_SCHEME}://{ref.conn_id}/{ref.schema}/{ref.table}"


def table_asset(ref: TableRef) -> Asset:
    from airflow.sdk import Asset

    return Asset(name=table_asset_name(ref), uri=table_asset_uri(ref), group="table")


def table_ref_from_uri(uri: str) -> TableRef | None:
    """The table named by an ``osds://conn/schema/table`` URI, or ``None`` for other assets."""
    prefix = f"{ASSET_SCHEME}://"
    if not uri.startswith(prefix):
        return None
    parts = uri[len(prefix) :].split("/")
    return TableRef(*parts) if len(parts) == 3 and all(parts) else None
