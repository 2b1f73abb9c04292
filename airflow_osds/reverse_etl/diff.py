"""A sync's state in the warehouse and the changes computed against it, in SQL (no Airflow imports).

State: two tables in ``osds_state``, shared by every sync and keyed by ``sync_id``. The delivered
state is partitioned by sync (one partition each, created before a sync's first run records
anything), so a sync's diff reads its own state only, however many other syncs there are, while
``forget`` and listing still work on one table:

* ``reverse_etl_delivered (sync_id, key, hash, payload, groups, delivered_at)``: per key, what the
  destination last *acknowledged*: its payload (the mapped fields), its groups and their hash. Only
  acknowledged records advance it, so a rejected or unsent record still differs next run and is sent
  again (Hightouch CDC's "including any failed rows from the previous run"). ``groups`` is a column
  beyond the brief's five: a delete must be able to tell the destination which lists the record left.
* ``reverse_etl_rejections (sync_id, key, op, reason, payload, groups, rejected_at, attempts)``: the
  records the destination refused, with its reason and how many runs in a row refused them. A key
  leaves it when a later run delivers it, or when a complete run no longer has it to send (the source
  changed back, or the row is gone in a mode that does not delete): :func:`clear_stale_rejections`.

The mapped source: ``key`` (the key column cast to text), each field's value, and the names of
the groups whose condition holds (sorted by name). ``hash`` is a 64-bit ``hash_record_extended`` of
one row: a constant for the field names, then the fields in name order, then the groups (when the
sync has any). A field whose type's own hash tells two values apart exactly when their text forms
differ, and collides only by chance, is hashed as it is: booleans, smallint, integer, date, uuid,
and text and varchar compared byte for byte under ``COLLATE "C"``. A numeric is hashed with its sign
and scale beside it (its own hash sees neither: 1.5, -1.5 and 1.50 hash alike). Every other field
goes into one nested ``ROW(...)::text``, whose text form is unambiguous (quoted where needed, NULL
distinct from '') and sees what a type's own hash does not: bigint and the timestamps (their hash
folds 64 bits into 32, so 0 and 2³² + 1 hash alike), a float's sign of zero, a case change under a
nondeterministic collation, json (which has no hash at all). Like every text form, a timestamptz's
follows the session's ``TimeZone``. Hashing the common types as they are is cheaper than the text
form of the whole row: on bench/reverse_etl.py's 1M rows (three texts, an integer, a numeric) the hashes
take 0.17 s, 0.22 s with the numeric by its text form, and the diff took 0.86 s with every field by its
text form, 0.68 s without; building a jsonb per row instead is 4× slower. A change goes unnoticed
only if its new hash equals the old one: odds of 2⁻⁶⁴. The ``payload`` (``jsonb_build_object (field,
value, ...)``, with ``group_field`` holding the groups) and ``groups`` (a jsonb array) are built only
for the rows that are sent. Renaming a field, or a field's type moving between the kinds, changes
every hash: the next run resends.

State written before 2026-12-05 holds the hash of the whole row's text form
(``hashtextextended(ROW(...)::text, 0)``). A delivered key whose hash differs is checked against
that one too; when it matches, the record is unchanged and its stored hash is rewritten (state
``rehash``, in the run's transaction), so an upgrade resends nothing and the old hash is computed
again only for rows that changed.

Changes, from one join of the mapped source against the delivered state: *new* (key never
delivered), *changed* (hash differs), *gone* (delivered, no longer in the source), *unchanged*.
What each mode sends:

==========  ================================================================================
``upsert``  new → create, changed → update
``insert``  new → create (changed rows are skipped: counted, not sent)
``update``  new and changed → **update**. We cannot know what exists remotely (Grouparoo's
            ``enrich`` looks it up); a key this sync never delivered is sent as an update and the
            destination decides: a record it does not have comes back as a rejection (stored with
            its reason, retried next run, counted against the thresholds). Sending only keys
            already delivered, as the brief first suggested, would mean an update-only sync never
            sends anything: nothing is ever delivered before its first update.
``mirror``  new → create, changed → update, gone → delete (the delete carries the last
            delivered payload and groups, so the destination can address the record)
==========  ================================================================================

``full_resync`` ignores the hashes but keeps the state: every source row is sent (unchanged ones
as updates), mirror mode still deletes only keys it delivered and that are gone, and the state is
advanced as usual. Clearing the state instead would lose mirror's deletes and turn every delivered
key into a create (duplicates for create-only destinations), and a crashed resync would leave
nothing to diff against. ``insert`` mode never resends (inserts are not idempotent): a full resync
sends there what a normal run sends.

Keys must be unique and non-null: the check runs in SQL before anything is sent and raises
:class:`SourceKeyError` with the counts and examples. Such rows cannot be stored as rejections
(the rejections table is keyed by key) and which of two rows sharing a key is "the record" is
undefined; refusing the run is the only way not to drop or flip-flop them silently.

A run reads the source twice, in one ``REPEATABLE READ`` snapshot: once for the key check (one
hash aggregate), once for the diff, a single full (or left) join of the mapped source against the
delivered state whose differing rows go into a temporary table. The counts come from that table
and the row counts of the source and the state (taken on a second connection in the same snapshot,
if :func:`changes` is given one), and the changes are streamed from it with a server-side cursor
in batches (read about 2,000 rows at a time), so client memory stays flat. Each :func:`record` (the
answers to one or more batches) commits in its own transaction, so a crash mid-sync keeps
everything recorded so far. Every function takes psycopg 3 connections in autocommit mode.
"""

from __future__ import annotations

import hashlib
import json
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import msgspec.json
from psycopg import sql
from psycopg.postgres import types as pg_types

from airflow_osds.exceptions import OsdsError
from airflow_osds.postgres import DDL_LOCK, STATE_SCHEMA, relation_exists, run_ddl
from airflow_osds.reverse_etl.destinations.base import Change
from airflow_osds.reverse_etl.spec import SyncSpec

__all__ = [
    "DELIVERED_TABLE", "REJECTIONS_TABLE", "ChangeStream", "DiffCounts", "Pending", "Preview", "SourceKeyError",
    "changes", "clear_stale_rejections", "ensure_tables", "field_types", "forget", "preview", "record",
    "summary", "vacuum_state",
]

DELIVERED_TABLE = f"{STATE_SCHEMA}.reverse_etl_delivered"
REJECTIONS_TABLE = f"{STATE_SCHEMA}.reverse_etl_rejections"

_DELIVERED_COLUMNS = """
    sync_id text NOT NULL,
    key text NOT NULL,
    hash bigint NOT NULL,
    payload jsonb NOT NULL,
    groups jsonb NOT NULL DEFAULT '[]',
    delivered_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sync_id, key)"""

# One partition per sync (see _partition_name): a diff scans its own sync's state, whatever the others hold.
_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {STATE_SCHEMA};
CREATE TABLE IF NOT EXISTS {DELIVERED_TABLE} ({_DELIVERED_COLUMNS}
) PARTITION BY LIST (sync_id);
CREATE TABLE IF NOT EXISTS {REJECTIONS_TABLE} (
    sync_id text NOT NULL,
    key text NOT NULL,
    op text NOT NULL CHECK (op IN ('create', 'update', 'delete')),
    reason text NOT NULL,
    payload jsonb NOT NULL,
    groups jsonb NOT NULL DEFAULT '[]',
    rejected_at timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 1,
    PRIMARY KEY (sync_id, key)
)
"""


# jsonb_build_object takes at most 100 arguments (PostgreSQL's FUNC_MAX_ARGS): 50 fields per call.
_FIELDS_PER_CALL = 50


class SourceKeyError(OsdsError):
    """The source has rows whose key is NULL or shared by several rows; nothing was sent."""

    def __init__(self, sync_id: str, key: str, *, null_rows: int, duplicated_keys: int,
                 examples: Sequence[tuple[str, int]]) -> None:
        self.sync_id = sync_id
        self.key = key
        self.null_rows = null_rows
        self.duplicated_keys = duplicated_keys
        self.examples = list(examples)  # (key, rows having it)
        problems = []
        if null_rows:
            problems.append(f"{null_rows} row{'s' if null_rows != 1 else ''} with a NULL key")
        if duplicated_keys:
            shown = ", ".join(f"{k!r} ({n} rows)" for k, n in self.examples)
            problems.append(f"{duplicated_keys} key{'s' if duplicated_keys != 1 else ''} shared by several rows "
                            f"(e.g. {shown})")
        super().__init__(
            f"sync {sync_id!r}: the key column {key!r} must be unique and non-null, but the source has "
            f"{' and '.join(problems)}; nothing was sent. Filter or deduplicate the source, or key the sync on "
            "another column."
        )


class Pending(NamedTuple):
    """A change as diffed: what is sent (:attr:`change`) and what :func:`record` stores once acknowledged."""

    change: Change
    hash: int  # of the fields and groups (for a delete: the last delivered one's)
    payload: str  # the fields as jsonb text, stored as is
    groups: str  # the group names as a jsonb array's text


@dataclass(frozen=True)
class DiffCounts:
    """How the source compares with the delivered state, and what the mode makes of it."""

    mode: str
    full_resync: bool
    new: int  # keys never delivered
    changed: int  # delivered, hash differs
    unchanged: int  # delivered, same hash
    gone: int  # delivered, no longer in the source

    @property
    def creates(self) -> int:
        return self.new if self.mode in ("upsert", "insert", "mirror") else 0

    @property
    def updates(self) -> int:
        if self.mode == "insert":
            return 0
        return self.changed + (self.unchanged if self.full_resync else 0) + (self.new if self.mode == "update" else 0)

    @property
    def deletes(self) -> int:
        return self.gone if self.mode == "mirror" else 0

    @property
    def to_send(self) -> int:
        return self.creates + self.updates + self.deletes

    @property
    def skipped_updates(self) -> int:
        """Changed rows an ``insert`` sync does not send."""
        return self.changed if self.mode == "insert" else 0

    @property
    def skipped_deletes(self) -> int:
        """Rows gone from the source that only ``mirror`` deletes."""
        return self.gone if self.mode != "mirror" else 0

    @property
    def not_sent_unchanged(self) -> int:
        return self.unchanged if not self.full_resync or self.mode == "insert" else 0

    def as_dict(self) -> dict[str, int]:
        return {"create": self.creates, "update": self.updates, "delete": self.deletes,
                "unchanged": self.not_sent_unchanged, "skipped": self.skipped_updates + self.skipped_deletes}


@dataclass(frozen=True)
class Preview:
    changes: list[Change]  # the first ``limit`` changes a run would send
    counts: DiffCounts


# Connections that have the tables, and the syncs whose partition they have seen (one DDL per
# connection, as for the Singer state).
_ENSURED: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()

_LEGACY_TABLE = "reverse_etl_delivered_unpartitioned"


def _partition_name(sync_id: str) -> str:
    """The table holding one sync's delivered state: a digest of the id, since ids may be any text and a
    name has at most 63 bytes (``\\d+ osds_state.reverse_etl_delivered`` lists each one with its id)."""
    return "reverse_etl_delivered_" + hashlib.blake2b(sync_id.encode(), digest_size=8).hexdigest()


def _partition(sync_id: str) -> sql.Identifier:
    return sql.Identifier(STATE_SCHEMA, _partition_name(sync_id))


def _attach_partition(conn: Any, sync_id: str) -> None:
    """Inside a transaction holding the DDL lock. Created apart and then attached, which locks the parent
    table against other DDL only (``CREATE TABLE … PARTITION OF`` would wait for every running diff and
    block every sync behind it); an empty table attaches at once."""
    name = _partition(sync_id)
    if relation_exists(conn, name.as_string(conn)):
        return
    conn.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS)").format(name, sql.SQL(DELIVERED_TABLE)))
    conn.execute(sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES IN ({})").format(
        sql.SQL(DELIVERED_TABLE), name, sql.Literal(sync_id)))


def _partition_legacy_table(conn: Any) -> None:
    """Before partitions (airflow-osds ≤ 2026-12-04) every sync shared one plain table: move its rows into
    one partition per sync, in the transaction that creates them, so a diff never sees half of it."""
    conn.execute(f"ALTER TABLE {DELIVERED_TABLE} RENAME TO {_LEGACY_TABLE}")
    conn.execute(f"ALTER TABLE {STATE_SCHEMA}.{_LEGACY_TABLE} RENAME CONSTRAINT reverse_etl_delivered_pkey "
                 f"TO {_LEGACY_TABLE}_pkey")
    conn.execute(f"CREATE TABLE {DELIVERED_TABLE} ({_DELIVERED_COLUMNS}) PARTITION BY LIST (sync_id)")
    for (sync_id,) in conn.execute(f"SELECT DISTINCT sync_id FROM {STATE_SCHEMA}.{_LEGACY_TABLE}").fetchall():
        _attach_partition(conn, sync_id)
    columns = "sync_id, key, hash, payload, groups, delivered_at"
    conn.execute(f"INSERT INTO {DELIVERED_TABLE} ({columns}) SELECT {columns} FROM {STATE_SCHEMA}.{_LEGACY_TABLE}")
    conn.execute(f"DROP TABLE {STATE_SCHEMA}.{_LEGACY_TABLE}")


def ensure_tables(conn: Any, sync_id: str | None = None) -> None:
    """The state tables, and ``sync_id``'s partition when given (before anything is recorded for it)."""
    syncs = _ENSURED.get(conn)
    if syncs is not None and (sync_id is None or sync_id in syncs):
        return
    with conn.transaction():
        conn.execute(DDL_LOCK)
        if syncs is None:
            kind = conn.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)",
                                (DELIVERED_TABLE,)).fetchone()
            if kind is not None and kind[0] == "r":
                _partition_legacy_table(conn)
            run_ddl(conn, _DDL)
        if sync_id is not None:
            _attach_partition(conn, sync_id)
    syncs = _ENSURED.setdefault(conn, set())
    if sync_id is not None:
        syncs.add(sync_id)


def _state_exists(conn: Any, sync_id: str) -> bool:
    """Whether the state tables and ``sync_id``'s partition exist (a dry run creates none of them)."""
    if sync_id in _ENSURED.get(conn, ()):
        return True
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL AND to_regclass(%s) IS NOT NULL",
                       (_partition(sync_id).as_string(conn), REJECTIONS_TABLE)).fetchone()
    return bool(row[0])


# --- SQL building -----------------------------------------------------------------------------------

#: Enough memory for the diff's hash join and the key check to stay off disk up to a few million
#: rows (per operation, for this transaction only).
_WORK_MEM = "256MB"

#: The planner's cost of passing one row from a parallel worker (PostgreSQL's default: 0.1). It cannot know
#: how many hashes differ, so it expects the diff to return every source row, and at the default cost
#: gathering a million rows from workers looks dearer than the join: it plans the join on one core. The
#: diff returns the changed rows only, and split over the workers it runs 1.7× faster on 2 cores (1M rows:
#: 1.64 → 0.92 s, bench/reverse_etl.py). A server without parallel workers plans as before.
_PARALLEL_TUPLE_COST = "0.01"


def _user_sql(text: str) -> sql.Composable:
    """The user's SQL, parenthesized; the newline keeps a trailing ``--`` comment from eating the ``)``."""
    return sql.SQL("(") + sql.SQL(text) + sql.SQL("\n)")


def _source_relation(spec: SyncSpec) -> sql.Composable:
    if spec.source.table is not None:
        return sql.Identifier(*spec.source.table_parts)
    return _user_sql(spec.source.sql_text())


def _field_expr(f: Any) -> sql.Composable:
    if f.kind == "column":
        return sql.SQL("src.{}").format(sql.Identifier(f.column))
    if f.kind == "sql":
        return _user_sql(f.sql)
    return sql.SQL("{}::jsonb").format(sql.Literal(json.dumps(f.value, allow_nan=False)))


def _groups_expr(spec: SyncSpec) -> sql.Composable:
    if not spec.groups:
        return sql.SQL("'{}'::text[]")
    cases = sql.SQL(", ").join(
        sql.SQL("CASE WHEN {} THEN {} END").format(_user_sql(spec.groups[name]), sql.Literal(name))
        for name in sorted(spec.groups)
    )
    return sql.SQL("array_remove(ARRAY[{}]::text[], NULL)").format(cases)


def _columns(spec: SyncSpec) -> list[sql.Identifier]:
    """The mapped source's value columns: ``f0``, ``f1``… (field names can be anything; these are safe)."""
    return [sql.Identifier(f"f{i}") for i in range(len(spec.fields))]


#: Types whose own hash tells two values apart exactly when their text forms differ (their equality is
#: identity, and their 64-bit hash collides only by chance): hashed as they are. Not bigint or the
#: timestamps: their hash folds the 64 bits to 32 first (0 and 2³² + 1 hash alike). Text and varchar
#: are compared byte for byte (``COLLATE "C"``).
_HASHED_AS_IS = frozenset(pg_types[name].oid for name in ("bool", "int2", "int4", "date", "uuid"))
_HASHED_AS_BYTES = frozenset(pg_types[name].oid for name in ("text", "varchar"))
#: A numeric's own hash sees its digits and weight only: not its sign (1.5 and -1.5 hash alike), its scale
#: (1.0 = 1.00) or which special value it is (NaN and ±Infinity hash alike). Its text form has nothing else:
#: hashed with those beside it.
_HASHED_WITH_SIGN_AND_SCALE = frozenset({pg_types["numeric"].oid})
_HASHED_NATIVELY = _HASHED_AS_IS | _HASHED_AS_BYTES | _HASHED_WITH_SIGN_AND_SCALE


def _field_values(spec: SyncSpec) -> sql.Composable:
    """``f0…fn, g`` of one source row ``src``: the fields' values and the groups it belongs to."""
    values = [sql.SQL("{} AS {}").format(_field_expr(f), col) for f, col in zip(spec.fields.values(), _columns(spec))]
    return sql.SQL("").join(v + sql.SQL(", ") for v in values) + _groups_expr(spec) + sql.SQL(" AS g")


def field_types(conn: Any, spec: SyncSpec) -> tuple[int, ...]:
    """The type OIDs of the mapped fields, in the mapping's order (the query is planned, not run)."""
    if not spec.fields:
        return ()
    cursor = conn.execute(sql.SQL("SELECT {} FROM {} AS src LIMIT 0").format(
        _field_values(spec), _source_relation(spec)))
    return tuple(column.type_code for column in cursor.description[:-1])


def _by_name(spec: SyncSpec, types: Sequence[int]) -> list[tuple[str, sql.Identifier, int]]:
    # In field-name order: the same mapping written in another order is the same record.
    return sorted(zip(spec.fields, _columns(spec), types), key=lambda field: field[0])


def _record_hash(spec: SyncSpec, types: Sequence[int]) -> sql.Composable:
    """The hash of a mapped row ``m`` (see the module docstring)."""
    as_is: list[sql.Composable] = []
    as_text: list[sql.Composable] = []
    layout = []
    for name, col, oid in _by_name(spec, types):
        ref = sql.SQL("m.{}").format(col)
        if oid in _HASHED_AS_BYTES:
            as_is.append(ref + sql.SQL(' COLLATE "C"'))
        elif oid in _HASHED_AS_IS:
            as_is.append(ref)
        elif oid in _HASHED_WITH_SIGN_AND_SCALE:
            # The special values have no scale: told apart by the negative numbers in its place.
            as_is += [ref, sql.SQL("{0} < 0").format(ref), sql.SQL(
                "coalesce(scale({0}), CASE {0} WHEN 'NaN' THEN -1 WHEN 'Infinity' THEN -2 WHEN '-Infinity' THEN -3 END)"
            ).format(ref)]
        else:
            as_text.append(ref)
        layout.append([name, "value" if oid in _HASHED_NATIVELY else "text"])
    # The names as a constant of the row rather than the seed: hash_record_extended hashes a NULL as 0
    # whatever the seed, so a row of NULLs would not change when its fields are renamed.
    names = hashlib.blake2b(json.dumps([layout, spec.group_field]).encode(), digest_size=8).digest()
    parts = [sql.SQL("{}::bigint").format(sql.Literal(int.from_bytes(names, "big", signed=True))), *as_is]
    if as_text:
        parts.append(sql.SQL("ROW({})::text").format(sql.SQL(", ").join(as_text)))
    if spec.groups:  # without groups every row's are the same empty array
        parts.append(sql.SQL('m.g COLLATE "C"'))
    return sql.SQL("hash_record_extended(ROW({}), 0)").format(sql.SQL(", ").join(parts))


def _legacy_hash(spec: SyncSpec) -> sql.Composable:
    """The hash state written before 2026-12-05 holds: the whole mapped row's text form."""
    by_name = sorted(zip(spec.fields, _columns(spec)), key=lambda pair: pair[0])
    names = json.dumps([[name for name, _ in by_name], spec.group_field], separators=(",", ":"))
    row = sql.SQL(", ").join([sql.Literal(names), *(sql.SQL("m.{}").format(c) for _, c in by_name), sql.SQL("m.g")])
    return sql.SQL("hashtextextended(ROW({})::text, 0)").format(row)


def _mapped_source(spec: SyncSpec, types: Sequence[int]) -> sql.Composable:
    """``key, f0…fn, g, hash, legacy_hash`` per source row (no jsonb: see the module docstring). The
    legacy hash is computed only where a query uses it: for rows whose hash differs from the delivered one."""
    return sql.SQL(
        "SELECT m.*, {hash} AS hash, {legacy} AS legacy_hash FROM ("
        "SELECT ({key})::text AS key, {values} FROM {source} AS src) AS m"
    ).format(hash=_record_hash(spec, types), legacy=_legacy_hash(spec),
             key=sql.SQL("src.{}").format(sql.Identifier(spec.key)), values=_field_values(spec),
             source=_source_relation(spec))


def _payload_expr(spec: SyncSpec) -> sql.Composable:
    """The jsonb payload of a mapped row ``s`` (built for rows that are sent only)."""
    pairs = [(name, sql.SQL("s.{}").format(col)) for name, col in zip(spec.fields, _columns(spec))]
    if spec.group_field is not None:
        pairs.append((spec.group_field, sql.SQL("to_jsonb(s.g)")))
    if not pairs:
        return sql.SQL("'{}'::jsonb")
    calls = []
    for i in range(0, len(pairs), _FIELDS_PER_CALL):
        args = sql.SQL(", ").join(sql.SQL("{}, {}").format(sql.Literal(name), expr)
                                  for name, expr in pairs[i:i + _FIELDS_PER_CALL])
        calls.append(sql.SQL("jsonb_build_object({})").format(args))
    return sql.SQL(" || ").join(calls)


def _delivered(spec: SyncSpec, exists: bool) -> sql.Composable:
    if not exists:  # a dry run before the first sync: no state yet, and a preview creates nothing
        return sql.SQL("(SELECT NULL::text AS key, NULL::bigint AS hash, NULL::jsonb AS payload, "
                       "NULL::jsonb AS groups WHERE false)")
    # The sync's partition itself: scanning it through the parent would test sync_id on every row.
    return sql.SQL("(SELECT key, hash, payload, groups FROM {})").format(_partition(spec.sync_id))


def _key_check_sql(spec: SyncSpec) -> sql.Composable:
    """NULL-key rows and keys shared by several rows, in one hash aggregate over the source."""
    return sql.SQL(
        "SELECT coalesce(sum(n) FILTER (WHERE k IS NULL), 0), count(*) FILTER (WHERE k IS NOT NULL AND n > 1)"
        " FROM (SELECT ({key})::text AS k, count(*) AS n FROM {source} AS src GROUP BY 1) AS g"
    ).format(key=sql.SQL("src.{}").format(sql.Identifier(spec.key)), source=_source_relation(spec))


def _duplicates_sql(spec: SyncSpec) -> sql.Composable:
    return sql.SQL(
        "SELECT k, n FROM (SELECT ({key})::text AS k, count(*) AS n FROM {source} AS src"
        " GROUP BY 1 HAVING count(*) > 1) AS d WHERE k IS NOT NULL ORDER BY n DESC, k LIMIT 5"
    ).format(key=sql.SQL("src.{}").format(sql.Identifier(spec.key)), source=_source_relation(spec))


def _full_join(spec: SyncSpec) -> bool:
    """Whether the diff needs the delivered keys gone from the source as rows: mirror deletes them, and
    a query source has no cheap row count to derive their number from. Otherwise a left join (20%
    faster on 1M rows) and two counts do."""
    return spec.mode == "mirror" or spec.source.table is None


def _diff_sql(spec: SyncSpec, types: Sequence[int], *, full_resync: bool, exists: bool,
              with_payload: bool = True) -> sql.Composable:
    """One row per key that differs from what was delivered: ``key, state, payload, groups, hash`` where
    state is ``new``, ``changed``, ``gone`` or ``rehash`` (unchanged, its stored hash the legacy one), and
    ``unchanged`` too with ``full_resync``, which sends those and records them with the current hash. A gone
    row carries the payload last delivered; one whose mode does not delete carries none, nor does a rehash.
    ``types``: :func:`field_types`."""
    mirror = spec.mode == "mirror"
    legacy = sql.SQL("s.legacy_hash = d.hash")
    rehash = sql.SQL("false") if full_resync else legacy
    if with_payload:
        payload = sql.SQL(
            "CASE WHEN s.key IS NULL THEN CASE WHEN {mirror} THEN d.payload::text END"
            " WHEN d.key IS NULL OR s.hash = d.hash OR NOT {rehash} THEN ({p})::text END AS payload,"
            " CASE WHEN s.key IS NULL THEN CASE WHEN {mirror} THEN d.groups::text END"
            " WHEN d.key IS NULL OR s.hash = d.hash OR NOT {rehash} THEN to_jsonb(s.g)::text END AS groups,"
        ).format(p=_payload_expr(spec), mirror=sql.Literal(mirror), rehash=rehash)
    else:
        payload = sql.SQL("NULL::text AS payload, NULL::text AS groups,")
    differs = sql.SQL("" if full_resync else " WHERE s.key IS NULL OR d.key IS NULL OR s.hash <> d.hash")
    return sql.SQL(
        "SELECT coalesce(s.key, d.key) AS key,"
        " CASE WHEN s.key IS NULL THEN 'gone' WHEN d.key IS NULL THEN 'new' WHEN s.hash = d.hash THEN 'unchanged'"
        " WHEN {legacy} THEN {legacy_state} ELSE 'changed' END AS state,"
        " {payload} coalesce(s.hash, d.hash) AS hash"
        " FROM ({mapped}) AS s {join} {delivered} AS d ON d.key = s.key{differs}"
    ).format(legacy=legacy, legacy_state=sql.Literal("unchanged" if full_resync else "rehash"), payload=payload,
             mapped=_mapped_source(spec, types), join=sql.SQL("FULL JOIN" if _full_join(spec) else "LEFT JOIN"),
             delivered=_delivered(spec, exists), differs=differs)


def _sent_states(spec: SyncSpec, full_resync: bool) -> list[str]:
    states = ["new"] if spec.mode == "insert" else ["new", "changed"]
    if full_resync and spec.mode != "insert":
        states.append("unchanged")
    if spec.mode == "mirror":
        states.append("gone")
    return states


def _op_sql(spec: SyncSpec) -> sql.Composable:
    create_op = "update" if spec.mode == "update" else "create"
    return sql.SQL("CASE state WHEN 'gone' THEN 'delete' WHEN 'new' THEN {} ELSE 'update' END").format(
        sql.Literal(create_op))


_decode_json = msgspec.json.Decoder().decode
_encode_json = msgspec.json.encode


def _loads(text: str) -> Any:
    """JSON text from jsonb: msgspec's decoder (8× the stdlib's on these rows; a first sync decodes millions),
    the stdlib for what it refuses (a number beyond a double's range, which jsonb's numeric can hold)."""
    try:
        return _decode_json(text)
    except msgspec.MsgspecError:
        return json.loads(text)


def _pending(row: tuple[Any, ...]) -> Pending:
    key, op, payload, groups, hash_ = row
    return Pending(Change(key=key, op=op, fields=_loads(payload), groups=tuple(_loads(groups))), hash_, payload, groups)


# --- reading ------------------------------------------------------------------------------------------


def _require_autocommit(conn: Any) -> None:
    if not conn.autocommit:
        raise ValueError("reverse-ETL state functions need a psycopg connection in autocommit mode "
                         "(they open their own transactions)")


_UNIQUE_NOT_NULL = """
SELECT EXISTS (
    SELECT 1 FROM pg_index AS i JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
    WHERE i.indrelid = to_regclass(%s) AND i.indisunique AND i.indnkeyatts = 1 AND i.indpred IS NULL
      AND i.indimmediate AND a.attname = %s AND a.attnotnull
)"""


def _check_keys(conn: Any, spec: SyncSpec) -> None:
    if spec.source.table is not None and conn.execute(_UNIQUE_NOT_NULL, (
            sql.Identifier(*spec.source.table_parts).as_string(conn), spec.key)).fetchone()[0]:
        return  # the table's own unique, non-null key: PostgreSQL already guarantees what the check would
    null_rows, duplicated = conn.execute(_key_check_sql(spec)).fetchone()
    if null_rows or duplicated:
        examples = conn.execute(_duplicates_sql(spec)).fetchall() if duplicated else []
        raise SourceKeyError(spec.sync_id, spec.key, null_rows=int(null_rows), duplicated_keys=int(duplicated),
                             examples=[(k, n) for k, n in examples])


def _counts(conn: Any, spec: SyncSpec, by_state: dict[str, int], *, full_resync: bool, exists: bool) -> DiffCounts:
    """The counts from the differing rows' states. Without ``full_resync`` the unchanged ones are not
    among them: every delivered key is unchanged, changed or gone. Without a full join (see
    :func:`_full_join`) the gone ones are not either: every source row is new, changed or unchanged."""
    new, changed = by_state.get("new", 0), by_state.get("changed", 0)
    delivered = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(_partition(spec.sync_id))).fetchone()[0] \
        if exists else 0
    if _full_join(spec):
        gone = by_state.get("gone", 0)
        unchanged = by_state["unchanged"] if full_resync else delivered - changed - gone
    else:
        if full_resync:
            unchanged = by_state.get("unchanged", 0)
        else:
            source_rows = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(_source_relation(spec))).fetchone()[0]
            unchanged = source_rows - new - changed
        gone = delivered - changed - unchanged
    return DiffCounts(spec.mode, full_resync, new, changed, unchanged, gone)


def _in_snapshot(conn: Any, *, read_only: bool = False) -> None:
    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ" + (" READ ONLY" if read_only else ""))
    conn.execute(sql.SQL("SET LOCAL work_mem = {}").format(sql.Literal(_WORK_MEM)))
    conn.execute(sql.SQL("SET LOCAL parallel_tuple_cost = {}").format(sql.Literal(_PARALLEL_TUPLE_COST)))


def _checked_counts(conn: Any, spec: SyncSpec, types: Sequence[int], *, full_resync: bool,
                    exists: bool) -> DiffCounts:
    """Inside a snapshot: the key check, then the counts (one pass, no payload built)."""
    _check_keys(conn, spec)
    query = sql.SQL("SELECT state, count(*) FROM ({}) AS x GROUP BY 1").format(
        _diff_sql(spec, types, full_resync=full_resync, exists=exists, with_payload=False))
    return _counts(conn, spec, dict(conn.execute(query).fetchall()), full_resync=full_resync, exists=exists)


def summary(conn: Any, spec: SyncSpec, *, full_resync: bool = False) -> DiffCounts:
    """The counts alone.

    :raises SourceKeyError: NULL or duplicated keys.
    """
    _require_autocommit(conn)
    exists = _state_exists(conn, spec.sync_id)
    with conn.transaction():
        _in_snapshot(conn, read_only=True)
        return _checked_counts(conn, spec, field_types(conn, spec), full_resync=full_resync, exists=exists)


#: About how many changes are read from the server at a time (in whole batches, at least one).
_FETCH_ROWS = 2000


class ChangeStream:
    """The changes of one run, read from the server in batches (see :func:`changes`)."""

    def __init__(self, cursor: Any, counts: DiffCounts | Callable[[], DiffCounts], sending: dict[str, int],
                 started_at: datetime, batch_size: int, rehashed: int = 0) -> None:
        self._cursor = cursor
        self._counts = counts
        #: How many changes the stream holds, by operation (``create``, ``update``, ``delete``).
        self.sending = sending
        #: Unchanged records whose stored hash was the one from before 2026-12-05, rewritten in the run's snapshot.
        self.rehashed = rehashed
        #: The snapshot's time: rejections older than it that the run did not renew are stale.
        self.started_at = started_at
        self.batch_size = batch_size

    @property
    def counts(self) -> DiffCounts:
        """The run's counts; with ``count_conn`` (see :func:`changes`) counted on it the first time they are read."""
        if not isinstance(self._counts, DiffCounts):
            self._counts = self._counts()
        return self._counts

    @property
    def counted(self) -> bool:
        return isinstance(self._counts, DiffCounts)

    def __iter__(self) -> Iterator[list[Pending]]:
        # Whole batches, about _FETCH_ROWS rows per FETCH: a round trip per batch of 100 was a third of a
        # first sync's time in the main thread.
        fetch = self.batch_size * max(1, _FETCH_ROWS // self.batch_size)
        while rows := self._cursor.fetchmany(fetch):
            for start in range(0, len(rows), self.batch_size):
                yield [_pending(row) for row in rows[start:start + self.batch_size]]


def _sending(spec: SyncSpec, by_state: dict[str, int], full_resync: bool) -> dict[str, int]:
    """What the stream holds by operation, from the differing rows' states alone: the unchanged and gone
    ones are among them exactly where they are sent (a full resync, a mirror), so the counts' own rules apply."""
    sent = DiffCounts(spec.mode, full_resync, by_state.get("new", 0), by_state.get("changed", 0),
                      by_state.get("unchanged", 0), by_state.get("gone", 0))
    return {"create": sent.creates, "update": sent.updates, "delete": sent.deletes}


def _counted_later(conn: Any, count_conn: Any, spec: SyncSpec, by_state: dict[str, int], *,
                   full_resync: bool) -> Callable[[], DiffCounts]:
    """The counts of this snapshot, taken on ``count_conn`` whenever they are asked for. The snapshot is
    imported there now: it can be only while the transaction that exports it is open."""
    _require_autocommit(count_conn)
    snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
    count_conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    try:
        count_conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
    except BaseException:
        count_conn.execute("ROLLBACK")
        raise

    def count() -> DiffCounts:
        try:
            return _counts(count_conn, spec, by_state, full_resync=full_resync, exists=True)
        finally:
            count_conn.execute("ROLLBACK")  # read only: nothing to keep

    return count


@contextmanager
def changes(conn: Any, spec: SyncSpec, *, batch_size: int, full_resync: bool = False,
            count_conn: Any | None = None) -> Iterator[ChangeStream]:
    """The changes to send, counted and then streamed in batches of ``batch_size``.

    :param count_conn: a second connection to the same database, idle: the counts of unchanged and gone rows
        (a count of the source and of the sync's state, ~0.1 s on 1M rows) are taken there, in the run's
        snapshot, when ``stream.counts`` is first read, e.g. by another thread while the changes are being
        sent. The stream's counts must be read before ``count_conn`` is used for anything else.
        ``None``: counted on ``conn`` before the first change is produced.
    :raises SourceKeyError: NULL or duplicated keys (before any change is produced).
    """
    _require_autocommit(conn)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    ensure_tables(conn, spec.sync_id)
    name = f"osds_retl_{uuid.uuid4().hex[:16]}"
    table = sql.Identifier(name)
    cursor = conn.cursor(name, withhold=True)
    cursor.itersize = max(batch_size, _FETCH_ROWS)
    stream: ChangeStream | None = None
    imported = False
    try:
        with conn.transaction():
            _in_snapshot(conn)
            started_at = conn.execute("SELECT now()").fetchone()[0]
            _check_keys(conn, spec)
            conn.execute(sql.SQL("CREATE TEMPORARY TABLE {} AS {}").format(
                table, _diff_sql(spec, field_types(conn, spec), full_resync=full_resync, exists=True)))
            by_state = dict(conn.execute(sql.SQL("SELECT state, count(*) FROM {} GROUP BY 1").format(table)).fetchall())
            rehashed = by_state.pop("rehash", 0)
            if rehashed:
                conn.execute(sql.SQL("UPDATE {} AS d SET hash = t.hash FROM {} AS t WHERE t.state = 'rehash' "
                                     "AND d.key = t.key").format(_partition(spec.sync_id), table))
            counts: DiffCounts | Callable[[], DiffCounts]
            if count_conn is None:
                counts = _counts(conn, spec, by_state, full_resync=full_resync, exists=True)
            else:
                counts = _counted_later(conn, count_conn, spec, by_state, full_resync=full_resync)
                imported = True
            cursor.execute(sql.SQL("SELECT key, {op}, payload, groups, hash FROM {table} WHERE state = ANY({states})")
                           .format(op=_op_sql(spec), table=table, states=sql.Literal(_sent_states(spec, full_resync))))
        stream = ChangeStream(cursor, counts, _sending(spec, by_state, full_resync), started_at, batch_size, rehashed)
        yield stream
    finally:
        try:
            cursor.close()
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        except Exception:  # noqa: BLE001 - a broken connection takes its cursor and table with it; keep the first error
            pass
        if imported and not (stream is not None and stream.counted):
            try:
                count_conn.execute("ROLLBACK")  # the counts were not taken: the imported snapshot's transaction ends
            except Exception:  # noqa: BLE001 - as above: a broken connection has no transaction left to end
                pass


def preview(conn: Any, spec: SyncSpec, limit: int = 20, *, full_resync: bool = False) -> Preview:
    """A dry run: the counts and the first ``limit`` changes a run would send. Nothing is sent or
    recorded, and no table is created (before the first sync everything is new).

    :raises SourceKeyError: NULL or duplicated keys.
    """
    _require_autocommit(conn)
    exists = _state_exists(conn, spec.sync_id)
    with conn.transaction():
        _in_snapshot(conn, read_only=True)
        types = field_types(conn, spec)
        counts = _checked_counts(conn, spec, types, full_resync=full_resync, exists=exists)
        diffed = _diff_sql(spec, types, full_resync=full_resync, exists=exists)
        query = sql.SQL("SELECT key, {op}, payload, groups, hash FROM ({diffed}) AS x WHERE state = ANY({states})"
                        " ORDER BY key LIMIT {limit}").format(
            op=_op_sql(spec), diffed=diffed, states=sql.Literal(_sent_states(spec, full_resync)),
            limit=sql.Literal(max(0, int(limit))))
        rows = conn.execute(query).fetchall()
    return Preview([_pending(row).change for row in rows], counts)


# --- writing ------------------------------------------------------------------------------------------

# A batch's rows travel as one JSON array parameter of [key, hash, payload, groups(, op, reason)] arrays:
# adapting four Python lists of a hundred strings each costs psycopg ~5 ms per batch, one string ~0.1 ms.
_UPSERT_DELIVERED = f"""
INSERT INTO {DELIVERED_TABLE} AS t (sync_id, key, hash, payload, groups, delivered_at)
SELECT %s, u->>0, (u->>1)::bigint, u->2, u->3, now() FROM jsonb_array_elements(%s::jsonb) AS u
ON CONFLICT (sync_id, key) DO UPDATE SET hash = EXCLUDED.hash, payload = EXCLUDED.payload,
    groups = EXCLUDED.groups, delivered_at = EXCLUDED.delivered_at
"""

_UPSERT_REJECTIONS = f"""
INSERT INTO {REJECTIONS_TABLE} AS t (sync_id, key, op, reason, payload, groups, rejected_at, attempts)
SELECT %s, u->>0, u->>4, u->>5, u->2, u->3, now(), 1 FROM jsonb_array_elements(%s::jsonb) AS u
ON CONFLICT (sync_id, key) DO UPDATE SET op = EXCLUDED.op, reason = EXCLUDED.reason, payload = EXCLUDED.payload,
    groups = EXCLUDED.groups, rejected_at = EXCLUDED.rejected_at, attempts = t.attempts + 1
"""


def _rows_json(pending: Sequence[Pending], reasons: Sequence[str] | None = None) -> str:
    """``pending`` as the JSON array the statements above read (payload and groups are JSON text already)."""
    text = _encode_json
    if reasons is None:
        return "[" + ",".join(f"[{text(p.change.key).decode()},{int(p.hash)},{p.payload},{p.groups}]"
                              for p in pending) + "]"
    return "[" + ",".join(f"[{text(p.change.key).decode()},{int(p.hash)},{p.payload},{p.groups},"
                          f"{text(p.change.op).decode()},{text(reason).decode()}]"
                          for p, reason in zip(pending, reasons)) + "]"


def record(conn: Any, sync_id: str, acknowledged: Sequence[Pending],
           rejected: Sequence[tuple[Pending, str]], *, insert_only: bool = True) -> None:
    """Store one batch's outcome in one transaction.

    Acknowledged creates and updates advance the delivered state to their hash and payload,
    acknowledged deletes remove it, and every acknowledged key leaves the rejections. A rejected
    ``(pending, reason)`` is stored (``attempts`` + 1 when it was already there) and the delivered
    state is left alone, so the record still differs next run and is sent again. ``insert_only=False``
    (the sync's mode is not ``insert``) lets the commit skip waiting for the disk.
    """
    _require_autocommit(conn)
    ensure_tables(conn, sync_id)
    upserts = [p for p in acknowledged if p.change.op != "delete"]
    deletes = [p.change.key for p in acknowledged if p.change.op == "delete"]
    with conn.pipeline(), conn.transaction():
        if not insert_only:
            # Not waiting for the WAL flush (~3 ms a batch here): a worker that dies loses nothing, since the
            # server flushes within wal_writer_delay; only a crash of PostgreSQL itself can lose the last
            # fraction of a second of acknowledgements, and those records are sent again next run, which
            # upserts, updates and deletes take without harm. Inserts are not idempotent: they wait.
            conn.execute("SET LOCAL synchronous_commit = off")
        if upserts:
            conn.execute(_UPSERT_DELIVERED, (sync_id, _rows_json(upserts)))
        if deletes:
            conn.execute(f"DELETE FROM {DELIVERED_TABLE} WHERE sync_id = %s AND key = ANY(%s::text[])",
                         (sync_id, deletes))
        if acknowledged:
            conn.execute(f"DELETE FROM {REJECTIONS_TABLE} WHERE sync_id = %s AND key IN "
                         "(SELECT jsonb_array_elements_text(%s::jsonb))",
                         (sync_id, json.dumps([p.change.key for p in acknowledged])))
        if rejected:
            conn.execute(_UPSERT_REJECTIONS, (sync_id, _rows_json([p for p, _ in rejected], [r for _, r in rejected])))


def clear_stale_rejections(conn: Any, sync_id: str, before: datetime) -> int:
    """After a complete run that started at ``before``: drop the rejections it neither renewed nor
    cleared (it had nothing to send for them any more). Returns how many."""
    ensure_tables(conn)
    return conn.execute(f"DELETE FROM {REJECTIONS_TABLE} WHERE sync_id = %s AND rejected_at < %s",
                        (sync_id, before)).rowcount


def vacuum_state(conn: Any, sync_id: str, *, delivered_before: int, written: int) -> bool:
    """After a run: ``VACUUM (ANALYZE)`` the sync's partition when it has never been analyzed or the run wrote
    at least a tenth of it (and 1,000 rows), as autovacuum would but without waiting for it. Without
    statistics the next diff is planned as a merge join of two sorts, 2.9× slower than the hash join on
    1M rows; and a scan of pages not yet marked all-visible checks every row's visibility: after a first
    sync of 1M rows the next diffs took 1.55 s, against 1.38 s once vacuumed (0.4 s, once). Returns whether
    it ran."""
    _require_autocommit(conn)
    row = conn.execute("SELECT reltuples FROM pg_class WHERE oid = to_regclass(%s)",
                       (_partition(sync_id).as_string(conn),)).fetchone()
    if row is None or (row[0] >= 0 and written < max(1000, delivered_before // 10)):
        return False
    conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(_partition(sync_id)))
    return True


def forget(conn: Any, sync_id: str) -> tuple[int, int]:
    """Drop a sync's state: the next run sends everything as new. Returns (delivered, rejections) rows removed."""
    _require_autocommit(conn)
    ensure_tables(conn)
    partition = _partition(sync_id)
    with conn.transaction():
        delivered = 0
        if relation_exists(conn, partition.as_string(conn)):
            # Emptied, not deleted row by row: a forgotten sync of a million rows leaves no dead rows behind.
            delivered = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(partition)).fetchone()[0]
            conn.execute(sql.SQL("TRUNCATE {}").format(partition))
        rejections = conn.execute(f"DELETE FROM {REJECTIONS_TABLE} WHERE sync_id = %s", (sync_id,)).rowcount
    return delivered, rejections
