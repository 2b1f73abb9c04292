"""Load enriched-event files into PostgreSQL the way Snowplow's Postgres Loader lays them out.

For each file (see :mod:`airflow_osds.snowplow.sources`), in chunks of ``chunk_lines`` lines,
each chunk in one transaction:

1. every line is split, its typed fields checked (:mod:`~airflow_osds.snowplow.tsv`) and its
   ``contexts``, ``unstruct_event`` and ``derived_contexts`` validated against their Iglu schemas
   (:mod:`~airflow_osds.snowplow.entities`); the atomic fields of a good line are streamed to a
   ``COPY`` into a temporary staging table while the next lines are parsed (PostgreSQL types them
   on its own core);
2. ``INSERT … SELECT … ON CONFLICT DO NOTHING`` moves the staged events into ``<schema>.events``,
   whose unique index on ``(event_id, event_fingerprint)`` (``NULLS NOT DISTINCT``) drops natural
   duplicates, and ``RETURNING`` says which events are new;
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

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_osds.snowplow import badrows, entities, fields, ledger, tables, tsv
from airflow_osds.snowplow.iglu import Resolver, SchemaKey
from airflow_osds.snowplow.sources import SourceFile, read_lines

__all__ = ["BadRowsExceededError", "FileReport", "LoadOptions", "LoadReport", "load"]

log = logging.getLogger(__name__)

_CONTEXTS = fields.FIELD_INDEX["contexts"]
_UNSTRUCT = fields.FIELD_INDEX["unstruct_event"]
_DERIVED = fields.FIELD_INDEX["derived_contexts"]
_EVENT_ID = fields.FIELD_INDEX["event_id"]
_COLLECTOR_TSTAMP = fields.FIELD_INDEX["collector_tstamp"]
_FINGERPRINT = fields.FIELD_INDEX["event_fingerprint"]
_JSON_FIELDS = ((_CONTEXTS, "contexts"), (_UNSTRUCT, "unstruct_event"), (_DERIVED, "derived_contexts"))
# The atomic part of a line: the TSV fields without the three JSON ones, as slices.
_ATOMIC_SLICES = [slice(0, _CONTEXTS), slice(_CONTEXTS + 1, _UNSTRUCT), slice(_UNSTRUCT + 1, _DERIVED),
                  slice(_DERIVED + 1, None)]
# COPY … (FORMAT csv, DELIMITER tab) with a quote character enrich never writes: the TSV's
# backslashes (in URLs, user agents) stay literal, an empty field is NULL.
_QUOTE = "\x01"
_COPY_OPTIONS = "(FORMAT csv, DELIMITER E'\\t', QUOTE E'\\x01', NULL '')"
_STAGE = "osds_stage_events"


@dataclass
class LoadOptions:
    """How to load.

    :param schema: the schema of ``events`` and the entity tables (Snowplow's default ``atomic``).
    :param bad_rows_table: where bad rows go (``<schema>.<table>``); default ``<schema>.osds_bad_rows``.
    :param chunk_lines: lines per transaction (also bounds memory).
    :param max_bad_rows: fail when more bad rows than this (``None``: no count limit).
    :param max_bad_ratio: fail when bad rows ÷ lines read exceeds this (``None``: no ratio limit).
    """

    schema: str = "atomic"
    bad_rows_table: str | None = None
    chunk_lines: int = 20_000
    max_bad_rows: int | None = None
    max_bad_ratio: float | None = 0.01

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
    for source in files:
        report.files.append(writer.load_file(source, say))
    problem = report.exceeded(options)
    if problem:
        raise BadRowsExceededError(f"Snowplow load: {problem}; see {options.bad_table}", report)
    return report


@dataclass
class _Chunk:
    """One chunk's parsed lines: what goes to COPY, what the new events bring, what failed."""

    first_line: int
    events: int = 0  # good lines staged
    # event key → (root_id, root_tstamp, entities) of the first good line with that key in the chunk
    entities: dict[tuple[str, str], tuple[str, str, list[entities.Entity]]] = field(default_factory=dict)
    bad: list[tuple[int, str, str, str, dict[str, Any]]] = field(default_factory=list)  # line, kind, reason, original, row


class _Writer:
    def __init__(self, conn: Any, options: LoadOptions, resolver: Resolver, report: LoadReport) -> None:
        self.conn = conn
        self.options = options
        self.resolver = resolver
        self.report = report
        self.tables: dict[SchemaKey, tuple[str, list[Any]]] = {}  # key → (qualified table, columns)

    # -- set-up -----------------------------------------------------------------------------
    def prepare(self) -> None:
        conn, schema = self.conn, self.options.schema
        ledger.ensure_ledger(conn)
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self.options.events_table,))
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_ident(schema)}")
            conn.execute(fields.events_table_sql(schema))
            conn.execute(
                f"CREATE UNIQUE INDEX IF NOT EXISTS osds_events_event_id_fingerprint ON {_qualified(self.options.events_table)} "
                "(event_id, event_fingerprint) NULLS NOT DISTINCT"
            )
            bad_schema = self.options.bad_table.rsplit(".", 1)[0]
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_ident(bad_schema)}")
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {_qualified(self.options.bad_table)} ("
                "source text NOT NULL, line bigint NOT NULL, kind text NOT NULL, reason text NOT NULL, "
                "original text NOT NULL, bad_row jsonb NOT NULL, loaded_at timestamptz NOT NULL DEFAULT now(), "
                "PRIMARY KEY (source, line))"
            )
        conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} (LIKE {_qualified(self.options.events_table)}) "
                     "ON COMMIT DELETE ROWS")

    # -- one file ---------------------------------------------------------------------------
    def load_file(self, source: SourceFile, say: Callable[[str], None]) -> FileReport:
        conn, events_table = self.conn, self.options.events_table
        file_report = FileReport(source.uri)
        started = time.monotonic()
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
            file_report.resumed_after = resume
            if resume:
                say(f"{source.uri}: resuming after line {resume:,} (committed by an earlier try)")
            with read_lines(source) as reader:
                pending: list[tuple[int, bytes]] = []
                for number, raw in reader:
                    if number <= resume:  # committed by an earlier try (read anyway: the checksum covers it)
                        continue
                    pending.append((number, raw))
                    if len(pending) >= self.options.chunk_lines:
                        self._chunk(source.uri, pending, file_report)
                        pending = []
                if pending:
                    self._chunk(source.uri, pending, file_report)
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
        import psycopg

        try:
            with self.conn.transaction():
                counts = self._write(uri, lines)
                ledger.progress(self.conn, self.options.events_table, uri, lines_done=lines[-1][0], **counts)
        except (psycopg.errors.DataError, psycopg.errors.IntegrityViolation) as exc:
            if len(lines) == 1:
                counts = self._runtime_bad_row(uri, lines[0], exc)
            else:
                half = len(lines) // 2
                self._chunk(uri, lines[:half], file_report)
                self._chunk(uri, lines[half:], file_report)
                return
        file_report.lines += len(lines)
        file_report.events += counts["events"]
        file_report.duplicates += counts["duplicates"]
        file_report.bad_rows += counts["bad_rows"]

    def _write(self, uri: str, lines: list[tuple[int, bytes]]) -> dict[str, int]:
        conn = self.conn
        chunk = _Chunk(first_line=lines[0][0])
        with conn.cursor() as cur, cur.copy(f"COPY {_STAGE} FROM STDIN {_COPY_OPTIONS}") as copy:
            write = copy.write
            for number, raw in lines:
                staged = self._parse(number, raw, chunk)
                if staged is not None:
                    write(staged)
        new = conn.execute(
            f"INSERT INTO {_qualified(self.options.events_table)} SELECT * FROM {_STAGE} "
            "ON CONFLICT DO NOTHING RETURNING event_id::text, coalesce(event_fingerprint, '')"
        ).fetchall()
        self.report.table_rows[self.options.events_table] += len(new)
        self._write_entities(new, chunk)
        self._write_bad(uri, chunk.bad)
        return {"events": len(new), "duplicates": chunk.events - len(new), "bad_rows": len(chunk.bad)}

    def _parse(self, number: int, raw: bytes, chunk: _Chunk) -> str | None:
        """The COPY line of a good line (recording its entities), or ``None`` after recording a bad row."""
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            text = raw.decode("utf-8", "replace")
            failure = {"type": "RowDecodingError",
                       "errors": [{"type": "UnhandledRowDecodingError", "message": f"not UTF-8: {exc}"}]}
            self._bad(chunk, number, "loader_parsing_error", f"not UTF-8 ({exc.reason} at byte {exc.start})", text,
                      badrows.parsing_error(text, failure))
            return None
        parts = tsv.split(line)
        if not isinstance(parts, list):
            failure = parts.to_failure()
            self._bad(chunk, number, "loader_parsing_error", _describe_parse_failure(failure), line,
                      badrows.parsing_error(line, failure))
            return None
        invalid = tsv.invalid_values(parts)
        if invalid:
            failure = {"type": "RowDecodingError", "errors": invalid}
            reason = "; ".join(f"{e['key']}: {e['message']}" for e in invalid[:3])
            self._bad(chunk, number, "loader_parsing_error", reason, line, badrows.parsing_error(line, failure))
            return None
        found: list[entities.Entity] = []
        failures: list[dict[str, Any]] = []
        for index, name in _JSON_FIELDS:
            text = parts[index]
            if text:
                ents, fails = entities.extract(name, text, self.resolver)
                found += ents
                failures += fails
        if failures:
            self._bad(chunk, number, "loader_iglu_error", _describe_iglu_failures(failures), line,
                      badrows.iglu_error(badrows.event_payload(parts), failures))
            return None
        chunk.events += 1
        key = (parts[_EVENT_ID].lower(), parts[_FINGERPRINT])
        if found and key not in chunk.entities:
            chunk.entities[key] = (parts[_EVENT_ID], parts[_COLLECTOR_TSTAMP], found)
        atomic = "\t".join("\t".join(parts[s]) for s in _ATOMIC_SLICES)
        if _QUOTE in atomic:  # never written by enrich; quote each field so COPY reads it as data
            atomic = "\t".join(_quote_csv(p) for s in _ATOMIC_SLICES for p in parts[s])
        return atomic + "\n"

    def _bad(self, chunk: _Chunk, number: int, kind: str, reason: str, original: str, row: dict[str, Any]) -> None:
        chunk.bad.append((number, kind, reason, original, row))

    # -- entities ---------------------------------------------------------------------------
    def _write_entities(self, new: list[tuple[str, str]], chunk: _Chunk) -> None:
        if not chunk.entities:
            return
        rows: dict[SchemaKey, list[str]] = defaultdict(list)
        for key in new:
            hit = chunk.entities.get(key)
            if hit is None:
                continue
            root_id, root_tstamp, found = hit
            for entity in found:
                _, columns = self._table(entity.key)
                rows[entity.key].append(tables.copy_line(tables.row(columns, entity.key, root_id, root_tstamp,
                                                                    entity.data)))
        for key, lines in rows.items():
            table, columns = self._table(key)
            names = ", ".join(_ident(c.name) for c in tables.all_columns(columns))
            with self.conn.cursor() as cur, cur.copy(f"COPY {_qualified(table)} ({names}) FROM STDIN {tables.COPY_OPTIONS}") as copy:
                for line in lines:
                    copy.write(line)
            self.report.table_rows[table] += len(lines)

    def _table(self, key: SchemaKey) -> tuple[str, list[Any]]:
        """The entity table of ``key`` (created or migrated in this transaction when needed) and ``key``'s columns."""
        known = self.tables.get(key)
        if known is not None:
            return known
        schema = self.resolver.lookup(key)
        name = tables.table_name(key)
        qualified = f"{self.options.schema}.{name}"
        conn = self.conn
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (qualified,))
        existing = [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
            "ORDER BY ordinal_position", (self.options.schema, name)).fetchall()]  # fmt: skip
        comment = None
        if existing:
            text = conn.execute("SELECT obj_description(to_regclass(%s), 'pg_class')", (qualified,)).fetchone()[0]
            comment = SchemaKey.parse(text) if text else None
        for statement in tables.plan(existing or None, comment, self.options.schema, key, schema):
            conn.execute(statement)
        result = self.tables[key] = (qualified, tables.columns(schema))
        return result

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
        for _, kind, *_rest in bad:
            self.report.bad_by_kind[kind] += 1

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


def _describe_parse_failure(failure: dict[str, Any]) -> str:
    if failure["type"] == "NotTSV":
        return "not a tab-separated line"
    if failure["type"] == "FieldNumberMismatch":
        return f"{failure['fieldCount']} fields, an enriched event has 131"
    return failure["type"]


def _describe_iglu_failures(failures: list[dict[str, Any]]) -> str:
    out = []
    for f in failures[:3]:
        error = f.get("error") or {}
        kind = error.get("error", "?") if isinstance(error, dict) else str(error)
        key = f.get("schemaKey") or f.get("schemaCriterion") or ""
        detail = ""
        if kind == "ValidationError":
            reports = error.get("dataReports") or []
            detail = ": " + "; ".join(f"{r.get('path')}: {r.get('message')}" for r in reports[:2])
        elif kind == "ResolutionError":
            detail = ": schema not found in any repository"
        out.append(f"{kind} {key}{detail}".strip())
    return "; ".join(out)


def _quote_csv(value: str) -> str:
    return "" if value == "" else _QUOTE + value.replace(_QUOTE, _QUOTE * 2) + _QUOTE


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _qualified(name: str) -> str:
    schema, _, table = name.rpartition(".")
    return f"{_ident(schema)}.{_ident(table)}" if schema else _ident(table)
