"""The one place that names data.

Every piece of data a step reads or writes is a typed reference with a stable Asset name
and URI computed from the YAML alone (no connection lookup), identical for every producer
and consumer, so a writer in one pipeline file and a reader in another meet on the same
Asset. The kinds:

======================  ===========================================  ======================================
kind                    name                                         URI
======================  ===========================================  ======================================
``table``               ``<conn>.<schema>.<table>``                  ``osds://<conn>/<schema>/<table>``
``dashboard``           ``dashboard:<conn>/<key>``                   ``osds+dashboard://<conn>/<key>``
``destination``         ``destination:<conn>/<object>``              ``osds+destination://<conn>/<object>``
``files``               ``files:<url>``                              the location's own URL
======================  ===========================================  ======================================

Tables are named by connection id, not host, so the name is known at parse time and
survives moving the warehouse. Identifiers follow PostgreSQL: unquoted ones are
lower-cased, quoted ones (``"Orders"``) keep their case.

A reference is a tuple ``(kind, conn_id, *parts)``: hashable, picklable into the compiled
cache, and sortable across kinds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote, unquote

if TYPE_CHECKING:
    from airflow.sdk import Asset

__all__ = [
    "DashboardRef",
    "DataRef",
    "DestinationRef",
    "FilesRef",
    "REF_KINDS",
    "TableRef",
    "data_ref_from_yaml",
    "parse_table",
    "ref_from_asset",
    "ref_from_uri",
    "table_asset",
    "table_asset_name",
    "table_asset_uri",
    "table_ref_from_uri",
]

ASSET_SCHEME = "osds"
DEFAULT_SCHEMA = "public"


class DataRef(tuple):  # type: ignore[type-arg]
    """Base of the typed references: ``(kind, conn_id, *parts)``."""

    __slots__ = ()
    kind: ClassVar[str] = ""

    @property
    def conn_id(self) -> str:
        return str(self[1])

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self[2:])

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.conn_id}/{'/'.join(self.parts)}"

    @property
    def uri(self) -> str:
        return f"{ASSET_SCHEME}+{self.kind}://{quote(self.conn_id, safe='')}/{'/'.join(quote(p, safe='') for p in self.parts)}"

    @property
    def label(self) -> str:
        """How messages and ``osds graph`` show it."""
        return self.name

    def asset(self) -> Asset:
        from airflow.sdk import Asset

        return Asset(name=self.name, uri=self.uri, group=self.kind)

    def __repr__(self) -> str:
        return f"{type(self).__name__}{tuple(self[1:])!r}"


class TableRef(DataRef):
    """A warehouse table: ``(conn_id, schema, table)``, already normalised (see :func:`parse_table`)."""

    __slots__ = ()
    kind = "table"

    def __new__(cls, conn_id: str, schema: str, table: str) -> TableRef:
        return super().__new__(cls, (cls.kind, conn_id, schema, table))

    def __getnewargs__(self) -> tuple[str, str, str]:  # pickle calls __new__ with these
        return (self[1], self[2], self[3])

    @property
    def schema(self) -> str:
        return str(self[2])

    @property
    def table(self) -> str:
        return str(self[3])

    @property
    def qualified(self) -> str:
        """``schema.table`` as SQL writes it (quoted where case or characters need it)."""
        return f"{_sql_ident(self.schema)}.{_sql_ident(self.table)}"

    @property
    def name(self) -> str:
        return f"{self.conn_id}.{self.schema}.{self.table}"

    @property
    def uri(self) -> str:
        return f"{ASSET_SCHEME}://{self.conn_id}/{self.schema}/{self.table}"

    @property
    def label(self) -> str:
        return f"{self.conn_id}:{self.qualified}"


class DashboardRef(DataRef):
    """A BI dashboard (Superset): ``(conn_id, key)``, the key being its slug or title."""

    __slots__ = ()
    kind = "dashboard"

    def __new__(cls, conn_id: str, key: str) -> DashboardRef:
        return super().__new__(cls, (cls.kind, conn_id, key))

    def __getnewargs__(self) -> tuple[str, str]:
        return (self[1], self[2])


class DestinationRef(DataRef):
    """An object in an operational tool (reverse ETL): ``(conn_id, object)``, e.g. ``(crm, contacts)``."""

    __slots__ = ()
    kind = "destination"

    def __new__(cls, conn_id: str, obj: str) -> DestinationRef:
        return super().__new__(cls, (cls.kind, conn_id, obj))

    def __getnewargs__(self) -> tuple[str, str]:
        return (self[1], self[2])


class FilesRef(DataRef):
    """A file location (folder, prefix or object URL): ``("", url)``; local paths are ``file://`` URLs."""

    __slots__ = ()
    kind = "files"

    def __new__(cls, url: str) -> FilesRef:
        return super().__new__(cls, (cls.kind, "", _normalise_url(url)))

    def __getnewargs__(self) -> tuple[str]:
        return (self[2],)

    @property
    def url(self) -> str:
        return str(self[2])

    @property
    def name(self) -> str:
        return f"files:{self.url}"

    @property
    def uri(self) -> str:
        return self.url


REF_KINDS: dict[str, type[DataRef]] = {k.kind: k for k in (TableRef, DashboardRef, DestinationRef, FilesRef)}


def _normalise_url(url: str) -> str:
    if "://" not in url:
        raise ValueError(f"{url!r} is not a location URL: write e.g. s3://bucket/prefix/ or file:///abs/path")
    scheme, _, rest = url.partition("://")
    return f"{scheme.lower()}://{rest.rstrip('/') or '/'}"


_PLAIN_IDENT = re.compile(r"^[a-z_][a-z0-9_$]*$")


def _sql_ident(part: str) -> str:
    return part if _PLAIN_IDENT.match(part) else '"' + part.replace('"', '""') + '"'


def _ident(part: str) -> str:
    """PostgreSQL's rule: ``"Quoted"`` keeps its case, anything else is lower-cased."""
    part = part.strip()
    if len(part) >= 2 and part[0] == part[-1] == '"':
        return part[1:-1].replace('""', '"')
    return part.lower()


def _split_name(name: str) -> list[str]:
    """Split ``schema.table`` on dots outside double quotes."""
    if '"' not in name:
        return name.split(".")
    parts, current, quoted = [], "", False
    for char in name:
        if char == '"':
            quoted = not quoted
        if char == "." and not quoted:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


def parse_table(name: str, *, conn_id: str) -> TableRef:
    """``"schema.table"`` or ``"table"`` (schema ``public``) on the warehouse ``conn_id``;
    ``"other_conn:schema.table"`` names a table on another warehouse connection."""
    if ":" in name and not name.lstrip().startswith('"'):
        conn_id, _, name = name.partition(":")
        if not conn_id.strip():
            raise ValueError(f"{name!r} is not a table name: write 'connection:schema.table'.")
        conn_id = conn_id.strip()
    parts = [_ident(p) for p in _split_name(name)]
    if len(parts) == 1 and parts[0]:
        return TableRef(conn_id, DEFAULT_SCHEMA, parts[0])
    if len(parts) == 2 and all(parts):
        return TableRef(conn_id, parts[0], parts[1])
    raise ValueError(f"{name!r} is not a table name: write 'schema.table', 'table' or 'connection:schema.table'.")


def data_ref_from_yaml(value: str | Mapping[str, Any], *, conn_id: str, base_dir: Any = None) -> DataRef:
    """A ``reads:``/``writes:`` entry: a table name, or ``{<kind>: <key>, connection: <conn>}``.

    ``{files: <path or URL>}`` takes a path relative to ``base_dir`` (the pipeline's folder).
    """
    if isinstance(value, str):
        return parse_table(value, conn_id=conn_id)
    kinds = [k for k in value if k in REF_KINDS]
    extra = sorted(set(value) - set(REF_KINDS) - {"connection"})
    if len(kinds) != 1 or extra:
        raise ValueError(
            f"{dict(value)!r} is not a data reference: write a table name or one of "
            + ", ".join(f"{{{k}: …}}" for k in REF_KINDS)
            + " (with `connection:` for dashboards and destinations)"
        )
    kind = kinds[0]
    key = str(value[kind])
    conn = str(value.get("connection") or conn_id)
    if kind == "table":
        return parse_table(key, conn_id=conn)
    if kind == "files":
        return FilesRef(files_url(key, base_dir))
    return REF_KINDS[kind](conn, key)  # type: ignore[call-arg]


def files_url(location: str, base_dir: Any = None) -> str:
    """A local path (relative to ``base_dir``) or an object-store URL → the URL naming it."""
    if "://" in location:
        return location
    from pathlib import Path

    path = Path(location)
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    return path.resolve().as_uri()


# -- tables, the common case --------------------------------------------------------------
def table_asset_name(ref: TableRef) -> str:
    return ref.name


def table_asset_uri(ref: TableRef) -> str:
    return ref.uri


def table_asset(ref: DataRef) -> Asset:
    return ref.asset()


def ref_from_uri(uri: str) -> DataRef | None:
    """The reference an Asset URI of ours names, or ``None`` for other Assets (files: never)."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return None
    if scheme == ASSET_SCHEME:
        parts = rest.split("/")
        return TableRef(*parts) if len(parts) == 3 and all(parts) else None
    kind = scheme.removeprefix(f"{ASSET_SCHEME}+")
    if kind == scheme or kind not in REF_KINDS or kind in ("table", "files"):
        return None
    conn, _, key = rest.partition("/")
    return REF_KINDS[kind](unquote(conn), unquote(key)) if conn and key else None  # type: ignore[call-arg]


def ref_from_asset(name: str, uri: str) -> DataRef | None:
    """The reference an Asset of ours (by its name and URI) names, files included, or ``None``.

    A files Asset's URI is the location's own URL (Airflow may normalise it): its name says it is ours.
    """
    location = name.removeprefix("files:")
    if location != name and "://" in location:
        return FilesRef(location)
    return ref_from_uri(uri)


def table_ref_from_uri(uri: str) -> TableRef | None:
    """The table named by an ``osds://conn/schema/table`` URI, or ``None`` for other assets."""
    ref = ref_from_uri(uri)
    return ref if isinstance(ref, TableRef) else None
