"""A sync's state in the warehouse and the changes computed against it, in SQL (no Airflow imports).

State: two tables in ``osds_state``, shared by every sync and keyed by ``sync_id`` (the issue asks
for "a state table per sync": one table keyed by sync id holds the same rows, needs one DDL instead
of one per sync, and lets ``forget`` / listing work without building table names):

* ``reverse_etl_delivered (sync_id, key, hash, payload, groups, delivered_at)``: per key, what the
  destination last *acknowledged*: its payload (the mapped fields), its groups and their hash. Only
  acknowledged records advance it, so a rejected or unsent record still differs next run and is sent
  again (Hightouch CDC's "including any failed rows from the previous run"). ``groups`` is a column
  beyond the brief's five: a delete must be able to tell the destination which lists the record left.
* ``reverse_etl_rejections (sync_id, key, op, reason, payload, groups, rejected_at, attempts)``: the
  records the destination refused, with its reason and how many runs in a row refused them. A key
  leaves it when a later run delivers it, or when a complete run no longer has it to send (the source
  changed back, or the row is gone in a mode that does not delete): :func:`clear_stale_rejections`.

The mapped source: ``key`` (the key column cast to text), ``payload`` =
``jsonb_build_object(field, expr, ...)`` (with ``group_field``: plus that field holding the groups),
``groups`` = the jsonb array of the group names whose condition holds (sorted by name), and
``hash = md5(jsonb_build_array(payload, groups)::text)``: jsonb's text is canonical (keys
deduplicated and ordered), so equal records hash equal whatever the mapping's order.

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

The changes are streamed from a ``WITH HOLD`` server-side cursor declared, together with the
counts, in one ``REPEATABLE READ`` transaction: counts and stream see the same snapshot, the
server materializes the result when that transaction commits (client memory stays one batch), and
each batch's :func:`record` then commits in its own transaction on the same connection, so a crash
mid-sync keeps every batch recorded so far. Every function takes a psycopg 3 connection in
autocommit mode.
"""

from __future__ import annotations

import json
import uuid
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from psycopg import sql

from airflow_osds.exceptions import OsdsError
from airflow_osds.postgres import STATE_SCHEMA, create_once
from airflow_osds.reverse_etl.destinations.base import Change
from airflow_osds.reverse_etl.spec import SyncSpec

__all__ = [
    "DELIVERED_TABLE", "REJECTIONS_TABLE", "ChangeStream", "DiffCounts", "Pending", "Preview", "SourceKeyError",
    "changes", "clear_stale_rejections", "ensure_tables", "forget", "preview", "record", "summary",
]

DELIVERED_TABLE = f"{STATE_SCHEMA}.reverse_etl_delivered"
REJECTIONS_TABLE = f"{STATE_SCHEMA}.reverse_etl_rejections"

_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {STATE_SCHEMA};
CREATE TABLE IF NOT EXISTS {DELIVERED_TABLE} (
    sync_id text NOT NULL,
    key text NOT NULL,
    hash text NOT NULL,
    payload jsonb NOT NULL,
    groups jsonb NOT NULL DEFAULT '[]',
    delivered_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sync_id, key)
);
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
    hash: str  # md5 of the payload and groups (for a delete: the last delivered one's)
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


# Connections that have the tables (one DDL per connection, as for the Singer state).
_ENSURED: weakref.WeakSet[Any] = weakref.WeakSet()


def ensure_tables(conn: Any) -> None:
    if conn not in _ENSURED:
        create_once(conn, DELIVERED_TABLE, _DDL)
        _ENSURED.add(conn)


def _tables_exist(conn: Any) -> bool:
    if conn in _ENSURED:
        return True
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL AND to_regclass(%s) IS NOT NULL",
                       (DELIVERED_TABLE, REJECTIONS_TABLE)).fetchone()
    return bool(row[0])


# --- SQL building -----------------------------------------------------------------------------------


def _user_sql(text: str) -> sql.Composable:
    """The user's SQL, parenthesized; the newline keeps a trailing ``--`` comment from eating the ``)``."""
    return sql.SQL("(") + sql.SQL(text) + sql.SQL("\n)")


def _source_relation(spec: SyncSpec) -> sql.Composable:
    if spec.source.table is not None:
        return sql.Identifier(*spec.source.table_parts)
    return _user_sql(spec.source.sql_text())


def _json_object(pairs: Sequence[tuple[str, sql.Composable]]) -> sql.Composable:
    if not pairs:
        return sql.SQL("'{}'::jsonb")
    calls = []
    for i in range(0, len(pairs), _FIELDS_PER_CALL):
        args = sql.SQL(", ").join(sql.SQL("{}, {}").format(sql.Literal(name), expr)
                                  for name, expr in pairs[i:i + _FIELDS_PER_CALL])
        calls.append(sql.SQL("jsonb_build_object({})").format(args))
    return sql.SQL(" || ").join(calls)


def _groups_expr(spec: SyncSpec) -> sql.Composable:
    if not spec.groups:
        return sql.SQL("'[]'::jsonb")
    cases = sql.SQL(", ").join(
        sql.SQL("CASE WHEN {} THEN {} END").format(_user_sql(spec.groups[name]), sql.Literal(name))
        for name in sorted(spec.groups)
    )
    return sql.SQL("to_jsonb(array_remove(ARRAY[{}]::text[], NULL))").format(cases)


def _field_expr(f: Any) -> sql.Composable:
    if f.kind == "column":
        return sql.Identifier(f.column)
    if f.kind == "sql":
        return _user_sql(f.sql)
    return sql.SQL("{}::jsonb").format(sql.Literal(json.dumps(f.value, allow_nan=False)))


def _mapped_source(spec: SyncSpec) -> sql.Composable:
    """``key, payload, groups, hash`` per source row."""
    pairs = [(name, _field_expr(f)) for name, f in spec.fields.items()]
    groups = _groups_expr(spec)
    if spec.group_field is not None:
        pairs.append((spec.group_field, groups))
    return sql.SQL(
        "SELECT m.key, m.payload, m.groups, md5(jsonb_build_array(m.payload, m.groups)::text) AS hash FROM ("
        "SELECT ({key})::text AS key, {payload} AS payload, {groups} AS groups FROM {source} AS src"
        ") AS m"
    ).format(key=sql.Identifier(spec.key), payload=_json_object(pairs), groups=groups,
             source=_source_relation(spec))


def _delivered(spec: SyncSpec, exists: bool) -> sql.Composable:
    if not exists:  # a dry run before the first sync: no state yet, and a preview creates nothing
        return sql.SQL("(SELECT NULL::text AS key, NULL::text AS hash, NULL::jsonb AS payload, "
                       "NULL::jsonb AS groups WHERE false)")
    return sql.SQL("(SELECT key, hash, payload, groups FROM {} WHERE sync_id = {})").format(
        sql.SQL(DELIVERED_TABLE), sql.Literal(spec.sync_id))


def _summary_sql(spec: SyncSpec, exists: bool) -> sql.Composable:
    return sql.SQL(
        "SELECT"
        " count(*) FILTER (WHERE s.present AND s.key IS NULL),"
        " count(s.key) - count(DISTINCT s.key),"
        " count(*) FILTER (WHERE s.key IS NOT NULL AND d.key IS NULL),"
        " count(*) FILTER (WHERE s.key IS NOT NULL AND d.key IS NOT NULL AND s.hash <> d.hash),"
        " count(*) FILTER (WHERE s.key IS NOT NULL AND d.key IS NOT NULL AND s.hash = d.hash),"
        " count(*) FILTER (WHERE s.present IS NULL)"
        " FROM (SELECT key, hash, true AS present FROM ({mapped}) AS x) AS s"
        " FULL JOIN {delivered} AS d ON d.key = s.key"
    ).format(mapped=_mapped_source(spec), delivered=_delivered(spec, exists))


def _duplicates_sql(spec: SyncSpec) -> sql.Composable:
    return sql.SQL(
        "SELECT k, n, count(*) OVER () FROM (SELECT ({key})::text AS k, count(*) AS n FROM {source} AS src"
        " GROUP BY 1 HAVING count(*) > 1) AS d WHERE k IS NOT NULL ORDER BY n DESC, k LIMIT 5"
    ).format(key=sql.Identifier(spec.key), source=_source_relation(spec))


def _changes_sql(spec: SyncSpec, *, full_resync: bool, exists: bool) -> sql.Composable:
    mirror = spec.mode == "mirror"
    new = "(s.key IS NOT NULL AND d.key IS NULL)"
    changed = "(s.key IS NOT NULL AND d.key IS NOT NULL)" if full_resync else \
        "(s.key IS NOT NULL AND d.key IS NOT NULL AND s.hash <> d.hash)"
    wanted = [new] if spec.mode == "insert" else [new, changed]
    if mirror:
        wanted.append("(s.key IS NULL AND d.key IS NOT NULL)")
    create_op = "update" if spec.mode == "update" else "create"
    return sql.SQL(
        "SELECT coalesce(s.key, d.key),"
        " CASE WHEN s.key IS NULL THEN 'delete' WHEN d.key IS NULL THEN {create_op} ELSE 'update' END,"
        " coalesce(s.payload, d.payload)::text, coalesce(s.groups, d.groups)::text, coalesce(s.hash, d.hash)"
        " FROM ({mapped}) AS s {join} {delivered} AS d ON d.key = s.key"
        " WHERE {wanted}"
    ).format(create_op=sql.Literal(create_op), mapped=_mapped_source(spec),
             join=sql.SQL("FULL JOIN" if mirror else "LEFT JOIN"), delivered=_delivered(spec, exists),
             wanted=sql.SQL(" OR ".join(wanted)))


def _pending(row: tuple[Any, ...]) -> Pending:
    key, op, payload, groups, hash_ = row
    return Pending(Change(key=key, op=op, fields=json.loads(payload), groups=tuple(json.loads(groups))),
                   hash_, payload, groups)


# --- reading ------------------------------------------------------------------------------------------


def _require_autocommit(conn: Any) -> None:
    if not conn.autocommit:
        raise ValueError("reverse-ETL state functions need a psycopg connection in autocommit mode "
                         "(they open their own transactions)")


def _summary(conn: Any, spec: SyncSpec, *, full_resync: bool, exists: bool) -> DiffCounts:
    null_rows, extra_rows, new, changed, unchanged, gone = conn.execute(_summary_sql(spec, exists)).fetchone()
    if null_rows or extra_rows:
        dups = conn.execute(_duplicates_sql(spec)).fetchall()
        raise SourceKeyError(spec.sync_id, spec.key, null_rows=null_rows,
                             duplicated_keys=dups[0][2] if dups else 0, examples=[(k, n) for k, n, _ in dups])
    return DiffCounts(spec.mode, full_resync, new, changed, unchanged, gone)


def summary(conn: Any, spec: SyncSpec, *, full_resync: bool = False) -> DiffCounts:
    """The counts alone (one pass over the source).

    :raises SourceKeyError: NULL or duplicated keys.
    """
    _require_autocommit(conn)
    return _summary(conn, spec, full_resync=full_resync, exists=_tables_exist(conn))


class ChangeStream:
    """The changes of one run, read from the server in batches (see :func:`changes`)."""

    def __init__(self, cursor: Any, counts: DiffCounts, started_at: datetime, batch_size: int) -> None:
        self._cursor = cursor
        self.counts = counts
        #: The snapshot's time: rejections older than it that the run did not renew are stale.
        self.started_at = started_at
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[list[Pending]]:
        while rows := self._cursor.fetchmany(self.batch_size):
            yield [_pending(row) for row in rows]


@contextmanager
def changes(conn: Any, spec: SyncSpec, *, batch_size: int, full_resync: bool = False) -> Iterator[ChangeStream]:
    """The changes to send, counted and then streamed in batches of ``batch_size``.

    :raises SourceKeyError: NULL or duplicated keys (before any change is produced).
    """
    _require_autocommit(conn)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    ensure_tables(conn)
    cursor = conn.cursor(f"osds_retl_{uuid.uuid4().hex[:16]}", withhold=True)
    cursor.itersize = batch_size
    try:
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            started_at = conn.execute("SELECT now()").fetchone()[0]
            counts = _summary(conn, spec, full_resync=full_resync, exists=True)
            cursor.execute(_changes_sql(spec, full_resync=full_resync, exists=True))
        yield ChangeStream(cursor, counts, started_at, batch_size)
    finally:
        try:
            cursor.close()
        except Exception:  # noqa: BLE001 - a broken connection takes its cursor with it; keep the first error
            pass


def preview(conn: Any, spec: SyncSpec, limit: int = 20, *, full_resync: bool = False) -> Preview:
    """A dry run: the counts and the first ``limit`` changes a run would send. Nothing is sent or
    recorded, and no table is created (before the first sync everything is new).

    :raises SourceKeyError: NULL or duplicated keys.
    """
    _require_autocommit(conn)
    exists = _tables_exist(conn)
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        counts = _summary(conn, spec, full_resync=full_resync, exists=exists)
        query = _changes_sql(spec, full_resync=full_resync, exists=exists) + sql.SQL(" ORDER BY 1 LIMIT {}").format(
            sql.Literal(max(0, int(limit))))
        rows = conn.execute(query).fetchall()
    return Preview([_pending(row).change for row in rows], counts)


# --- writing ------------------------------------------------------------------------------------------

_UPSERT_DELIVERED = f"""
INSERT INTO {DELIVERED_TABLE} AS t (sync_id, key, hash, payload, groups, delivered_at)
SELECT %s, u.key, u.hash, u.payload::jsonb, u.groups::jsonb, now()
FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[]) AS u (key, hash, payload, groups)
ON CONFLICT (sync_id, key) DO UPDATE SET hash = EXCLUDED.hash, payload = EXCLUDED.payload,
    groups = EXCLUDED.groups, delivered_at = EXCLUDED.delivered_at
"""

_UPSERT_REJECTIONS = f"""
INSERT INTO {REJECTIONS_TABLE} AS t (sync_id, key, op, reason, payload, groups, rejected_at, attempts)
SELECT %s, u.key, u.op, u.reason, u.payload::jsonb, u.groups::jsonb, now(), 1
FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[]) AS u (key, op, reason, payload, groups)
ON CONFLICT (sync_id, key) DO UPDATE SET op = EXCLUDED.op, reason = EXCLUDED.reason, payload = EXCLUDED.payload,
    groups = EXCLUDED.groups, rejected_at = EXCLUDED.rejected_at, attempts = t.attempts + 1
"""


def record(conn: Any, sync_id: str, acknowledged: Sequence[Pending],
           rejected: Sequence[tuple[Pending, str]]) -> None:
    """Store one batch's outcome in one transaction.

    Acknowledged creates and updates advance the delivered state to their hash and payload,
    acknowledged deletes remove it, and every acknowledged key leaves the rejections. A rejected
    ``(pending, reason)`` is stored (``attempts`` + 1 when it was already there) and the delivered
    state is left alone, so the record still differs next run and is sent again.
    """
    _require_autocommit(conn)
    ensure_tables(conn)
    upserts = [p for p in acknowledged if p.change.op != "delete"]
    deletes = [p.change.key for p in acknowledged if p.change.op == "delete"]
    with conn.transaction():
        if upserts:
            conn.execute(_UPSERT_DELIVERED, (sync_id, [p.change.key for p in upserts], [p.hash for p in upserts],
                                             [p.payload for p in upserts], [p.groups for p in upserts]))
        if deletes:
            conn.execute(f"DELETE FROM {DELIVERED_TABLE} WHERE sync_id = %s AND key = ANY(%s::text[])",
                         (sync_id, deletes))
        if acknowledged:
            conn.execute(f"DELETE FROM {REJECTIONS_TABLE} WHERE sync_id = %s AND key = ANY(%s::text[])",
                         (sync_id, [p.change.key for p in acknowledged]))
        if rejected:
            conn.execute(_UPSERT_REJECTIONS, (
                sync_id, [p.change.key for p, _ in rejected], [p.change.op for p, _ in rejected],
                [reason for _, reason in rejected], [p.payload for p, _ in rejected], [p.groups for p, _ in rejected],
            ))


def clear_stale_rejections(conn: Any, sync_id: str, before: datetime) -> int:
    """After a complete run that started at ``before``: drop the rejections it neither renewed nor
    cleared (it had nothing to send for them any more). Returns how many."""
    ensure_tables(conn)
    return conn.execute(f"DELETE FROM {REJECTIONS_TABLE} WHERE sync_id = %s AND rejected_at < %s",
                        (sync_id, before)).rowcount


def forget(conn: Any, sync_id: str) -> tuple[int, int]:
    """Drop a sync's state: the next run sends everything as new. Returns (delivered, rejections) rows removed."""
    _require_autocommit(conn)
    ensure_tables(conn)
    with conn.transaction():
        delivered = conn.execute(f"DELETE FROM {DELIVERED_TABLE} WHERE sync_id = %s", (sync_id,)).rowcount
        rejections = conn.execute(f"DELETE FROM {REJECTIONS_TABLE} WHERE sync_id = %s", (sync_id,)).rowcount
    return delivered, rejections
