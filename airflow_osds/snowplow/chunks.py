"""One chunk of enriched lines, parsed: good events with their COPY lines, bad lines with their bad rows.

This is the CPU side of a load (:mod:`~airflow_osds.snowplow.loader` is the database side):
pure Python on a :class:`~airflow_osds.snowplow.iglu.Resolver`, no connection, so it runs in
the loader's process or in its parsing helper (:mod:`~airflow_osds.snowplow.helper`), whose
results cross a pipe: everything here pickles.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_osds.snowplow import badrows, entities, tables, tsv
from airflow_osds.snowplow.iglu import Resolver, SchemaKey

__all__ = ["COPY_OPTIONS", "Batch", "Chunk", "ChunkParser", "Event", "quote_csv"]

# COPY … (FORMAT csv, DELIMITER tab) with a quote character enrich never writes: the TSV's
# backslashes (in URLs, user agents) stay literal, an empty field is NULL.
QUOTE = "\x01"
COPY_OPTIONS = "(FORMAT csv, DELIMITER E'\\t', QUOTE E'\\x01', NULL '')"


@dataclass
class Event:
    """A good line, parsed: its COPY line for the events table and its entities' COPY lines per schema."""

    line: int
    text: str  # the original line (for a bad row, should its entities not fit their table)
    atomic: str
    key: tuple[str, str]  # (event_id, event_fingerprint) as PostgreSQL returns them
    entities: list[tuple[SchemaKey, str]]


@dataclass
class Batch:
    """What a chunk writes when none of its events is loaded yet: the COPY texts, ready.

    The parse makes it (in the loader's process or its helper), so the writer, which waits on
    PostgreSQL in between, has nothing left to do but send it. A natural duplicate in the chunk
    is dropped with its entities (the first line of each event is the one kept).
    """

    keys: set[tuple[str, str]]
    events: str
    entities: dict[SchemaKey, tuple[str, int]]  # schema version → (COPY text, rows)

    @classmethod
    def of(cls, events: Iterable[Event]) -> Batch:
        keys: set[tuple[str, str]] = set()
        atomic: list[str] = []
        by_key: dict[SchemaKey, list[str]] = defaultdict(list)
        for event in events:
            if event.key in keys:
                continue
            keys.add(event.key)
            atomic.append(event.atomic)
            for key, copy_line in event.entities:
                by_key[key].append(copy_line)
        return cls(keys, "".join(atomic), {key: ("".join(lines), len(lines)) for key, lines in by_key.items()})


@dataclass
class Chunk:
    """One chunk's lines, parsed: the good events, and every bad line (line, kind, reason, original, bad row).

    ``events`` is ``None`` when the helper process left them out (:meth:`leave_out_events`): the
    batch holds what is written, and the loader parses ``lines`` again in the rare case it needs
    the events themselves.
    """

    events: list[Event] | None = field(default_factory=list)
    bad: list[tuple[int, str, str, str, dict[str, Any]]] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # rows added per table (once committed)
    batch: Batch | None = None  # the events' COPY texts, for the direct path
    lines: Sequence[tuple[int, bytes]] | None = None  # the raw lines, in the loader's process, when events is None
    left_out: int = 0  # how many events leave_out_events left out

    @property
    def event_count(self) -> int:
        return len(self.events) if self.events is not None else self.left_out

    def leave_out_events(self) -> None:
        """Keep only the batch (a third of the pickled size, and the part sent every time)."""
        if self.batch is not None and self.events is not None:
            self.left_out, self.events = len(self.events), None


@dataclass
class Memo:
    """What one chunk's lines share: parsed entity fields by text; an entity's hash (or failure)
    and the end of its COPY line by its canonical text.

    Real traffic repeats these a lot (every event of a visitor has the same derived contexts,
    every ping of a page the same contexts); a chunk bounds how many are kept.
    """

    fields: entities.FieldMemo = field(default_factory=dict)
    seen: entities.EntityMemo = field(default_factory=dict)
    tails: dict[str, str | tables.RowError] = field(default_factory=dict)


class ChunkParser:
    """Parses chunks against one resolver, keeping what every chunk shares: each schema version's columns, compiled."""

    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self._columns: dict[SchemaKey, list[Any]] = {}  # schema version → its columns
        self.data_rows: dict[SchemaKey, tables.DataRow] = {}  # schema version → its columns, compiled
        self.heads: dict[SchemaKey, str] = {}  # schema version → the COPY fields of its schema_* columns

    def columns(self, key: SchemaKey) -> list[Any]:
        """The columns of ``key``'s own version (a table may have more: a COPY names its columns)."""
        known = self._columns.get(key)
        if known is None:
            known = self._columns[key] = tables.columns(self.resolver.lookup(key))
        return known

    def parse(self, lines: Sequence[tuple[int, bytes]], *, batch: bool) -> Chunk:
        """Parse ``(line number, raw line)`` pairs; with ``batch``, also make the chunk's COPY texts."""
        chunk = Chunk()
        memo = Memo()
        for number, raw in lines:
            self._parse(number, raw, chunk, memo)
        if batch:
            chunk.batch = Batch.of(chunk.events)
        return chunk

    def _parse(self, number: int, raw: bytes, chunk: Chunk, memo: Memo) -> None:
        """Record the line as a good event or as a bad row."""
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            text = raw.decode("utf-8", "replace")
            failure = {"type": "RowDecodingError",
                       "errors": [{"type": "UnhandledRowDecodingError", "message": f"not UTF-8: {exc}"}]}
            chunk.bad.append((number, "loader_parsing_error", f"not UTF-8 ({exc.reason} at byte {exc.start})", text,
                              badrows.parsing_error(text, failure)))
            return
        event = tsv.check_event(line)  # the fields of a valid line, or why it is not one
        if isinstance(event, tsv.ParseFailure):
            failure = event.to_failure()
            chunk.bad.append((number, "loader_parsing_error", _describe_parse_failure(failure), line,
                              badrows.parsing_error(line, failure)))
            return
        found, failures = entities.extract_event(
            {"contexts": event.contexts, "unstruct_event": event.unstruct_event, "derived_contexts": event.derived_contexts},
            self.resolver,
            memo.fields,
            memo.seen,
        )
        rows: list[tuple[SchemaKey, str]] = []
        if not failures:
            # The entity's COPY line is tables.copy_line(meta_values(…) + data_values(…)), put
            # together from parts made once: the schema's fields, the event's root (a UUID and a
            # timestamp, which tsv.check_event has matched: nothing in them to quote), the entity's data.
            root = f'\t"{event.event_id}"\t"{event.collector_tstamp}"\t"'
            for entity in found:
                tail = memo.tails.get(entity.canonical)
                if tail is None:
                    tail = memo.tails[entity.canonical] = self._entity_tail(entity)
                if isinstance(tail, tables.RowError):
                    failures.append(tail.failure())
                    continue
                head = self.heads.get(entity.key)
                if head is None:
                    key = entity.key
                    head = self.heads[key] = tables.copy_fields([key.vendor, key.name, key.format, key.version])
                rows.append((entity.key, f'{head}{root}{entity.hash}"{tail}'))
        if failures:
            chunk.bad.append((number, "loader_iglu_error", _describe_iglu_failures(failures), line,
                              badrows.iglu_error(badrows.event_payload(tsv.split(line)), failures)))
            return
        atomic = event.atomic
        if QUOTE in atomic:  # never written by enrich; quote each field so COPY reads it as data
            atomic = "\t".join(quote_csv(p) for p in atomic.split("\t"))
        key = (event.event_id.lower(), event.event_fingerprint)
        chunk.events.append(Event(number, line, atomic + "\n", key, rows))

    def _entity_tail(self, entity: entities.Entity) -> str | tables.RowError:
        """The end of the entity's COPY line: its own columns' fields (the same on every event carrying it), or why they do not fit."""
        data_row = self.data_rows.get(entity.key)
        if data_row is None:
            data_row = self.data_rows[entity.key] = tables.DataRow(self.columns(entity.key))
        try:
            data_text = data_row.copy_fields(entity.key, entity.data)
        except tables.RowError as exc:
            return exc
        # One column holding NULL is an empty text too, and still a field of the line.
        return f"\t{data_text}\n" if data_row.columns else "\n"


def _describe_parse_failure(failure: dict[str, Any]) -> str:
    if failure["type"] == "NotTSV":
        return "not a tab-separated line"
    if failure["type"] == "FieldNumberMismatch":
        return f"{failure['fieldCount']} fields, an enriched event has 131"
    errors = failure.get("errors") or []
    return "; ".join(f"{e.get('key', '?')}: {e.get('message', '')}" for e in errors[:3]) or failure["type"]


def _describe_iglu_failures(failures: list[dict[str, Any]]) -> str:
    out = []
    for f in failures[:3]:
        error = f.get("error") or {}
        kind = error.get("error", "?") if isinstance(error, dict) else str(error)
        key = f.get("schemaKey") or f.get("schemaCriterion") or ""
        detail = ""
        if "expected" in f:  # WrongType: not JSON, a value its column cannot store …
            kind, detail = "WrongType", f": expected {f['expected']}"
        elif kind == "ValidationError":
            reports = error.get("dataReports") or []
            detail = ": " + "; ".join(f"{r.get('path')}: {r.get('message')}" for r in reports[:2])
        elif kind == "ResolutionError":
            detail = ": schema not found in any repository"
        out.append(f"{kind} {key}{detail}".strip())
    return "; ".join(out)


def quote_csv(value: str) -> str:
    return "" if value == "" else QUOTE + value.replace(QUOTE, QUOTE * 2) + QUOTE
