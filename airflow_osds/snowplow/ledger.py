"""The ledger of enriched files: which file went into which events table, how far, with what result.

One row per (events table, file URI) in ``osds_state.snowplow_files``, in the warehouse (never on a
worker's disk: a retry may run elsewhere). The loader commits a file in chunks, and each chunk's
transaction also moves the file's ``lines_done``: after a crash the next try resumes at the first
uncommitted line, so nothing is loaded twice and nothing is skipped. A file whose row says
``done`` with the same size is not read again; a file that changed size since is loaded again
(the events' dedupe keeps the lines it already had from doubling).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from airflow_osds.postgres import STATE_SCHEMA, create_once, relation_exists
from airflow_osds.snowplow.sources import SourceFile

__all__ = ["LEDGER_TABLE", "FileState", "ensure_ledger", "finish", "pending", "progress", "start", "state_of"]

LEDGER_TABLE = f"{STATE_SCHEMA}.snowplow_files"

_DDL = f"""
CREATE SCHEMA IF NOT EXISTS {STATE_SCHEMA};
CREATE TABLE IF NOT EXISTS {LEDGER_TABLE} (
    events_table text NOT NULL,
    uri text NOT NULL,
    size bigint NOT NULL,
    checksum text,
    status text NOT NULL CHECK (status IN ('loading', 'done')),
    lines_done bigint NOT NULL DEFAULT 0,
    events bigint NOT NULL DEFAULT 0,
    duplicates bigint NOT NULL DEFAULT 0,
    bad_rows bigint NOT NULL DEFAULT 0,
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    PRIMARY KEY (events_table, uri)
)
"""


@dataclass(frozen=True)
class FileState:
    """A file's ledger row."""

    uri: str
    size: int
    checksum: str | None
    status: str
    lines_done: int
    events: int
    duplicates: int
    bad_rows: int
    finished_at: Any = None


def ensure_ledger(conn: Any) -> None:
    """Create the ledger table if it is missing (its own transaction, under a lock: loaders may start together)."""
    create_once(conn, _DDL)


def state_of(conn: Any, events_table: str, uri: str, *, lock: bool = False) -> FileState | None:
    row = conn.execute(
        f"SELECT uri, size, checksum, status, lines_done, events, duplicates, bad_rows, finished_at "
        f"FROM {LEDGER_TABLE} WHERE events_table = %s AND uri = %s" + (" FOR UPDATE" if lock else ""),
        (events_table, uri),
    ).fetchone()
    return FileState(*row) if row else None


def pending(conn: Any, events_table: str, files: Sequence[SourceFile]) -> list[SourceFile]:
    """The files not yet fully loaded into ``events_table`` (new, unfinished, or changed in size)."""
    if not files:
        return []
    if not relation_exists(conn, LEDGER_TABLE):
        return list(files)
    done = dict(conn.execute(
        f"SELECT uri, size FROM {LEDGER_TABLE} WHERE events_table = %s AND status = 'done' AND uri = ANY(%s)",
        (events_table, [f.uri for f in files]),
    ).fetchall())  # fmt: skip
    return [f for f in files if done.get(f.uri) != f.size]


def start(conn: Any, events_table: str, source: SourceFile, previous: FileState | None) -> int:
    """Record that ``source`` is being loaded; returns the line to resume after (0: from the start)."""
    if previous is not None and previous.status == "loading" and previous.size == source.size:
        return previous.lines_done
    conn.execute(
        f"INSERT INTO {LEDGER_TABLE} (events_table, uri, size, status) VALUES (%s, %s, %s, 'loading') "
        "ON CONFLICT (events_table, uri) DO UPDATE SET size = EXCLUDED.size, status = 'loading', lines_done = 0, "
        "events = 0, duplicates = 0, bad_rows = 0, checksum = NULL, started_at = now(), finished_at = NULL",
        (events_table, source.uri, source.size),
    )
    return 0


def progress(conn: Any, events_table: str, uri: str, *, lines_done: int, events: int, duplicates: int,
             bad_rows: int) -> None:
    """Move a file's committed line and counts (inside the chunk's transaction)."""
    conn.execute(
        f"UPDATE {LEDGER_TABLE} SET lines_done = %s, events = events + %s, duplicates = duplicates + %s, "
        "bad_rows = bad_rows + %s WHERE events_table = %s AND uri = %s",
        (lines_done, events, duplicates, bad_rows, events_table, uri),
    )


def finish(conn: Any, events_table: str, uri: str, checksum: str) -> None:
    conn.execute(
        f"UPDATE {LEDGER_TABLE} SET status = 'done', checksum = %s, finished_at = now() "
        "WHERE events_table = %s AND uri = %s",
        (checksum, events_table, uri),
    )
