"""What a reverse-ETL sync is: plain dataclasses the YAML block and the operator build (no Airflow imports).

A :class:`SyncSpec` names its source (a table or a SQL query), the source column that keys each
record, how each destination field is computed (:class:`FieldSpec`), the mode (which changes are
sent) and the named groups (lists / tags) a record belongs to. Nothing here touches a database:
:mod:`.diff` turns a spec into SQL.

Identifiers (the table, the key and mapped columns) are quoted by psycopg; SQL expressions, group
conditions and the query are the user's own SQL, inserted as written inside a subquery.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from airflow_osds.exceptions import OsdsError
from airflow_osds.reverse_etl.destinations.base import Op

__all__ = ["MODE_OPERATIONS", "MODES", "FieldSpec", "Mode", "SourceSpec", "SyncSpec", "SyncSpecError", "spec_from_settings"]

Mode = Literal["upsert", "update", "insert", "mirror"]

#: The operations a destination must support for each mode (checked before anything is sent).
MODE_OPERATIONS: Mapping[str, frozenset[Op]] = {
    "upsert": frozenset({"create", "update"}),
    "update": frozenset({"update"}),
    "insert": frozenset({"create"}),
    "mirror": frozenset({"create", "update", "delete"}),
}
MODES: tuple[str, ...] = tuple(MODE_OPERATIONS)


class SyncSpecError(OsdsError, ValueError):
    """A sync's description is invalid (the message names the sync and the offending part)."""


@dataclass(frozen=True)
class SourceSpec:
    """The rows to sync: a table or view (``table``: ``schema.table`` or ``table``) or a SQL ``query``."""

    table: str | None = None
    query: str | None = None

    def __post_init__(self) -> None:
        if (self.table is None) == (self.query is None):
            raise SyncSpecError("a source is either a table or a query (exactly one of them)")
        if self.table is not None:
            parts = self.table.split(".")
            if not 1 <= len(parts) <= 2 or not all(p.strip() for p in parts):
                raise SyncSpecError(f"source table {self.table!r}: expected 'schema.table' or 'table'")
        if self.query is not None and not self.sql_text():
            raise SyncSpecError("the source query is empty")

    @property
    def table_parts(self) -> tuple[str, ...]:
        """``("schema", "table")`` or ``("table",)`` (as written: each part is quoted, so case matters)."""
        assert self.table is not None
        return tuple(p.strip() for p in self.table.split("."))

    def sql_text(self) -> str:
        """The query without trailing semicolons (it goes inside a subquery)."""
        return (self.query or "").strip().rstrip(";").strip()


_NO_VALUE: Any = object()


@dataclass(frozen=True)
class FieldSpec:
    """How one destination field is computed: exactly one of a source ``column`` (a rename when its
    name differs from the field's), a constant ``value`` (any JSON value; Airflow has already rendered
    it) or a SQL expression ``sql`` over the source's columns (``lower(email)``)."""

    column: str | None = None
    sql: str | None = None
    value: Any = _NO_VALUE

    def __post_init__(self) -> None:
        given = [self.column is not None, self.sql is not None, self.has_value]
        if sum(given) != 1:
            raise SyncSpecError("a field is exactly one of a column, {'value': ...} or {'sql': ...}")
        if self.column is not None and not self.column:
            raise SyncSpecError("a field's column is empty")
        if self.sql is not None and not self.sql.strip():
            raise SyncSpecError("a field's SQL expression is empty")
        if self.has_value:
            try:
                json.dumps(self.value, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise SyncSpecError(f"a constant field's value is not JSON: {exc}") from None

    @property
    def has_value(self) -> bool:
        return self.value is not _NO_VALUE

    @property
    def kind(self) -> Literal["column", "sql", "value"]:
        return "column" if self.column is not None else "sql" if self.sql is not None else "value"

    @classmethod
    def parse(cls, raw: Any, *, name: str = "") -> FieldSpec:
        """A field from its YAML shape: ``"column"``, ``{"column": c}``, ``{"value": v}`` or ``{"sql": e}``."""
        if isinstance(raw, FieldSpec):
            return raw
        where = f"field {name!r}: " if name else ""
        if isinstance(raw, str):
            return cls(column=raw)
        if isinstance(raw, Mapping) and len(raw) == 1:
            (kind, arg), = raw.items()
            if kind == "value":
                return cls(value=arg)
            if kind in ("column", "sql"):
                if not isinstance(arg, str):
                    raise SyncSpecError(f"{where}{kind} must be a string, got {type(arg).__name__}")
                return cls(**{kind: arg})
        raise SyncSpecError(f"{where}expected a column name, {{'column': ...}}, {{'value': ...}} or {{'sql': ...}}, "
                            f"got {raw!r}")


@dataclass(frozen=True)
class SyncSpec:
    """One sync.

    :param sync_id: names the sync's state in the warehouse (keep it stable: a new id means a first sync).
    :param source: the rows.
    :param key: the source column identifying a record (compared as text; it must be unique and non-null).
    :param fields: destination field → :class:`FieldSpec` (or its YAML shape, parsed here).
    :param mode: ``upsert`` (create + update), ``update`` (update only), ``insert`` (create only) or
        ``mirror`` (create + update + delete of records gone from the source).
    :param groups: group name → SQL boolean condition over the source's columns; a record belongs to
        the groups whose condition is true (NULL counts as false).
    :param group_field: the destination field that also carries the list of group names (by default
        the groups are only in :attr:`Change.groups`).
    """

    sync_id: str
    source: SourceSpec
    key: str
    fields: Mapping[str, FieldSpec]
    mode: Mode = "upsert"
    groups: Mapping[str, str] = field(default_factory=dict)
    group_field: str | None = None

    def __post_init__(self) -> None:
        if not self.sync_id or not self.sync_id.strip():
            raise SyncSpecError("a sync needs a sync_id")
        at = f"sync {self.sync_id!r}: "
        if not isinstance(self.source, SourceSpec):
            raise SyncSpecError(f"{at}source must be a SourceSpec")
        if self.mode not in MODE_OPERATIONS:
            raise SyncSpecError(f"{at}mode {self.mode!r} is not one of {', '.join(MODES)}")
        if not self.key:
            raise SyncSpecError(f"{at}a sync needs a key column")
        object.__setattr__(self, "fields", {str(n): FieldSpec.parse(f, name=str(n)) for n, f in self.fields.items()})
        if any(not n for n in self.fields):
            raise SyncSpecError(f"{at}a field name is empty")
        for name, condition in self.groups.items():
            if not name or not isinstance(condition, str) or not condition.strip():
                raise SyncSpecError(f"{at}group {name!r} needs a name and a SQL condition")
        object.__setattr__(self, "groups", dict(self.groups))
        if self.group_field is not None:
            if not self.group_field:
                raise SyncSpecError(f"{at}group_field is empty")
            if self.group_field in self.fields:
                raise SyncSpecError(f"{at}group_field {self.group_field!r} is also a mapped field")
            if not self.groups:
                raise SyncSpecError(f"{at}group_field {self.group_field!r} is set but the sync defines no groups")

    @property
    def operations(self) -> frozenset[Op]:
        """The operations this sync's mode needs from its destination."""
        return MODE_OPERATIONS[self.mode]


def spec_from_settings(
    *,
    sync_id: str,
    source: Mapping[str, Any],
    fields: Mapping[str, Any],
    mode: str = "upsert",
    groups: Mapping[str, str] | None = None,
    group_field: str | None = None,
) -> SyncSpec:
    """A spec from the YAML block's shapes (what the operator is given, rendered):
    ``source = {"table": …} | {"sql": …}`` plus ``key``; ``fields`` as :meth:`FieldSpec.parse` reads them."""
    unknown = set(source) - {"table", "sql", "key"}
    if unknown:
        raise SyncSpecError(f"sync {sync_id!r}: the source has unknown settings {sorted(unknown)} (table, sql, key)")
    if not source.get("key"):
        raise SyncSpecError(f"sync {sync_id!r}: the source needs a `key` column")
    return SyncSpec(
        sync_id=sync_id,
        source=SourceSpec(table=source.get("table"), query=source.get("sql")),
        key=str(source["key"]),
        fields=dict(fields),
        mode=mode,  # type: ignore[arg-type]
        groups=dict(groups or {}),
        group_field=group_field,
    )
