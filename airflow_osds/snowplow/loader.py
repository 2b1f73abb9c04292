"""Load enriched-event files into PostgreSQL the way Snowplow's Postgres Loader lays them out.

For each file (see :mod:`airflow_osds.snowplow.sources`), in chunks of ``chunk_lines`` lines,
each chunk parsed (:mod:`~airflow_osds.snowplow.chunks`; past ``helper_after_lines`` lines, in a
helper process: :mod:`~airflow_osds.snowplow.helper`) while the one before waits for a writer
thread and the one before that is written, and written in one transaction:

1. every line is matched, its typed fields checked (:mod:`~airflow_osds.snowplow.tsv`) and its
   ``contexts``, ``unstruct_event`` and ``derived_contexts`` validated against their Iglu schemas
   (:mod:`~airflow_osds.snowplow.entities`); a field text seen before in the chunk (a visitor's
   derived contexts, a page's contexts on each ping) is parsed, validated and shredded once;
2. the events (natural duplicates in the chunk dropped) are ``COPY``-ed straight into
   ``<schema>.events``, whose unique index on ``(event_id, event_fingerprint)`` (``NULLS NOT
   DISTINCT``) refuses an event loaded before. Then the COPY is rolled back to its savepoint,
   and that chunk and the rest of the file go through a staging table and ``INSERT … ON
   CONFLICT DO NOTHING RETURNING``, exact whatever loads at the same time;
3. the entities of the new events only are copied into their tables (one per
   ``vendor_name_model``, created or migrated first, see :mod:`~airflow_osds.snowplow.tables`), so
   an event and its contexts are written together or not at all, and a replayed event brings no
   second copy of its contexts;
4. every line that failed becomes a self-describing bad row (:mod:`~airflow_osds.snowplow.badrows`)
   in the bad-rows table, keyed by (file, line);
5. the ledger (:mod:`~airflow_osds.snowplow.ledger`) records the last committed line.

A chunk that PostgreSQL refuses (a value Python's checks let through) is split in halves until the
offending lines are found; those become ``loader_runtime_error`` bad rows with the database's
message, the rest loads. Nothing here imports Airflow.
"""

from __future__ import annotations

import gc
import logging
import sys
import time
import zlib
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from airflow_osds.background import OneWriter
from airflow_osds.postgres import create_once
from airflow_osds.snowplow import DEFAULT_CHUNK_LINES, DEFAULT_HELPER_AFTER_LINES, DEFAULT_MAX_BAD_RATIO, badrows, fields, ledger, tables
from airflow_osds.snowplow.chunks import COPY_OPTIONS, Batch, Chunk, ChunkParser, Event
from airflow_osds.snowplow.helper import ParseHelper, Parsed
from airflow_osds.snowplow.iglu import Resolver, SchemaKey
from airflow_osds.snowplow.sources import SourceFile, read_lines

__all__ = ["BadRowsExceededError", "FileReport", "LoadOptions", "LoadReport", "SourceReadError", "load"]

log = logging.getLogger(__name__)

_STAGE = "osds_stage_events"
_SWITCH_INTERVAL_S = 0.0005
# Chunks parsed ahead of the one the writer takes next. One: +8 % on 200k all-different events
# (the parse-bound shape), the same on the PostgreSQL-bound one, ~40 MiB more at peak; two or
# three gained nothing more (2 cores, 2026-12-07).
_PARSE_AHEAD = 1


@dataclass
class LoadOptions:
    """How to load.

    :param schema: the schema of ``events`` and the entity tables (Snowplow's default ``atomic``).
    :param bad_rows_table: where bad rows go (``<schema>.<table>``); default ``<schema>.osds_bad_rows``.
    :param chunk_lines: lines per transaction (also bounds memory).
    :param max_bad_rows: fail when more bad rows than this (``None``: no count limit).
    :param max_bad_ratio: fail when bad rows ÷ lines read exceeds this (``None``: no ratio limit).
    :param helper_after_lines: lines the load parses in its own process before a helper process
        takes over the parsing (:mod:`~airflow_osds.snowplow.helper`); ``None``: never.
    """

    schema: str = "atomic"
    bad_rows_table: str | None = None
    chunk_lines: int = DEFAULT_CHUNK_LINES
    max_bad_rows: int | None = None
    max_bad_ratio: float | None = DEFAULT_MAX_BAD_RATIO
    helper_after_lines: int | None = DEFAULT_HELPER_AFTER_LINES

    @property
    def events_table(self) -> str:
        return f"{self.schema}.events"

    @property
    def bad_table(self) -> str:
        return self.bad_rows_table or f"{self.schema}.osds_bad_rows"


@dataclass
class FileReport:
    uri: str
    lines: int = 0
    events: int = 0
    duplicates: int = 0
    bad_rows: int = 0
    skipped: str | None = None  # why the file was not read
    resumed_after: int = 0
    checksum: str | None = None
    seconds: float = 0.0


@dataclass
class LoadReport:
    """What a load did; ``table_rows`` counts the rows added per table (``atomic.events`` included)."""

    files: list[FileReport] = field(default_factory=list)
    table_rows: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    bad_by_kind: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def lines(self) -> int:
        return sum(f.lines for f in self.files)

    @property
    def events(self) -> int:
        return sum(f.events for f in self.files)

    @property
    def duplicates(self) -> int:
        return sum(f.duplicates for f in self.files)

    @property
    def bad_rows(self) -> int:
        return sum(f.bad_rows for f in self.files)

    @property
    def loaded_files(self) -> list[FileReport]:
        return [f for f in self.files if f.skipped is None]

    def exceeded(self, options: LoadOptions) -> str | None:
        """Why the bad rows are past the threshold, or ``None``."""
        bad, lines = self.bad_rows, self.lines
        if options.max_bad_rows is not None and bad > options.max_bad_rows:
            return f"{bad} bad rows, more than max_bad_rows={options.max_bad_rows}"
        if options.max_bad_ratio is not None and lines and bad / lines > options.max_bad_ratio:
            return f"{bad} bad rows of {lines} lines ({bad / lines:.2%}), more than max_bad_ratio={options.max_bad_ratio:g}"
        return None

    def summary(self) -> dict[str, Any]:
        return {"files": len(self.loaded_files), "skipped_files": len(self.files) - len(self.loaded_files),
                "lines": self.lines, "events": self.events, "duplicates": self.duplicates, "bad_rows": self.bad_rows,
                "bad_by_kind": dict(self.bad_by_kind), "table_rows": dict(self.table_rows)}


class SourceReadError(OSError):
    """A file could not be read to its end (a truncated gzip, a storage error); what came before is loaded."""


class BadRowsExceededError(Exception):
    """More bad rows than the load allows; the report says how many of which kind (everything good is loaded)."""

    def __init__(self, message: str, report: LoadReport) -> None:
        super().__init__(message)
        self.report = report


def load(
    conn: Any,
    files: Sequence[SourceFile],
    resolver: Resolver,
    options: LoadOptions | None = None,
    *,
    say: Callable[[str], None] = log.info,
) -> LoadReport:
    """Load ``files`` into the warehouse ``conn`` (a psycopg 3 connection, not in a transaction).

    :raises BadRowsExceededError: after loading, when the bad rows are past the thresholds.
    """
    options = options or LoadOptions()
    report = LoadReport()
    writer = _Writer(conn, options, resolver, report)
    writer.prepare()
    with _throughput_mode(), writer.parsing:
        for source in files:
            report.files.append(writer.load_file(source, say))
    problem = report.exceeded(options)
    if problem:
        raise BadRowsExceededError(f"Snowplow load: {problem}; see {options.bad_table}", report)
    return report


class _Writer:
    def __init__(self, conn: Any, options: LoadOptions, resolver: Resolver, report: LoadReport) -> None:
        self.conn = conn
        self.options = options
        self.resolver = resolver
        self.report = report
        self.parser = ChunkParser(resolver)
        self.parsing = ParseHelper(self.parser, start_after=options.helper_after_lines)
        self.ready: set[SchemaKey] = set()  # versions whose table was checked in this load
        self._direct = True

    # -- set-up -----------------------------------------------------------------------------
    def prepare(self) -> None:
        conn, schema = self.conn, self.options.schema
        ledger.ensure_ledger(conn)
        bad_schema = self.options.bad_table.rsplit(".", 1)[0]
        create_once(conn, [
            f"CREATE SCHEMA IF NOT EXISTS {_ident(schema)}",
            fields.events_table_sql(schema),
            f"CREATE UNIQUE INDEX IF NOT EXISTS osds_events_event_id_fingerprint ON {_qualified(self.options.events_table)} "
            "(event_id, event_fingerprint) NULLS NOT DISTINCT",
            f"CREATE SCHEMA IF NOT EXISTS {_ident(bad_schema)}",
            f"CREATE TABLE IF NOT EXISTS {_qualified(self.options.bad_table)} ("
            "source text NOT NULL, line bigint NOT NULL, kind text NOT NULL, reason text NOT NULL, "
            "original text NOT NULL, bad_row jsonb NOT NULL, loaded_at timestamptz NOT NULL DEFAULT now(), "
            "PRIMARY KEY (source, line))",
        ])
        conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} (LIKE {_qualified(self.options.events_table)}) "
                     "ON COMMIT DELETE ROWS")

    # -- one file ---------------------------------------------------------------------------
    def load_file(self, source: SourceFile, say: Callable[[str], None]) -> FileReport:
        conn, events_table = self.conn, self.options.events_table
        file_report = FileReport(source.uri)
        started = time.monotonic()
        self._direct = True  # straight COPY into the events table until it meets an event already there
        # One loader per file at a time: a second task skips it instead of interleaving.
        locked = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s), hashtext(%s))",
                              (events_table, source.uri)).fetchone()[0]
        if not locked:
            file_report.skipped = "another load of this file is running"
            say(f"{source.uri}: skipped, {file_report.skipped}")
            return file_report
        try:
            with conn.transaction():
                previous = ledger.state_of(conn, events_table, source.uri, lock=True)
                if previous is not None and previous.status == "done" and previous.size == source.size:
                    file_report.skipped = f"already loaded ({previous.events} events, checksum {previous.checksum})"
                    say(f"{source.uri}: skipped, {file_report.skipped}")
                    return file_report
                if previous is not None and previous.size != source.size:
                    say(f"{source.uri}: its size changed since it was loaded ({previous.size} → {source.size} bytes); "
                        "loading it again (events already loaded are not duplicated)")
                resume = ledger.start(conn, events_table, source, previous)
                if previous is not None and resume == 0:
                    # Read again from the top: a line that was bad (cut off while the file was still being
                    # written) may be whole now. The lines still bad get their bad rows back.
                    conn.execute(f"DELETE FROM {_qualified(self.options.bad_table)} WHERE source = %s", (source.uri,))
            file_report.resumed_after = resume
            if resume:
                say(f"{source.uri}: resuming after line {resume:,} (committed by an earlier try)")
            with read_lines(source) as reader, OneWriter() as writer:

                # Chunks submitted for parsing (here, or in the helper process) that the writer has not
                # taken yet: the next one is parsed while the one before waits for the writer, so
                # neither the parse nor PostgreSQL waits for the other to start.
                ahead: deque[tuple[list[tuple[int, bytes]], Parsed]] = deque()

                def write(lines: list[tuple[int, bytes]] | None) -> None:
                    """Submit ``lines`` for parsing; ``None``: hand every chunk still ahead to the writer."""
                    if lines is not None:
                        ahead.append((lines, self.parsing.submit(lines, batch=self._direct)))
                    while len(ahead) > (_PARSE_AHEAD if lines is not None else 0):
                        submitted, parsed = ahead.popleft()
                        writer.submit(self._write_parsed, source.uri, submitted, parsed, file_report)

                pending: list[tuple[int, bytes]] = []
                lines, number = iter(reader), 0
                while True:
                    try:
                        item = next(lines, None)
                    except (OSError, EOFError, zlib.error) as exc:  # truncated gzip, a dropped connection …
                        if pending:  # what was read is kept; the ledger says where the file broke
                            write(pending)
                        write(None)
                        writer.wait()
                        raise SourceReadError(
                            f"{source.uri} cannot be read past line {number:,}: {type(exc).__name__}: {exc}. "
                            "The lines before it are loaded; a retry resumes there once the file is whole"
                        ) from exc
                    if item is None:
                        break
                    number, raw = item
                    if number <= resume:  # committed by an earlier try (read anyway: the checksum covers it)
                        continue
                    pending.append((number, raw))
                    if len(pending) >= self.options.chunk_lines:
                        write(pending)
                        pending = []
                if pending:
                    write(pending)
                write(None)
                writer.wait()
                file_report.checksum = reader.checksum
            with conn.transaction():
                ledger.finish(conn, events_table, source.uri, file_report.checksum)
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext(%s), hashtext(%s))", (events_table, source.uri))
        file_report.seconds = round(time.monotonic() - started, 3)
        say(f"{source.uri}: {file_report.lines:,} lines → {file_report.events:,} new events, "
            f"{file_report.duplicates:,} duplicates, {file_report.bad_rows:,} bad rows ({file_report.seconds:.1f} s)")
        return file_report

    # -- one chunk --------------------------------------------------------------------------
    def _chunk(self, uri: str, lines: list[tuple[int, bytes]], file_report: FileReport) -> None:
        self._write_chunk(uri, lines, self.parser.parse(lines, batch=self._direct), file_report)

    def _write_parsed(self, uri: str, lines: list[tuple[int, bytes]], parsed: Parsed, file_report: FileReport) -> None:
        self._write_chunk(uri, lines, parsed.result(), file_report)

    def _write_chunk(self, uri: str, lines: list[tuple[int, bytes]], chunk: Chunk, file_report: FileReport) -> None:
        """Write one parsed chunk in one transaction; a chunk PostgreSQL refuses is halved until the culprits are alone."""
        import psycopg

        ready = set(self.ready)
        try:
            with self.conn.transaction():
                counts = self._write(uri, chunk)
                ledger.progress(self.conn, self.options.events_table, uri, lines_done=lines[-1][0], **counts)
        except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as exc:
            self.ready = ready  # the tables this transaction created or migrated are rolled back too
            chunk.rows.clear()
            if len(lines) > 1:  # find the lines PostgreSQL refuses: halve until they are alone
                half = len(lines) // 2
                self._chunk(uri, lines[:half], file_report)
                self._chunk(uri, lines[half:], file_report)
                return
            counts = self._runtime_bad_row(uri, lines[0], exc)
            chunk.bad = [(lines[0][0], "loader_runtime_error", "", "", {})]
        for table, added in chunk.rows.items():
            self.report.table_rows[table] += added
        for _, kind, *_rest in chunk.bad:
            self.report.bad_by_kind[kind] += 1
        file_report.lines += len(lines)
        file_report.events += counts["events"]
        file_report.duplicates += counts["duplicates"]
        file_report.bad_rows += counts["bad_rows"]

    def _write(self, uri: str, chunk: Chunk) -> dict[str, int]:
        dropped = self._prepare_tables(chunk)
        batch = None
        if self._direct:
            batch = chunk.batch if chunk.batch is not None and not dropped else Batch.of(self._events(chunk))
            if not self._copy_events(batch.events):
                batch = None
        if batch is None:
            if chunk.events is None:
                self._events(chunk)
                self._prepare_tables(chunk)  # this parse's versions (a schema may have been found since)
            assert chunk.events is not None
            new = self._insert_new_events(chunk.events)
            batch = Batch.of(event for event in chunk.events if event.key in new)  # the entities of new events only
        chunk.rows[self.options.events_table] += len(batch.keys)
        for key, (text, count) in batch.entities.items():
            chunk.rows[f"{self.options.schema}.{tables.table_name(key)}"] += self._copy_entities(key, text, count)
        self._write_bad(uri, chunk.bad)
        inserted = len(batch.keys)
        return {"events": inserted, "duplicates": chunk.event_count - inserted, "bad_rows": len(chunk.bad)}

    def _events(self, chunk: Chunk) -> list[Event]:
        """The chunk's events, parsed here again if the helper left them out.

        That happens only when its batch cannot be written as it is (events loaded before, a
        refused table). The whole chunk is then this parse's, bad rows included, so that the two
        parses cannot disagree on a line.
        """
        if chunk.events is None:
            assert chunk.lines is not None, "a chunk without events must keep its lines"
            again = self.parser.parse(chunk.lines, batch=False)
            chunk.events, chunk.bad, chunk.batch = again.events, again.bad, None
        return chunk.events

    def _copy_events(self, text: str) -> bool:
        """COPY the chunk's events straight into the table; ``False`` when the unique index refuses one.

        That means some events are there already (a file loaded again, a duplicate from another
        file, a concurrent loader): the savepoint is rolled back, and this chunk and the rest of
        the file go through :meth:`_insert_new_events` instead.
        """
        import psycopg

        conn, table = self.conn, _qualified(self.options.events_table)
        try:
            with conn.transaction(), conn.cursor() as cur:
                with cur.copy(f"COPY {table} FROM STDIN {COPY_OPTIONS}") as copy:
                    copy.write(text)
            return True
        except psycopg.errors.UniqueViolation:
            self._direct = False
            log.info("%s: some events of this file are loaded already; deduplicating through staging", table)
            return False

    def _insert_new_events(self, events: list[Event]) -> set[tuple[str, str]]:
        """Insert the events not loaded yet, through a staging table and ``INSERT … ON CONFLICT DO
        NOTHING RETURNING`` (exact under any concurrency); returns their keys."""
        conn, table = self.conn, _qualified(self.options.events_table)
        if not events:
            return set()
        with conn.cursor() as cur, cur.copy(f"COPY {_STAGE} FROM STDIN {COPY_OPTIONS}") as copy:
            copy.write("".join(event.atomic for event in events))
        return set(conn.execute(
            f"INSERT INTO {table} SELECT * FROM {_STAGE} "
            "ON CONFLICT DO NOTHING RETURNING event_id::text, coalesce(event_fingerprint, '')"
        ).fetchall())  # fmt: skip

    # -- entities ---------------------------------------------------------------------------
    def _prepare_tables(self, chunk: Chunk) -> bool:
        """Create or migrate the entity tables this chunk's events need, before anything is written.

        A table that cannot take a version (a type change we refuse) turns the events carrying
        that version into bad rows, with the reason; the others load. Returns whether it did.
        """
        if chunk.batch is not None:  # the versions of the events' first lines: the only entities written
            keys = set(chunk.batch.entities) - self.ready
        else:
            keys = {key for event in chunk.events for key, _ in event.entities} - self.ready
        refused: dict[SchemaKey, str] = {}
        for key in sorted(keys, key=lambda k: k.uri):
            try:
                self._prepare_table(key)
            except tables.TableMigrationError as exc:
                refused[key] = str(exc)
        if not refused:
            return False
        if chunk.events is None:  # parsed again here, then prepared for that parse's versions
            self._events(chunk)
            return self._prepare_tables(chunk)
        kept = []
        for event in chunk.events:
            problem = next((refused[k] for k, _ in event.entities if k in refused), None)
            if problem is None:
                kept.append(event)
                continue
            parts = event.text.split("\t")
            chunk.bad.append((event.line, "loader_runtime_error", f"entity table: {problem}", event.text,
                              badrows.runtime_error(badrows.event_payload(parts), problem)))
        chunk.events = kept
        return True

    def _prepare_table(self, key: SchemaKey) -> None:
        conn, db_schema = self.conn, self.options.schema
        name = tables.table_name(key)
        # Serialised per table across loaders; the state is read again inside the lock.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{db_schema}.{name}",))
        state = tables.read_table_state(conn, db_schema, name)
        statements = tables.plan(db_schema, state.columns if state else None, state.comment if state else None,
                                 key, self.resolver.lookup(key))
        for statement in statements:
            conn.execute(statement)
        self.ready.add(key)

    def _copy_entities(self, key: SchemaKey, text: str, rows: int) -> int:
        """COPY the rows of new events; their (event, entity hash) can be there only for a synthetic duplicate.

        That case (another event with the same id and timestamp but another fingerprint carried
        the same entity) makes the unique index refuse the COPY: its savepoint is rolled back and
        the rows go through a staging table, inserting those not there yet.
        """
        import psycopg

        conn, db_schema = self.conn, self.options.schema
        name = tables.table_name(key)
        columns = self.parser.columns(key)
        try:
            with conn.transaction(), conn.cursor() as cur:
                with cur.copy(tables.copy_sql(db_schema, name, columns)) as copy:
                    copy.write(text)
            return rows
        except psycopg.errors.UniqueViolation:
            pass
        staging = "osds_stage_entities"
        conn.execute(tables.staging_table_sql(db_schema, name, staging))
        with conn.cursor() as cur, cur.copy(tables.copy_sql(None, staging, columns)) as copy:
            copy.write(text)
        added = conn.execute(tables.insert_new_rows_sql(db_schema, name, staging, columns)).rowcount
        conn.execute(f"DROP TABLE {_ident(staging)}")
        return int(added)

    # -- bad rows ---------------------------------------------------------------------------
    def _write_bad(self, uri: str, bad: Iterable[tuple[int, str, str, str, dict[str, Any]]]) -> None:
        import msgspec

        bad = list(bad)
        if not bad:
            return
        encode = msgspec.json.encode
        self.conn.cursor().executemany(
            f"INSERT INTO {_qualified(self.options.bad_table)} (source, line, kind, reason, original, bad_row) "
            "VALUES (%s, %s, %s, %s, %s, %s::jsonb) ON CONFLICT (source, line) DO NOTHING",
            [(uri, number, kind, reason, original, encode(row).decode()) for number, kind, reason, original, row in bad],
        )

    def _runtime_bad_row(self, uri: str, line: tuple[int, bytes], exc: Exception) -> dict[str, int]:
        number, raw = line
        text = raw.decode("utf-8", "replace")
        parts = text.split("\t")
        message = str(exc).strip() or type(exc).__name__
        with self.conn.transaction():
            self._write_bad(uri, [(number, "loader_runtime_error", f"PostgreSQL refused the event: {message}", text,
                                   badrows.runtime_error(badrows.event_payload(parts), message))])
            ledger.progress(self.conn, self.options.events_table, uri, lines_done=number, events=0, duplicates=0,
                            bad_rows=1)
        return {"events": 0, "duplicates": 0, "bad_rows": 1}


@contextmanager
def _throughput_mode() -> Iterator[None]:
    """Interpreter settings for a load, restored after it.

    * The cyclic GC is paused: a chunk makes millions of short-lived, acyclic objects (fields,
      parsed JSON) that reference counting frees, and the collector's passes over them cost
      ≈30 % of the parse. One collection at the end picks up any cycle.
    * A shorter switch interval: the writer thread waits on PostgreSQL hundreds of times per
      chunk while the parsing thread runs; at the default 5 ms, each wait ends with a long wait
      for the GIL.
    """
    gc_enabled, interval = gc.isenabled(), sys.getswitchinterval()
    gc.disable()
    sys.setswitchinterval(min(interval, _SWITCH_INTERVAL_S))
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
        if gc_enabled:
            gc.enable()
            gc.collect()


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _qualified(name: str) -> str:
    schema, _, table = name.rpartition(".")
    return f"{_ident(schema)}.{_ident(table)}" if schema else _ident(table)
