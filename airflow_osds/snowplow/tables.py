"""Entity ("shredded") tables: one PostgreSQL table per vendor/name/MODEL, laid out as Snowplow's Postgres Loader does.

Every context, derived context and self-describing event becomes a row of the table of its
schema's model (``com_snowplowanalytics_snowplow_web_page_1``), joined to ``atomic.events`` by
``root_id = event_id AND root_tstamp = collector_tstamp``. This module derives everything
from the JSON Schema and the table's state; it runs SQL only through a connection passed to
:func:`read_table_state` (the loader runs the rest).

**Columns.** Meta columns first (:data:`META_COLUMNS`), then the schema's properties,
flattened: nested object properties become dotted snake_case names (``address.city``), always
quoted. The data columns are ordered like schema-ddl orders a schema (``FlatSchema.postProcess``):
NOT NULL columns first, then nullable ones, alphabetically within each. The order only decides
the column order of a table created from that version; a migration appends new columns at the
end, and every COPY names its columns, so loading never depends on column positions.

**Types** (first match wins, as ``shredding/Type.scala``): a mixed-type enum → ``JSONB``; an
array or a union of several non-null types → ``JSONB`` (``["integer","number"]`` counts as
``number``); string ``date-time`` → ``TIMESTAMP``, ``date`` → ``DATE``; integer → ``INTEGER``
when ``maximum`` (and ``minimum``, when given) fit 32 bits, else ``BIGINT``; an integer enum →
``INTEGER``/``BIGINT``; number → ``DOUBLE PRECISION``; boolean → ``BOOLEAN``; string with
``minLength == maxLength`` → ``CHAR(n)``; ``uuid`` → ``UUID``; ``maxLength`` → ``VARCHAR(n)``;
a string enum → ``VARCHAR(longest)``; other strings → ``VARCHAR(4096)``; anything else
(objects without properties, ``$ref``, no ``type``) → ``JSONB``. ``["string","null"]`` is a
nullable string, not a union.

**Nullability.** NOT NULL only for a property that is required, cannot be null, and whose
parents are all required and non-null — and only in a table created from the model's first
version (``M-0-0``): a table created from a later version also receives events of earlier
versions, which may lack a property the later one requires. Columns added by a migration are
always nullable (existing rows lack them).

**Version tracking and migration.** ``COMMENT ON TABLE … IS 'iglu:…'`` records the newest
version the table was migrated to. :func:`plan` compares the table with an event's schema:
missing table → CREATE; missing columns → ``ADD COLUMN`` (for older versions too: a table
created from ``1-0-1`` lacks a property ``1-0-1`` dropped); a wider ``VARCHAR`` → ``ALTER
COLUMN … TYPE`` (safe, metadata only); a NOT NULL column the version does not require →
``DROP NOT NULL``; any other type change → :class:`TableMigrationError` (as Snowplow, which
migrates no type change: change the MODEL). A new MODEL is a new table.

**Idempotent loads (ours).** Snowplow's loader has no deduplication: a replayed event doubles
its entity rows and joins fan out. We add ``osds_entity_hash`` — the MD5 of the entity's
canonical JSON (schema URI and data, keys sorted) — and a unique index on
``(root_id, root_tstamp, osds_entity_hash)``; the loader inserts with ``ON CONFLICT DO
NOTHING`` (:func:`insert_new_rows_sql`), so a replayed entity row is skipped. Several
*identical* entities on one event are not collapsed: the n-th repeat (n ≥ 1) hashes with its
occurrence number (:func:`entity_hash`), so an event keeps as many rows as it has entities,
exactly as with Snowplow's loader, and a replay of it still adds none.

**Identifiers.** PostgreSQL truncates names longer than 63 bytes, so two long names could
silently become one. A longer table or column name is shortened deterministically: cut, then
``_<first 8 hex of md5(full name)>`` (and ``_<model>`` for tables), 63 bytes in all.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from airflow_osds.exceptions import OsdsError
from airflow_osds.snowplow.iglu import SchemaKey

__all__ = [
    "COPY_OPTIONS",
    "Column",
    "DEDUPE_KEY",
    "DataRow",
    "ExistingColumn",
    "MAX_IDENTIFIER",
    "META_COLUMNS",
    "RowError",
    "SchemaLayoutError",
    "TableMigrationError",
    "TableState",
    "canonical_json",
    "columns",
    "copy_fields",
    "copy_line",
    "copy_sql",
    "create_table_sql",
    "data_values",
    "entity_canonical",
    "entity_hash",
    "entity_hash_text",
    "index_name",
    "insert_new_rows_sql",
    "meta_values",
    "migration_sql",
    "normalize_type",
    "plan",
    "qualified",
    "quote_ident",
    "read_table_state",
    "row",
    "snake_case",
    "sql_type",
    "staging_table_sql",
    "table_name",
]

MAX_IDENTIFIER = 63
DEFAULT_VARCHAR = 4096
_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_VARCHAR_LIMIT = 10485760  # PostgreSQL's largest VARCHAR(n)


class SchemaLayoutError(OsdsError):
    """A schema cannot be laid out as a table (two properties map to one column name)."""


class TableMigrationError(OsdsError):
    """A table cannot be brought to a schema version without a change we refuse to make (a type change)."""


class RowError(OsdsError):
    """An entity value cannot be stored in its column (e.g. out of range, NUL character).

    :meth:`failure` renders the ``WrongType`` entry of ``loader_iglu_error/jsonschema/2-0-1``,
    the kind Snowplow's loader uses for a value it cannot cast.
    """

    def __init__(self, key: SchemaKey, column: str, value: Any, expected: str) -> None:
        self.key = key
        self.column = column
        self.value = value
        self.expected = expected
        super().__init__(f"{key.uri}: column {column!r} cannot store the value: {expected}")

    def failure(self) -> dict[str, Any]:
        return {"schemaKey": self.key.uri, "value": self.value, "expected": f"{self.expected} (column {self.column})"}


@dataclass(frozen=True, slots=True)
class Column:
    """One table column. ``path`` is where the value sits in the entity data (``()`` for meta columns)."""

    name: str
    sql_type: str
    nullable: bool
    path: tuple[str, ...] = ()

    def ddl(self, *, nullable: bool | None = None) -> str:
        null = self.nullable if nullable is None else nullable
        return f"{quote_ident(self.name)} {self.sql_type}" + ("" if null else " NOT NULL")


@dataclass(frozen=True, slots=True)
class ExistingColumn:
    """A column as the database has it (``sql_type`` in this module's spelling, see :func:`normalize_type`)."""

    name: str
    sql_type: str
    nullable: bool


@dataclass(frozen=True, slots=True)
class TableState:
    """An entity table as it exists: its columns by name and the version in its comment."""

    columns: dict[str, ExistingColumn]
    comment: SchemaKey | None


META_COLUMNS: tuple[Column, ...] = (
    Column("schema_vendor", "VARCHAR(128)", True),
    Column("schema_name", "VARCHAR(128)", True),
    Column("schema_format", "VARCHAR(128)", True),
    Column("schema_version", "VARCHAR(128)", True),
    Column("root_id", "UUID", False),
    Column("root_tstamp", "TIMESTAMP", False),
    Column("osds_entity_hash", "CHAR(32)", False),
)
_META_NAMES = frozenset(c.name for c in META_COLUMNS)
#: The unique key replayed rows collide on.
DEDUPE_KEY = ("root_id", "root_tstamp", "osds_entity_hash")
#: COPY options matching :func:`copy_line`: CSV, tab-separated, every value quoted, NULL unquoted empty.
COPY_OPTIONS = "(FORMAT csv, DELIMITER E'\\t', QUOTE '\"', ESCAPE '\"', NULL '')"

# --------------------------------------------------------------------------- names


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def qualified(db_schema: str, table: str) -> str:
    return f"{quote_ident(db_schema)}.{quote_ident(table)}"


_CAMEL_1 = re.compile(r"([A-Z]+)([A-Z][a-z])")
_CAMEL_2 = re.compile(r"([a-z0-9])([A-Z])")


@functools.lru_cache(maxsize=4096)
def snake_case(name: str) -> str:
    """schema-ddl's ``StringUtils.snakeCase``: ``linkClick`` → ``link_click``, ``HTMLParser`` → ``html_parser``."""
    return _CAMEL_2.sub(r"\1_\2", _CAMEL_1.sub(r"\1_\2", name)).replace("-", "_").lower()


def _digest(text: str) -> str:
    return hashlib.md5(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def _cut(text: str, limit: int) -> str:
    """The longest prefix of ``text`` that is at most ``limit`` bytes in UTF-8."""
    encoded = text.encode("utf-8", "surrogatepass")[:limit]
    return encoded.decode("utf-8", "ignore")


def _fit(name: str, suffix: str = "") -> str:
    """``name + suffix`` if it fits 63 bytes, else ``cut(name) + _<md5[:8]> + suffix`` (63 bytes)."""
    full = name + suffix
    if len(full.encode("utf-8", "surrogatepass")) <= MAX_IDENTIFIER:
        return full
    tail = f"_{_digest(full)}{suffix}"
    return _cut(name, MAX_IDENTIFIER - len(tail.encode())) + tail


@functools.lru_cache(maxsize=4096)
def table_name(key: SchemaKey) -> str:
    """``com.snowplowanalytics.snowplow/link_click/…/1-0-1`` → ``com_snowplowanalytics_snowplow_link_click_1``.

    Names longer than 63 bytes keep their ``_<model>`` and get a hash of the full name before it.
    """
    vendor = key.vendor.replace(".", "_").replace("-", "_").lower()
    return _fit(f"{vendor}_{snake_case(key.name)}", f"_{key.model}")


def index_name(table: str) -> str:
    """The dedupe index of ``table`` (index names share the schema's namespace, so it embeds the table's)."""
    return _fit(table, "_osds_dedupe")


# --------------------------------------------------------------------------- columns


def _types(prop: Mapping[str, Any]) -> set[str] | None:
    declared = prop.get("type")
    if isinstance(declared, str):
        return {declared}
    if isinstance(declared, list):
        return {t for t in declared if isinstance(t, str)}
    return None


def _can_be_null(prop: Mapping[str, Any]) -> bool:
    types = _types(prop)
    enum = prop.get("enum")
    return (types is not None and "null" in types) or (isinstance(enum, list) and None in enum)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _enum_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if _is_number(value):
        return "number"
    if isinstance(value, str):
        return "string"
    return "json"  # objects and arrays


def sql_type(prop: Mapping[str, Any]) -> str:
    """The PostgreSQL type of one leaf property (see the module docstring for the order)."""
    types = _types(prop)
    non_null = None if types is None else types - {"null"}
    enum = prop.get("enum")
    values = [v for v in enum if v is not None] if isinstance(enum, list) else []
    if len({_enum_kind(v) for v in values}) > 1:
        return "JSONB"
    numeric_union = non_null == {"integer", "number"}
    if non_null is not None and ("array" in non_null or (len(non_null) > 1 and not numeric_union)):
        return "JSONB"
    fmt = prop.get("format")
    is_string = non_null == {"string"}
    if is_string and fmt == "date-time":
        return "TIMESTAMP"
    if is_string and fmt == "date":
        return "DATE"
    if non_null == {"integer"} or (non_null is None and values and all(_is_int(v) for v in values)):
        maximum, minimum = prop.get("maximum"), prop.get("minimum")
        if _is_number(maximum):
            small = maximum <= _INT32[1] and (not _is_number(minimum) or minimum >= _INT32[0])
            return "INTEGER" if small else "BIGINT"
        if values and all(_is_int(v) for v in values):
            return "INTEGER" if all(_INT32[0] <= v <= _INT32[1] for v in values) else "BIGINT"
        return "BIGINT"
    if non_null == {"number"} or numeric_union:
        return "DOUBLE PRECISION"
    if non_null == {"boolean"} or (non_null is None and values and all(isinstance(v, bool) for v in values)):
        return "BOOLEAN"
    min_length, max_length = prop.get("minLength"), prop.get("maxLength")
    if is_string and _is_int(max_length) and min_length == max_length and max_length > 0:
        return f"CHAR({max_length})"
    if is_string and fmt == "uuid":
        return "UUID"
    if is_string and _is_int(max_length) and max_length > 0:
        return f"VARCHAR({max_length})" if max_length <= _VARCHAR_LIMIT else "TEXT"
    if (is_string or non_null is None) and values and all(isinstance(v, str) for v in values):
        return f"VARCHAR({max(1, max(len(v) for v in values))})"
    if is_string:
        return f"VARCHAR({DEFAULT_VARCHAR})"
    return "JSONB"


def _is_nested(prop: Mapping[str, Any]) -> bool:
    # An object with properties is flattened; one without (or with an empty "properties") is
    # one JSONB column: schema-ddl would give it no column at all and drop its data.
    types = _types(prop)
    if types is None or types - {"null"} != {"object"}:
        return False
    return isinstance(prop.get("properties"), dict) and bool(prop["properties"])


def columns(schema: Mapping[str, Any]) -> list[Column]:
    """The data columns of a schema (without :data:`META_COLUMNS`): flattened, typed, ordered.

    :raises SchemaLayoutError: two properties give the same column name (``fooBar`` and
        ``foo_bar``), or a property takes a meta column's name.
    """
    leaves: list[tuple[tuple[str, ...], Mapping[str, Any], bool]] = []

    def walk(node: Mapping[str, Any], path: tuple[str, ...], required_chain: bool, null_chain: bool) -> None:
        properties = node.get("properties")
        if not isinstance(properties, dict):
            return
        required = node.get("required")
        required_set = set(required) if isinstance(required, list) else set()
        for name, prop in properties.items():
            prop = prop if isinstance(prop, dict) else {}
            here = (*path, name)
            required_here = required_chain and name in required_set
            nullable_here = _can_be_null(prop)
            if _is_nested(prop):
                walk(prop, here, required_here and not nullable_here, null_chain or nullable_here)
            else:
                leaves.append((here, prop, not required_here or nullable_here or null_chain))

    walk(schema, (), True, False)
    result: list[Column] = []
    seen: dict[str, tuple[str, ...]] = {}
    for path, prop, nullable in leaves:
        name = _fit(".".join(snake_case(p) for p in path))
        if name in _META_NAMES:
            raise SchemaLayoutError(f"property {'.'.join(path)!r} would be column {name!r}, which is a meta column")
        if name in seen:
            raise SchemaLayoutError(
                f"properties {'.'.join(seen[name])!r} and {'.'.join(path)!r} both become column {name!r}"
            )
        seen[name] = path
        result.append(Column(name, sql_type(prop), nullable, path))
    result.sort(key=lambda c: (c.nullable, c.name))
    return result


# --------------------------------------------------------------------------- DDL


def create_table_sql(db_schema: str, key: SchemaKey, schema: Mapping[str, Any]) -> list[str]:
    """``CREATE TABLE IF NOT EXISTS`` with meta and data columns, the dedupe index and the version comment."""
    table = table_name(key)
    first_version = key.revision == 0 and key.addition == 0
    data = columns(schema)
    definitions = [c.ddl() for c in META_COLUMNS] + [c.ddl(nullable=c.nullable or not first_version) for c in data]
    body = ",\n  ".join(definitions)
    return [
        f"CREATE TABLE IF NOT EXISTS {qualified(db_schema, table)} (\n  {body}\n)",
        _index_sql(db_schema, table),
        _comment_sql(db_schema, table, key),
    ]


def _index_sql(db_schema: str, table: str) -> str:
    keys = ", ".join(quote_ident(c) for c in DEDUPE_KEY)
    return f"CREATE UNIQUE INDEX IF NOT EXISTS {quote_ident(index_name(table))} ON {qualified(db_schema, table)} ({keys})"


def _comment_sql(db_schema: str, table: str, key: SchemaKey) -> str:
    return f"COMMENT ON TABLE {qualified(db_schema, table)} IS '{key.uri.replace(chr(39), chr(39) * 2)}'"


_PG_TYPES = {
    "character varying": "VARCHAR",
    "character": "CHAR",
    "timestamp without time zone": "TIMESTAMP",
    "timestamp with time zone": "TIMESTAMPTZ",
    "double precision": "DOUBLE PRECISION",
}
_SIZED = re.compile(r"^(character varying|character|varchar|char|bpchar)\((\d+)\)$")


def normalize_type(pg_type: str) -> str:
    """PostgreSQL's ``format_type`` spelling → this module's: ``character varying(255)`` → ``VARCHAR(255)``."""
    text = pg_type.strip().lower()
    sized = _SIZED.match(text)
    if sized:
        base = "VARCHAR" if sized.group(1) in ("character varying", "varchar") else "CHAR"
        return f"{base}({sized.group(2)})"
    return _PG_TYPES.get(text, text.upper())


def _text_limit(sql: str) -> int | None:
    """The most characters a text column holds (``sys.maxsize``: no limit); ``None`` for a column that is not text."""
    if sql in ("TEXT", "VARCHAR"):
        return sys.maxsize
    return _size(sql, "VARCHAR") or _size(sql, "CHAR")


def _size(sql: str, base: str) -> int | None:
    if sql.startswith(base + "(") and sql.endswith(")"):
        return int(sql[len(base) + 1 : -1])
    return None


def _compatibility(existing: str, target: str) -> tuple[str, str | None]:
    """``("ok", None)`` the column holds every value; ``("widen", type)`` it must grow; ``("conflict", None)``."""
    if existing == target:
        return "ok", None
    have_varchar, have_char = _size(existing, "VARCHAR"), _size(existing, "CHAR")
    want_varchar, want_char = _size(target, "VARCHAR"), _size(target, "CHAR")
    want = want_varchar if want_varchar is not None else want_char
    if existing in ("TEXT", "VARCHAR") and (want is not None or target == "TEXT"):
        return "ok", None
    if have_varchar is not None and want is not None:
        return ("ok", None) if want <= have_varchar else ("widen", f"VARCHAR({want})")
    if have_varchar is not None and target == "TEXT":
        return "widen", "TEXT"
    if have_char is not None and want_char is not None:
        return "conflict", None
    if existing == "BIGINT" and target == "INTEGER":
        return "ok", None
    if existing == "DOUBLE PRECISION" and target in ("INTEGER", "BIGINT"):
        return "ok", None
    return "conflict", None


def _as_existing(existing: Mapping[str, ExistingColumn] | Sequence[ExistingColumn]) -> dict[str, ExistingColumn]:
    if isinstance(existing, Mapping):
        return dict(existing)
    return {c.name: c for c in existing}


def _diff(
    db_schema: str,
    table: str,
    have: dict[str, ExistingColumn],
    key: SchemaKey,
    schema: Mapping[str, Any],
    current: SchemaKey | None,
) -> list[str]:
    target = qualified(db_schema, table)
    missing_meta = [c.name for c in META_COLUMNS if c.name not in have and c.name != "osds_entity_hash"]
    if missing_meta:
        raise TableMigrationError(
            f"{target} is not an entity table: it lacks the meta column(s) {', '.join(missing_meta)}"
        )
    statements: list[str] = []
    if "osds_entity_hash" not in have:  # created by Snowplow's own loader: add our dedupe key
        statements.append(f"ALTER TABLE {target} ADD COLUMN {quote_ident('osds_entity_hash')} CHAR(32)")
        statements.append(_index_sql(db_schema, table))
    wanted = columns(schema)
    conflicts = []
    for column in wanted:
        existing = have.get(column.name)
        if existing is None:
            statements.append(f"ALTER TABLE {target} ADD COLUMN {column.ddl(nullable=True)}")
            continue
        verdict, new_type = _compatibility(existing.sql_type, column.sql_type)
        if verdict == "conflict":
            conflicts.append(
                f"column {column.name!r} is {existing.sql_type} in the table but {column.sql_type} in {key.uri}"
            )
        elif verdict == "widen":
            statements.append(f"ALTER TABLE {target} ALTER COLUMN {quote_ident(column.name)} TYPE {new_type}")
        if not existing.nullable and column.nullable:
            statements.append(f"ALTER TABLE {target} ALTER COLUMN {quote_ident(column.name)} DROP NOT NULL")
    if conflicts:
        since = f" (table at {current.uri})" if current is not None else ""
        raise TableMigrationError(
            f"Cannot bring {target}{since} to {key.uri}: {'; '.join(conflicts)}. Type changes are not migrated "
            "(nor by Snowplow's loader): publish the change as a new MODEL, which gets its own table, "
            "or ALTER the column by hand."
        )
    wanted_names = {c.name for c in wanted}
    for name, existing in have.items():
        if name not in wanted_names and name not in _META_NAMES and not existing.nullable:
            statements.append(f"ALTER TABLE {target} ALTER COLUMN {quote_ident(name)} DROP NOT NULL")
    return statements


def migration_sql(
    db_schema: str,
    key: SchemaKey,
    existing_columns: Mapping[str, ExistingColumn] | Sequence[ExistingColumn],
    target_key: SchemaKey,
    target_schema: Mapping[str, Any],
) -> list[str]:
    """Bring the table of ``key`` (its comment's version) to ``target_key``: ALTERs, then the new comment.

    One ``ADD COLUMN`` per missing column (always nullable), ``TYPE VARCHAR(n)`` for a wider
    string, ``DROP NOT NULL`` where the target no longer requires a column.

    :raises ValueError: ``target_key`` is another schema or MODEL (that is another table).
    :raises TableMigrationError: a column's type would have to change.
    """
    if (key.vendor, key.name, key.model) != (target_key.vendor, target_key.name, target_key.model):
        raise ValueError(
            f"{target_key.uri} is not a version of the table of {key.uri}: another schema or MODEL is another table"
        )
    table = table_name(key)
    statements = _diff(db_schema, table, _as_existing(existing_columns), target_key, target_schema, key)
    if target_key > key:
        statements.append(_comment_sql(db_schema, table, target_key))
    return statements


def plan(
    db_schema: str,
    existing: Mapping[str, ExistingColumn] | Sequence[ExistingColumn] | None,
    comment_version: SchemaKey | None,
    key: SchemaKey,
    schema: Mapping[str, Any],
) -> list[str]:
    """The statements that make the table of ``key`` able to take entities of ``key``'s version.

    * ``existing is None`` (no table): :func:`create_table_sql`.
    * ``key`` newer than ``comment_version``: :func:`migration_sql` (``ADD COLUMN`` …, new comment).
    * ``key`` older or equal: usually nothing; an older version's columns are normally a subset.
      Where they are not (the table was created from a later version that dropped a property)
      the missing columns are added, and the comment stays.
    * No comment (the table was made by hand): checked like a migration, then commented ``key``.

    :raises TableMigrationError: a type change, or the comment names another schema.
    """
    if existing is None:
        return create_table_sql(db_schema, key, schema)
    table = table_name(key)
    have = _as_existing(existing)
    if comment_version is not None and (comment_version.vendor, comment_version.name, comment_version.model) != (
        key.vendor,
        key.name,
        key.model,
    ):
        raise TableMigrationError(
            f"{qualified(db_schema, table)} is commented {comment_version.uri}, not a version of {key.uri}'s model"
        )
    statements = _diff(db_schema, table, have, key, schema, comment_version)
    if comment_version is None or key > comment_version:
        statements.append(_comment_sql(db_schema, table, key))
    return statements


_STATE_SQL = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull
FROM pg_attribute a
WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""


def read_table_state(conn: Any, db_schema: str, table: str) -> TableState | None:
    """The state of ``db_schema.table`` through a psycopg connection (or cursor); ``None`` when it does not exist.

    :raises TableMigrationError: the table's comment is not an Iglu URI (it is not an entity table).
    """
    name = qualified(db_schema, table)
    found = conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL, obj_description(to_regclass(%s), 'pg_class')", (name, name)
    ).fetchone()
    if not found or not found[0]:
        return None
    comment = found[1]
    rows = conn.execute(_STATE_SQL, (name,)).fetchall()
    state_columns = {r[0]: ExistingColumn(r[0], normalize_type(r[1]), bool(r[2])) for r in rows}
    version = None
    if comment:
        try:
            version = SchemaKey.parse(comment.strip())
        except ValueError:
            raise TableMigrationError(f"{name} has the comment {comment!r}, which is not an Iglu schema URI") from None
    return TableState(state_columns, version)


# --------------------------------------------------------------------------- rows


def canonical_json(value: Any, *, finite: bool = False) -> str:
    """JSON with sorted keys and no spaces: equal data, equal text (the standard library's, which hashes depend on).

    :param finite: the value holds no NaN or infinity (msgspec parsed it): a ``null`` in the
        text is then a ``None``, not a float msgspec writes as ``null``.
    :raises ValueError: NaN or an infinity, which JSON cannot write.
    """
    try:
        text = _sorted_json(value)
    except (TypeError, ValueError, OverflowError):  # a lone surrogate, an int past 64 bits …
        text = None
    if text is None or (not finite and "null" in text) or "0.0000" in text or _EXPONENT.search(text):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text


# msgspec writes the same text ≈5× faster except for some floats (1e16 for 1e+16, 0.00001
# for 1e-05) and NaN/Infinity (null, where json.dumps refuses): text that may hold one of
# these is made by json.dumps. A string that only looks like one costs that slower path, no
# more. (Substrings and a pattern that starts with a literal: a full number pattern would
# cost more than json.dumps.)
_EXPONENT = re.compile(r"e[-+0-9]")


def _sorted_json(value: Any) -> str:
    global _sorted_json
    try:
        import msgspec.json
    except ImportError:  # pragma: no cover - msgspec comes with Airflow
        _sorted_json = lambda value: None  # noqa: E731
    else:
        encode = msgspec.json.Encoder(order="sorted").encode
        _sorted_json = lambda value: encode(value).decode()  # noqa: E731
    return _sorted_json(value)


def entity_canonical(key: SchemaKey, data: Any, *, finite: bool = False) -> str:
    """The text an entity's hash is taken of: canonical ``{"data": data, "schema": uri}`` (see :func:`canonical_json`)."""
    return canonical_json({"schema": key.uri, "data": data}, finite=finite)


def entity_hash_text(canonical: str, occurrence: int = 0) -> str:
    """MD5 hex of :func:`entity_canonical`'s text; the n-th repeat on an event (n ≥ 1) appends ``\\x1f<n>``."""
    if occurrence:
        canonical += f"\x1f{occurrence}"
    return hashlib.md5(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def entity_hash(key: SchemaKey, data: Any, occurrence: int = 0) -> str:
    """``osds_entity_hash`` of an entity: see :func:`entity_hash_text`."""
    return entity_hash_text(entity_canonical(key, data), occurrence)


_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def _text_ok(text: str) -> bool:
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a "\ud800" escape
        return False
    return True


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


_Convert = Callable[[Any], "str | None"]


class _Unfit(Exception):
    def __init__(self, expected: str) -> None:
        self.expected = expected


def _to_text(limit: int | None) -> _Convert:
    def convert(value: Any) -> str:
        text = value if isinstance(value, str) else _json_text(value)
        if limit is not None and len(text) > limit:
            raise _Unfit(f"at most {limit} characters")
        if not _text_ok(text):
            raise _Unfit("text without NUL characters or unpaired surrogates")
        return text

    return convert


def _to_integer(bounds: tuple[int, int], name: str) -> _Convert:
    def convert(value: Any) -> str:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not _is_int(value) or not bounds[0] <= value <= bounds[1]:
            raise _Unfit(f"an {name}")
        return str(value)

    return convert


def _to_double(value: Any) -> str:
    if not _is_number(value):
        raise _Unfit("a number")
    return repr(float(value)) if isinstance(value, float) else str(value)


def _to_boolean(value: Any) -> str:
    if not isinstance(value, bool):
        raise _Unfit("a boolean")
    return "t" if value else "f"


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
_UTC_STAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?[Zz]?\Z")


def _to_uuid(value: Any) -> str:
    if not isinstance(value, str) or not _UUID.match(value):
        raise _Unfit("a UUID")
    return value


def _to_date(value: Any) -> str:
    if not isinstance(value, str) or not _ISO_DATE.match(value):
        raise _Unfit("a date (YYYY-MM-DD)")
    return value


def _to_timestamp(value: Any) -> str:
    # TIMESTAMP (without time zone) holds UTC, as atomic.events does. PostgreSQL ignores an
    # offset when casting to it, so an offset is applied here; "Z" and no offset pass as given.
    if not isinstance(value, str):
        raise _Unfit("a date-time string")
    if _UTC_STAMP.match(value):
        return value
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _Unfit("an RFC 3339 date-time") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
    return parsed.isoformat()


def _to_jsonb(value: Any) -> str:
    text = _json_text(value)
    if _NUL_ESCAPE.search(text) or not _text_ok(text):
        raise _Unfit("JSON without \\u0000 or unpaired surrogates (jsonb rejects them)")
    return text


@functools.lru_cache(maxsize=256)
def _converter(sql: str) -> _Convert:
    if sql == "JSONB":
        return _to_jsonb
    if sql in ("TEXT", "VARCHAR"):
        return _to_text(None)
    size = _size(sql, "VARCHAR") or _size(sql, "CHAR")
    if size is not None:
        return _to_text(size)
    return {
        "INTEGER": _to_integer(_INT32, "integer (32-bit)"),
        "BIGINT": _to_integer(_INT64, "integer (64-bit)"),
        "DOUBLE PRECISION": _to_double,
        "BOOLEAN": _to_boolean,
        "UUID": _to_uuid,
        "DATE": _to_date,
        "TIMESTAMP": _to_timestamp,
    }.get(sql, _to_text(None))


def _value_at(data: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(data, dict):
            return None
        data = data.get(part)
        if data is None:
            return None
    return data


def row(
    columns: Sequence[Column],
    key: SchemaKey,
    root_id: str,
    root_tstamp: str,
    data: Any,
    *,
    entity_hash: str | None = None,
) -> list[str | None]:
    """COPY-ready text values for ``[*META_COLUMNS, *columns]``; ``None`` is SQL NULL.

    JSONB as JSON text, booleans ``t``/``f``, numbers as text, timestamps as given (an offset
    other than ``Z`` converted to UTC), a missing property or JSON ``null`` → NULL. A string
    column given a non-string (possible when the table's type came from another version)
    gets its JSON text, as Snowplow's loader does.

    :param entity_hash: from :attr:`~airflow_osds.snowplow.entities.Entity.hash` (it numbers
        identical repeats on one event); computed as the first occurrence when omitted.
    :raises RowError: a value cannot be stored (out of range, longer than the column, NUL …).
    """
    meta = meta_values(key, root_id, root_tstamp, entity_hash if entity_hash is not None else _hash(key, data))
    return meta + data_values(columns, key, data)


def meta_values(key: SchemaKey, root_id: str, root_tstamp: str, entity_hash: str) -> list[str | None]:
    """The values of :data:`META_COLUMNS`: what ties an entity row to its schema and event."""
    return [key.vendor, key.name, key.format, key.version, root_id, root_tstamp, entity_hash]


def data_values(columns: Sequence[Column], key: SchemaKey, data: Any) -> list[str | None]:
    """The values of ``columns`` from the entity's data (see :func:`row`); they depend on the data alone.

    :raises RowError: a value cannot be stored.
    """
    values: list[str | None] = []
    for column in columns:
        value = _value_at(data, column.path)
        if value is None:
            values.append(None)
            continue
        try:
            values.append(_converter(column.sql_type)(value))
        except _Unfit as unfit:
            raise RowError(key, column.name, value, f"{column.sql_type}: {unfit.expected}") from None
    return values


class DataRow:
    """:func:`data_values` of one column list, compiled: it walks the data's keys, not every column.

    Most entities set a few of their schema's properties (a yauaa context: 17 of 46), and the
    loader computes this once per distinct entity, so the walk goes the short way. The values
    and the :class:`RowError` are :func:`data_values`'s (the exact walk raises the error, so it
    names the first column that does not fit).
    """

    __slots__ = ("columns", "_by_key", "_strings", "_width")

    def __init__(self, columns: Sequence[Column]) -> None:
        self.columns = tuple(columns)
        self._width = len(self.columns)
        by_key: dict[str, list[tuple[int, tuple[str, ...], _Convert]]] = {}
        for index, column in enumerate(self.columns):
            by_key.setdefault(column.path[0], []).append((index, column.path[1:], _converter(column.sql_type)))
        self._by_key = by_key
        # A key whose one column is a top-level text column: copy_fields checks an ASCII string for it
        # inline (no NUL, not too long), the common case, and leaves any other value to its converter.
        self._strings: dict[str, tuple[int, int]] = {}
        for name, targets in by_key.items():
            (index, rest, _), *others = targets
            limit = _text_limit(self.columns[index].sql_type)
            if not others and not rest and limit is not None:
                self._strings[name] = (index, limit)

    def values(self, key: SchemaKey, data: Any) -> list[str | None]:
        """:func:`data_values` of ``data``. :raises RowError: a value cannot be stored."""
        values: list[str | None] = [None] * self._width
        for index, text in self._found(key, data):
            values[index] = text
        return values

    def copy_fields(self, key: SchemaKey, data: Any) -> str:
        """``copy_fields(self.values(key, data))``. :raises RowError: a value cannot be stored."""
        fields = [""] * self._width  # an unquoted empty field is NULL
        if not isinstance(data, dict):
            return "\t".join(fields)
        strings, others = self._strings, None
        for name, value in data.items():
            string = strings.get(name)
            if string is not None and value.__class__ is str and value.isascii() and len(value) <= string[1] \
                    and "\x00" not in value:
                fields[string[0]] = '"' + value.replace('"', '""') + '"'
            elif value is not None and name in self._by_key:
                if others is None:
                    others = {}
                others[name] = value
        if others is not None:
            for index, text in self._found(key, others, data):
                fields[index] = '"' + text.replace('"', '""') + '"'
        return "\t".join(fields)

    def _found(self, key: SchemaKey, data: Any, whole: Any = None) -> list[tuple[int, str]]:
        """``(column index, text)`` of the columns that are not NULL (of the keys in ``data``, part of ``whole``)."""
        found: list[tuple[int, str]] = []
        if not isinstance(data, dict):
            return found
        by_key = self._by_key
        try:
            for name, value in data.items():
                targets = by_key.get(name)
                if targets is None or value is None:
                    continue
                for index, rest, convert in targets:
                    leaf = _value_at(value, rest) if rest else value
                    if leaf is not None:
                        found.append((index, convert(leaf)))
        except _Unfit:
            data_values(self.columns, key, data if whole is None else whole)  # the RowError of the first column in column order
            raise AssertionError("data_values accepted what DataRow refused") from None
        return found


_hash = entity_hash


def copy_line(values: Sequence[str | None]) -> str:
    """One line for ``COPY … FROM STDIN`` with :data:`COPY_OPTIONS`.

    Every value is quoted (quotes doubled), so tabs, newlines, quotes, backslashes and a lone
    ``\\.`` inside values need no escaping; ``None`` is an unquoted empty field (NULL), ``""``
    a quoted empty string. ``copy_fields(a) + "\\t" + copy_fields(b) + "\\n"`` is the line of
    ``a + b`` (both non-empty): the loader joins a row's meta values to data values it computed
    once per distinct entity.
    """
    return copy_fields(values) + "\n"


def copy_fields(values: Sequence[str | None]) -> str:
    """The fields of :func:`copy_line`, without the line end."""
    return "\t".join("" if v is None else '"' + v.replace('"', '""') + '"' for v in values)


def _column_list(cols: Sequence[Column]) -> str:
    return ", ".join(quote_ident(c.name) for c in (*META_COLUMNS, *cols))


def copy_sql(db_schema: str | None, table: str, cols: Sequence[Column]) -> str:
    """``COPY <table> (meta…, cols…) FROM STDIN`` for lines from :func:`copy_line`.

    ``db_schema=None`` for a temporary (staging) table.
    """
    target = quote_ident(table) if db_schema is None else qualified(db_schema, table)
    return f"COPY {target} ({_column_list(cols)}) FROM STDIN {COPY_OPTIONS}"


def staging_table_sql(db_schema: str, table: str, staging: str) -> str:
    """A temporary table shaped like ``table``, dropped at commit: COPY there, then :func:`insert_new_rows_sql`."""
    like = qualified(db_schema, table)
    return f"CREATE TEMPORARY TABLE {quote_ident(staging)} (LIKE {like} INCLUDING DEFAULTS) ON COMMIT DROP"


def insert_new_rows_sql(db_schema: str, table: str, staging: str, cols: Sequence[Column]) -> str:
    """Move staged rows into ``table``, skipping rows already there (same root and entity hash)."""
    names = _column_list(cols)
    conflict = ", ".join(quote_ident(c) for c in DEDUPE_KEY)
    return (
        f"INSERT INTO {qualified(db_schema, table)} ({names}) SELECT {names} FROM {quote_ident(staging)} "
        f"ON CONFLICT ({conflict}) DO NOTHING"
    )
