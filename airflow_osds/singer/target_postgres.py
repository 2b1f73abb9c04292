"""``osds-target-postgres``: a Singer target that streams records into PostgreSQL by ``COPY``.

    tap | osds-target-postgres --config config.json > state-lines

Config (JSON): ``host``, ``port``, ``user``, ``password``, ``database`` (or ``dbname``), any
libpq parameter among ``sslmode``…, or MeltanoLabs target-postgres's ``sqlalchemy_url``; ``default_target_schema`` (default ``raw``),
``batch_size_rows`` (default 100,000), ``hard_delete`` (default false), ``rejects_table``
(default ``_osds_rejects``, in the target schema), ``max_state_lag_seconds`` (default 30).

* **Tables.** A SCHEMA message creates ``<schema>.<table>``, the table named as Singer SDK targets name
  it (:func:`airflow_osds.singer.table_name`: ``public-customers`` → ``customers``) with a column per property (:mod:`airflow_osds.singer.columns`), a primary key
  on ``key_properties``, and ``_sdc_extracted_at``, ``_sdc_table_version``, ``_sdc_deleted_at``.
  A later SCHEMA with more properties adds their columns.
* **Records** are validated against their stream's schema: by the column converters themselves
  when the schema says only types, nullability and ``date-time`` (what taps emit), else by the
  schema compiled once per SCHEMA (fastjsonschema). A valid
  record becomes one COPY line in its stream's batch; an invalid one (or one whose value its
  column cannot hold) goes to the rejects table with the reason and the record's JSON text
  (``text``: jsonb could not hold a ``\\u0000``), never dropped.
* **Batches.** When a stream's batch reaches ``batch_size_rows``, every batch is written in one
  transaction, the rejects with them. A stream without a key is appended by ``COPY``. One with a
  key is deduplicated by key first (the last record wins) and COPYed straight into its table
  while none of its keys is there yet (a first sync); from the first batch whose COPY the primary
  key refuses (rolled back to its savepoint), through a temporary table and ``INSERT … ON
  CONFLICT DO UPDATE``.
* **State** is printed on stdout only after every record received before it is committed: after a
  full write (done by a writer thread while the next batches fill), at the end of the input, and on a STATE message once ``max_state_lag_seconds``
  passed since the last write (so a slow stream still moves its bookmark).
* **ACTIVATE_VERSION** marks (``_sdc_deleted_at``), or with ``hard_delete`` deletes, the
  stream's rows of older versions.

Counts go to stderr as Singer SDK ``METRIC`` lines (``record_count`` per stream). The exit code
is non-zero on a line that is not JSON, a database error or a bad config; nothing secret is
logged. No Airflow imports.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from decimal import Decimal
from typing import IO, Any

from airflow_osds.background import OneWriter
from airflow_osds.postgres import create_once
from airflow_osds.singer import table_name
from airflow_osds.singer.columns import (
    Column,
    Converter,
    Unfit,
    columns_of,
    converters,
    copy_tail,
    json_text,
    line_function,
    quote_ident,
    strict_converters,
)

__all__ = ["TargetConfig", "TargetError", "main", "run"]

log = logging.getLogger("osds-target-postgres")

_EXTRACTED_AT = Column("_sdc_extracted_at", "TIMESTAMPTZ")
_META = (_EXTRACTED_AT, Column("_sdc_table_version", "BIGINT"), Column("_sdc_deleted_at", "TIMESTAMPTZ"))
_FORMATS = {"singer.decimal": r"^-?[0-9]+(\.[0-9]+)?$"}
_LIBPQ = ("host", "port", "user", "password", "dbname", "sslmode", "sslrootcert", "sslcert", "sslkey",
          "connect_timeout", "application_name", "options")


class TargetError(Exception):
    """Input or configuration the target cannot work with; the message says what to fix."""


@dataclass
class TargetConfig:
    conninfo: dict[str, Any]
    schema: str = "raw"
    batch_size_rows: int = 100_000
    hard_delete: bool = False
    rejects_table: str = "_osds_rejects"
    max_state_lag_seconds: float = 30.0

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TargetConfig:
        if not isinstance(raw, dict):
            raise TargetError("the config must be a JSON object")
        conninfo = {k: raw[k] for k in _LIBPQ if raw.get(k) not in (None, "")}
        if raw.get("database") and "dbname" not in conninfo:
            conninfo["dbname"] = raw["database"]
        url = raw.get("sqlalchemy_url")
        if url and "host" not in conninfo:  # MeltanoLabs target-postgres's setting: `postgresql+psycopg://…`
            if not isinstance(url, str) or not url.startswith(("postgresql", "postgres:")):
                raise TargetError("sqlalchemy_url must be a postgresql:// URL")
            conninfo["conninfo"] = re.sub(r"^postgres(?:ql)?(?:\+\w+)?://", "postgresql://", url)
        conninfo.setdefault("application_name", "osds-target-postgres")
        batch = raw.get("batch_size_rows", 100_000)
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise TargetError(f"batch_size_rows must be a positive integer, got {batch!r}")
        return cls(conninfo=conninfo, schema=str(raw.get("default_target_schema") or "raw"), batch_size_rows=batch,
                   hard_delete=bool(raw.get("hard_delete", False)),
                   rejects_table=str(raw.get("rejects_table") or "_osds_rejects"),
                   max_state_lag_seconds=float(raw.get("max_state_lag_seconds", 30.0)))


@dataclass
class _Stream:
    name: str
    table: str
    keys: list[str]
    columns: list[Column]
    schema: dict[str, Any]
    converters: list[Converter]
    checked: bool  # the converters check the whole schema: no validator per record
    lines: list[str] = field(default_factory=list)
    by_key: dict[tuple[Any, ...], str] = field(default_factory=dict)
    loaded: int = 0
    direct: bool = True  # COPY straight into the table until a key is found there already

    @cached_property
    def validate(self) -> Callable[[Any], Any]:
        import fastjsonschema

        return fastjsonschema.compile(self.schema, formats=_FORMATS)

    @cached_property
    def line(self) -> Callable[[Any, str], str]:
        """The record's COPY line (:func:`~airflow_osds.singer.columns.line_function`, generated once)."""
        return line_function(self.converters)

    @cached_property
    def key_of(self) -> Callable[[dict[str, Any]], Any]:
        """The record's key: its one key property's value, or the tuple of them (a missing one is None)."""
        if len(self.keys) == 1:
            (name,) = self.keys
            return lambda record: record.get(name)
        names = tuple(self.keys)
        return lambda record: tuple(record.get(k) for k in names)

    @property
    def pending(self) -> int:
        return len(self.by_key) if self.keys else len(self.lines)


# The metadata columns of a record without time_extracted or version: nearly all of them.
_BARE_TAIL = copy_tail(("\\N", "\\N", "\\N"))


def _tail(extracted: Any, version: Any) -> str:
    return copy_tail((
        _EXTRACTED_AT.convert(extracted) if isinstance(extracted, str) else "\\N",
        str(version) if isinstance(version, int) and not isinstance(version, bool) else "\\N",
        "\\N",
    ))


class _Target:
    def __init__(self, conn: Any, config: TargetConfig, out: IO[str], writer: OneWriter) -> None:
        self.conn = conn
        self.writer = writer
        self.config = config
        self.out = out
        self.streams: dict[str, _Stream] = {}
        self.rejects: list[tuple[str, str, str]] = []
        self.state: str | None = None  # the latest STATE value (JSON), not printed yet
        self.last_write = time.monotonic()
        self.rejected = 0
        create_once(conn, [f"CREATE SCHEMA IF NOT EXISTS {quote_ident(config.schema)}",
                           f"CREATE TABLE IF NOT EXISTS {self._qualified(config.rejects_table)} (stream text NOT NULL, "
                           "reason text NOT NULL, record text, received_at timestamptz NOT NULL DEFAULT now())"])

    def _qualified(self, table: str) -> str:
        return f"{quote_ident(self.config.schema)}.{quote_ident(table)}"

    # -- messages --------------------------------------------------------------------------
    def handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "RECORD":  # nearly every message: before the case-insensitive comparison below
            self.record(message)
            return
        kind = str(kind or "").upper()
        if kind == "RECORD":
            self.record(message)
        elif kind == "SCHEMA":
            self.schema(message)
        elif kind == "STATE":
            self.state = _json(message.get("value"))
            if time.monotonic() - self.last_write >= self.config.max_state_lag_seconds:
                self.write_all()
        elif kind == "ACTIVATE_VERSION":
            self.activate_version(message)
        # Other types (BATCH, custom) are allowed by the spec and ignored.

    def schema(self, message: dict[str, Any]) -> None:
        import fastjsonschema

        name = message.get("stream")
        schema = message.get("schema")
        if not isinstance(name, str) or not isinstance(schema, dict):
            raise TargetError(f"a SCHEMA message needs 'stream' and 'schema': {str(message)[:200]}")
        keys = list(message.get("key_properties") or [])
        try:
            columns = columns_of(schema)
        except ValueError as exc:
            raise TargetError(f"stream {name}: {exc}") from None
        missing = [k for k in keys if k not in {c.name for c in columns}]
        if missing:
            raise TargetError(f"stream {name}: key_properties {missing} are not properties of its schema")
        strict = strict_converters(schema)
        stream = _Stream(name, table_name(name), keys, columns, schema, strict or converters(columns), strict is not None)
        try:
            stream.validate  # noqa: B018 - compiled now, so a bad schema fails here, not at its first record
        except fastjsonschema.JsonSchemaDefinitionException as exc:
            raise TargetError(f"stream {name}: its schema does not compile: {exc}") from None
        self.sync()  # the old schema's records first, and the connection free for the DDL
        self._prepare_table(stream)
        self.streams[name] = stream

    def record(self, message: dict[str, Any]) -> None:
        # Nearly every message: kept to the few lookups a record needs (this is the target's hot loop).
        get = message.get
        name = get("stream")
        stream = self.streams.get(name)  # type: ignore[arg-type]
        record = get("record")
        if stream is None:
            self.rejects.append((str(name), "no SCHEMA message for this stream before its records", _json(record)))
            return
        if type(record) is not dict:
            self._reject(stream, "the record is not a JSON object", record)
            return
        extracted = get("time_extracted")
        version = get("version")
        try:
            if not stream.checked:
                stream.validate(record)
            line = stream.line(record, _BARE_TAIL if extracted is None and version is None else _tail(extracted, version))
        except Exception as exc:  # fastjsonschema's JsonSchemaValueException, Unfit
            if not _is_record_error(exc):
                raise
            self._reject(stream, _reason(stream, exc, record), record)
            return
        if stream.keys:
            by_key = stream.by_key
            key = stream.key_of(record)
            by_key.pop(key, None)  # the last record of a key wins, in arrival order
            by_key[key] = line
            if len(by_key) >= self.config.batch_size_rows:
                self.write_all()
        else:
            stream.lines.append(line)
            if len(stream.lines) >= self.config.batch_size_rows:
                self.write_all()

    def _reject(self, stream: _Stream, reason: str, record: Any) -> None:
        self.rejects.append((stream.name, reason, _json(record)))

    def activate_version(self, message: dict[str, Any]) -> None:
        stream = self.streams.get(message.get("stream"))  # type: ignore[arg-type]
        version = message.get("version")
        if stream is None or not isinstance(version, int):
            raise TargetError(f"ACTIVATE_VERSION for an unknown stream or without a version: {str(message)[:200]}")
        self.sync()
        table = self._qualified(stream.table)
        with self.conn.transaction():
            if self.config.hard_delete:
                self.conn.execute(f"DELETE FROM {table} WHERE _sdc_table_version < %s", (version,))
            else:
                self.conn.execute(f"UPDATE {table} SET _sdc_deleted_at = now() WHERE _sdc_table_version < %s "
                                  "AND _sdc_deleted_at IS NULL", (version,))

    # -- writing ---------------------------------------------------------------------------
    def _prepare_table(self, stream: _Stream) -> None:
        table = self._qualified(stream.table)
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (table,))
            existing = {r[0] for r in self.conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped",
                (table,)).fetchall()}  # fmt: skip
            wanted = [*stream.columns, *_META]
            if not existing:
                parts = [f"{quote_ident(c.name)} {c.sql_type}" for c in wanted]
                if stream.keys:
                    parts.append(f"PRIMARY KEY ({', '.join(quote_ident(k) for k in stream.keys)})")
                self.conn.execute(f"CREATE TABLE {table} ({', '.join(parts)})")
                return
            for column in wanted:
                if column.name not in existing:
                    log.info("%s: adding column %s %s", table, column.name, column.sql_type)
                    self.conn.execute(f"ALTER TABLE {table} ADD COLUMN {quote_ident(column.name)} {column.sql_type}")

    def write_all(self) -> None:
        """Hand every batch, the rejects and the latest state to the writer; the next batches fill meanwhile."""
        batches = []
        for stream in self.streams.values():
            if stream.pending:
                batches.append((stream, stream.by_key.values() if stream.keys else stream.lines, stream.pending))
                stream.lines, stream.by_key = [], {}
        rejects, self.rejects = self.rejects, []
        state, self.state = self.state, None
        self.last_write = time.monotonic()
        if batches or rejects or state is not None:
            self.writer.submit(self._commit, batches, rejects, state)

    def _commit(self, batches: list[tuple[_Stream, Iterable[str], int]], rejects: list[tuple[str, str, str]],
                state: str | None) -> None:
        """Write in one transaction, then print the state: every record received before it is committed."""
        with self.conn.transaction():
            for stream, lines, _ in batches:
                self._write(stream, "".join(lines))
            if rejects:
                self.conn.cursor().executemany(
                    f"INSERT INTO {self._qualified(self.config.rejects_table)} (stream, reason, record) "
                    "VALUES (%s, %s, %s)", rejects)
        for stream, _, count in batches:
            stream.loaded += count
            _metric(stream.name, count)
        if rejects:
            self.rejected += len(rejects)
            log.warning("%d record(s) rejected so far, see %s.%s", self.rejected, self.config.schema,
                        self.config.rejects_table)
        if state is not None:
            self.out.write(state + "\n")
            self.out.flush()

    def sync(self) -> None:
        """Everything received so far committed (before the connection is used here)."""
        self.write_all()
        self.writer.wait()

    def _write(self, stream: _Stream, text: str) -> None:
        from psycopg.errors import UniqueViolation

        names = ", ".join(quote_ident(c.name) for c in [*stream.columns, *_META])
        table = self._qualified(stream.table)
        if not stream.keys:
            with self.conn.cursor() as cur, cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                copy.write(text)
            return
        if stream.direct:  # nothing there yet for these keys, as in a first sync: straight in
            try:
                with self.conn.transaction(), self.conn.cursor() as cur:
                    with cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                        copy.write(text)
                return
            except UniqueViolation:
                stream.direct = False  # some keys are there: upsert this batch and the next ones
        stage = quote_ident(f"_osds_stage_{stream.table}")
        self.conn.execute(f"CREATE TEMP TABLE {stage} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DROP")
        with self.conn.cursor() as cur, cur.copy(f"COPY {stage} ({names}) FROM STDIN") as copy:
            copy.write(text)
        keys = ", ".join(quote_ident(k) for k in stream.keys)
        updates = ", ".join(f"{quote_ident(c.name)} = EXCLUDED.{quote_ident(c.name)}"
                            for c in [*stream.columns, *_META] if c.name not in stream.keys)
        action = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
        self.conn.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM {stage} ON CONFLICT ({keys}) {action}")
        self.conn.execute(f"DROP TABLE {stage}")


def _json(value: Any) -> str:
    try:
        return json_text(value)
    except (TypeError, OverflowError):
        return json.dumps(str(value))


def _is_record_error(exc: Exception) -> bool:
    import fastjsonschema

    return isinstance(exc, (fastjsonschema.JsonSchemaValueException, Unfit))


def _reason(stream: _Stream, exc: Exception, record: Any) -> str:
    import fastjsonschema

    if isinstance(exc, Unfit) and stream.checked:  # the validator words a schema violation the usual way
        try:
            stream.validate(record)
        except fastjsonschema.JsonSchemaValueException as violation:
            exc = violation
    if isinstance(exc, fastjsonschema.JsonSchemaValueException):
        return f"violates its schema: {exc.message}"
    return f"a value its column cannot hold: {exc}"


def _metric(stream: str, count: int) -> None:
    log.info("METRIC: %s", json.dumps({"type": "counter", "metric": "record_count", "value": count,
                                       "tags": {"stream": stream}}, separators=(",", ":")))


def run(lines: Iterable[bytes], config: TargetConfig, out: IO[str]) -> dict[str, int]:
    """Load Singer messages; returns the records loaded per stream (rejects: key ``"<rejected>"``)."""
    import msgspec.json
    import psycopg

    # Numbers with a fraction as Decimal: a NUMERIC column gets the digits the tap sent, not a float's.
    decode = msgspec.json.Decoder(float_hook=Decimal).decode
    with psycopg.connect(autocommit=True, **config.conninfo) as conn, OneWriter("osds-target-writer") as writer:
        target = _Target(conn, config, out, writer)
        record = target.record
        for number, line in enumerate(lines, 1):
            try:
                message = decode(line)
            except msgspec.DecodeError as exc:
                if not line.strip():
                    continue
                raise TargetError(f"input line {number} is not a JSON message: {exc}") from None
            if type(message) is not dict:
                raise TargetError(f"input line {number} is not a JSON object")
            if message.get("type") == "RECORD":  # the hot path, without handle()'s dispatch
                record(message)
            else:
                target.handle(message)
        target.sync()
    counts = {name: s.loaded for name, s in target.streams.items()}
    counts["<rejected>"] = target.rejected
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="osds-target-postgres", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="the target's JSON config file")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        with open(args.config, encoding="utf-8") as f:
            config = TargetConfig.from_dict(json.load(f))
    except (OSError, ValueError, TargetError) as exc:
        log.error("bad config %s: %s", args.config, exc)
        return 2
    try:
        counts = run(sys.stdin.buffer, config, sys.stdout)
    except TargetError as exc:
        log.error("%s", exc)
        return 1
    except Exception as exc:  # a database error: say which, without the connection's secrets
        log.error("failed: %s: %s", type(exc).__name__, str(exc).strip()[:2000])
        return 1
    log.info("loaded %s", ", ".join(f"{k}={v}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
