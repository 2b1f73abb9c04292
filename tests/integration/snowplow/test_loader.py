"""The loader against the real embedded PostgreSQL: types, bad rows, entity tables and their migration,
idempotent re-loads, and a real crash (SIGKILL) in the middle of a file followed by a retry."""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest

from airflow_osds.snowplow import fields, generate, tsv
from airflow_osds.snowplow.iglu import Resolver
from airflow_osds.snowplow.loader import BadRowsExceededError, LoadOptions, SourceReadError, load
from airflow_osds.snowplow.sources import local_files

START = dt.datetime(2026, 11, 24, 10, 0, tzinfo=dt.UTC)


@pytest.fixture
def db(warehouse: Any, request: pytest.FixtureRequest) -> Any:
    """A psycopg connection to a fresh schema-less database per test (the module's warehouse DB, reset)."""
    with warehouse.stack.postgres.connect(warehouse.dbname, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS atomic CASCADE")
        conn.execute("DROP SCHEMA IF EXISTS osds_state CASCADE")
        yield conn


def _write(path: Path, lines: list[str], *, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(line + "\n" for line in lines).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def _count(conn: Any, sql: str) -> int:
    return conn.execute(sql).fetchone()[0]


def test_every_atomic_column_has_its_type_and_value(db: Any, registry: Path, tmp_path: Path) -> None:
    lines = list(generate.generate(300, seed=1, start=START))
    report = load(db, local_files(_write(tmp_path / "in" / "a.tsv", lines)), Resolver.from_sources([registry]))
    assert (report.events, report.bad_rows, report.duplicates) == (300, 0, 0)
    names = [f.name for f in fields.ATOMIC_FIELDS]
    padded = {f.name for f in fields.ATOMIC_FIELDS if (f.sql_type or "").startswith("CHAR(")}
    rows = {str(r[names.index("event_id")]): r for r in db.execute(
        "SELECT " + ", ".join(f'"{n}"' for n in names) + " FROM atomic.events").fetchall()}
    for line in lines:
        expected = tsv.decode(tsv.split(line))
        row = rows[expected["event_id"]]
        for name, got in zip(names, row, strict=True):
            want = expected[name]
            if name in padded and got is not None:
                got = got.rstrip(" ")  # CHAR(n) pads, as in the Postgres Loader's table
            if isinstance(want, dt.datetime):
                want = want.astimezone(dt.UTC).replace(tzinfo=None)  # TIMESTAMP without time zone, in UTC
            if name == "event_id":
                got, want = str(got), str(want)
            if isinstance(want, float) and got is not None:
                assert got == pytest.approx(want), name
            else:
                assert got == want, (name, got, want)


def test_entities_go_to_one_table_per_model_with_root_keys(db: Any, registry: Path, tmp_path: Path) -> None:
    lines = list(generate.generate(500, seed=2, start=START))
    report = load(db, local_files(_write(tmp_path / "in" / "a.tsv", lines)), Resolver.from_sources([registry]))
    web_page = "atomic.com_snowplowanalytics_snowplow_web_page_1"
    expected = Counter()
    for line in lines:
        parts = tsv.split(line)
        for text in (parts[fields.FIELD_INDEX["contexts"]], parts[fields.FIELD_INDEX["derived_contexts"]]):
            if text:
                for item in json.loads(text)["data"]:
                    vendor, name, _, version = item["schema"].removeprefix("iglu:").split("/")
                    expected[(vendor, name, version.split("-")[0])] += 1
    assert report.table_rows[web_page] == expected[("com.snowplowanalytics.snowplow", "web_page", "1")] > 0
    assert _count(db, f"SELECT count(*) FROM {web_page}") == report.table_rows[web_page]
    # every entity joins back to its event on (root_id, root_tstamp) = (event_id, collector_tstamp)
    orphans = _count(db, f"SELECT count(*) FROM {web_page} w LEFT JOIN atomic.events e "
                         "ON e.event_id = w.root_id AND e.collector_tstamp = w.root_tstamp WHERE e.event_id IS NULL")
    assert orphans == 0
    comment = db.execute(f"SELECT obj_description('{web_page}'::regclass, 'pg_class')").fetchone()[0]
    assert comment.startswith("iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-")


def test_every_kind_of_bad_line_is_kept_with_its_reason(db: Any, registry: Path, tmp_path: Path) -> None:
    labelled = list(generate.generate_labelled(200, seed=3, start=START, bad=12))
    lines = [line for _, line in labelled]
    good = [line for kind, line in labelled if kind == generate.GOOD]
    report = load(db, local_files(_write(tmp_path / "in" / "a.tsv", lines)), Resolver.from_sources([registry]),
                  LoadOptions(max_bad_ratio=None))
    assert report.events == len(good) and report.bad_rows == len(lines) - len(good) > 0
    rows = db.execute("SELECT line, kind, reason, original, bad_row FROM atomic.osds_bad_rows ORDER BY line").fetchall()
    assert len(rows) == report.bad_rows
    for number, kind, reason, original, bad_row in rows:
        assert original == lines[number - 1], "the original line is kept as it was"
        assert bad_row["schema"].startswith(f"iglu:com.snowplowanalytics.snowplow.badrows/{kind}/jsonschema/")
        assert reason and not reason.startswith("?"), reason
        if '"expected"' in json.dumps(bad_row["data"]["failure"]):  # invalid JSON: WrongType, and what was expected
            assert reason.startswith("WrongType iglu:") and "expected self-describing JSON" in reason, reason
    kinds = Counter(r[1] for r in rows)
    assert set(kinds) == {"loader_parsing_error", "loader_iglu_error"}
    failures = {json.dumps(r[4]["data"]["failure"])[:60] for r in rows}
    assert any("NotTSV" in f for f in failures) and any("FieldNumberMismatch" in f for f in failures)
    assert any("RowDecodingError" in f for f in failures)
    iglu = [r[4]["data"]["failure"] for r in rows if r[1] == "loader_iglu_error"]
    errors = {e["error"]["error"] if isinstance(e.get("error"), dict) else e.get("error") for f in iglu for e in f}
    assert {"ValidationError", "ResolutionError"} <= errors


def test_bad_rows_past_the_threshold_fail_after_loading_the_good_events(db: Any, registry: Path, tmp_path: Path) -> None:
    lines = list(generate.generate(100, seed=4, start=START, bad=12))
    with pytest.raises(BadRowsExceededError, match="more than max_bad_rows=2") as info:
        load(db, local_files(_write(tmp_path / "in" / "a.tsv", lines)), Resolver.from_sources([registry]),
             LoadOptions(max_bad_rows=2, max_bad_ratio=None))
    assert info.value.report.events == _count(db, "SELECT count(*) FROM atomic.events") > 0


def test_reloading_adds_nothing_and_a_copied_file_brings_only_duplicates(db: Any, registry: Path, tmp_path: Path) -> None:
    lines = list(generate.generate(400, seed=5, start=START, bad=4))
    first = _write(tmp_path / "in" / "a.tsv.gz", lines, gz=True)
    resolver = Resolver.from_sources([registry])
    options = LoadOptions(max_bad_ratio=None, chunk_lines=97)
    one = load(db, local_files(tmp_path / "in"), resolver, options)
    counts = _table_counts(db)
    again = load(db, local_files(tmp_path / "in"), resolver, options)
    assert again.loaded_files == [] and "already loaded" in (again.files[0].skipped or "")
    assert _table_counts(db) == counts
    shutil.copy(first, tmp_path / "in" / "b.tsv.gz")  # the same events under another name
    copy = load(db, local_files(tmp_path / "in"), resolver, options)
    assert [f.uri.rsplit("/", 1)[-1] for f in copy.loaded_files] == ["b.tsv.gz"]
    assert copy.events == 0 and copy.duplicates == one.events
    after = _table_counts(db)
    bad_table = "atomic.osds_bad_rows"
    assert {k: v for k, v in after.items() if k != bad_table} == {k: v for k, v in counts.items() if k != bad_table}
    assert after[bad_table] == 2 * counts[bad_table], "bad rows are kept per file and line"
    ledger = db.execute("SELECT uri, status, checksum, events FROM osds_state.snowplow_files ORDER BY uri").fetchall()
    assert [r[1] for r in ledger] == ["done", "done"] and ledger[0][2] == ledger[1][2] and ledger[0][2].startswith("sha256:")


def test_a_synthetic_duplicate_keeps_both_events_and_its_shared_context_once(
    db: Any, registry: Path, tmp_path: Path
) -> None:
    """Same event id and collector time, another fingerprint: two events; their identical context is one row.

    The entity's (root_id, root_tstamp, hash) is then taken, so the direct COPY of the second
    chunk's entities is refused and they go through the staging path.
    """
    (line,) = [x for x in generate.generate(30, seed=8, start=START) if "web_page" in x.split("\t")[fields.FIELD_INDEX["contexts"]]][:1]
    parts = line.split("\t")
    twin = parts.copy()
    twin[fields.FIELD_INDEX["event_fingerprint"]] = "f" * 32
    resolver = Resolver.from_sources([registry])
    options = LoadOptions(max_bad_ratio=None, chunk_lines=1)  # each in its own chunk: the second one conflicts
    report = load(db, local_files(_write(tmp_path / "in" / "a.tsv", [line, "\t".join(twin)])), resolver, options)
    assert (report.events, report.duplicates, report.bad_rows) == (2, 0, 0)
    assert _count(db, "SELECT count(*) FROM atomic.events") == 2
    assert _count(db, "SELECT count(*) FROM atomic.com_snowplowanalytics_snowplow_web_page_1") == 1
    assert report.table_rows["atomic.com_snowplowanalytics_snowplow_web_page_1"] == 1


def test_an_event_loaded_before_sends_the_file_through_staging_without_duplicates(
    db: Any, registry: Path, tmp_path: Path, warehouse: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """One event of the file is there already (another file carried it, another loader is at work):
    the straight COPY is refused by the unique index, and the file is deduplicated through staging."""
    lines = list(generate.generate(50, seed=9, start=START))
    first = tsv.decode(lines[20].split("\t"))
    resolver = Resolver.from_sources([registry])
    load(db, [], resolver)  # creates atomic.events
    with warehouse.stack.postgres.connect(warehouse.dbname, autocommit=True) as other:
        other.execute("INSERT INTO atomic.events (app_id, collector_tstamp, event_id, v_collector, v_etl, "
                      "event_fingerprint) VALUES ('other', %s, %s, 'x', 'x', %s)",
                      (first["collector_tstamp"], first["event_id"], first["event_fingerprint"]))
    options = LoadOptions(max_bad_ratio=None, chunk_lines=10)
    with caplog.at_level("INFO", logger="airflow_osds.snowplow.loader"):
        report = load(db, local_files(_write(tmp_path / "in" / "a.tsv", lines)), resolver, options)
    assert "some events of this file are loaded already; deduplicating through staging" in caplog.text
    assert (report.events, report.duplicates, report.bad_rows) == (len(lines) - 1, 1, 0)
    assert _count(db, "SELECT count(*) FROM atomic.events") == len(lines)
    assert _count(db, "SELECT count(*) FROM atomic.events WHERE app_id = 'other'") == 1
    # Its entities are not loaded a second time either: only the 49 new events brought theirs.
    assert _count(db, "SELECT count(DISTINCT root_id) FROM atomic.com_snowplowanalytics_snowplow_web_page_1") == len(lines) - 1


def test_a_file_read_while_it_was_written_loads_whole_later_without_a_stale_bad_row(
    db: Any, registry: Path, tmp_path: Path
) -> None:
    """A plain file read mid-write ends in a cut line (a bad row); once whole, its size changed and it is
    read again from the top: the line loads and its bad row goes, nothing is duplicated."""
    lines = list(generate.generate(30, seed=12, start=START))
    whole = "".join(line + "\n" for line in lines)
    cut = len(whole) - len(lines[-1]) // 2 - 1  # halfway through the last line
    path = tmp_path / "in" / "a.tsv"
    path.parent.mkdir()
    path.write_text(whole[:cut])
    resolver = Resolver.from_sources([registry])
    options = LoadOptions(max_bad_ratio=None, chunk_lines=7)
    first = load(db, local_files(path), resolver, options)
    assert (first.events, first.bad_rows) == (len(lines) - 1, 1)
    assert db.execute("SELECT line, kind FROM atomic.osds_bad_rows").fetchall() == [(len(lines), "loader_parsing_error")]
    path.write_text(whole)
    again = load(db, local_files(path), resolver, options)
    assert (again.events, again.duplicates, again.bad_rows) == (1, len(lines) - 1, 0)
    assert _count(db, "SELECT count(*) FROM atomic.events") == len(lines)
    assert _count(db, "SELECT count(*) FROM atomic.osds_bad_rows") == 0
    ledger = db.execute("SELECT status, events, duplicates, bad_rows FROM osds_state.snowplow_files").fetchall()
    assert ledger == [("done", 1, len(lines) - 1, 0)]


def _table_counts(conn: Any) -> dict[str, int]:
    names = [r[0] for r in conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'atomic' ORDER BY 1").fetchall()]
    return {f"atomic.{n}": _count(conn, f'SELECT count(*) FROM atomic."{n}"') for n in names}


def test_a_new_revision_adds_columns_and_a_new_model_gets_its_own_table(db: Any, registry: Path, tmp_path: Path) -> None:
    resolver = Resolver.from_sources([registry])
    base = list(generate.generate(3000, seed=6, start=START))
    assert any("com.acme/cart/jsonschema/1-0-0" in line for line in base), "the generator sends the cart context"
    load(db, local_files(_write(tmp_path / "in" / "a.tsv", base)), resolver)
    table = "com_acme_cart_1"
    before = _columns(db, table)
    old_rows = _count(db, f"SELECT count(*) FROM atomic.{table}")
    newer = list(generate.generate(3000, seed=61, start=START + dt.timedelta(days=1), cart_version="1-0-1"))
    report = load(db, local_files(_write(tmp_path / "in" / "b.tsv", newer)), resolver)
    assert report.bad_rows == 0 and report.table_rows[f"atomic.{table}"] > 0
    added = [c for c in _columns(db, table) if c not in before]
    assert added, "1-0-1 adds a field: its column is added"
    assert db.execute(f"SELECT obj_description('atomic.{table}'::regclass, 'pg_class')").fetchone()[0].endswith("1-0-1")
    nulls = _count(db, f'SELECT count(*) FROM atomic.{table} WHERE "{added[0]}" IS NULL')
    assert nulls >= old_rows > 0, "rows loaded before the migration have NULL in the new column"
    major = list(generate.generate(3000, seed=62, start=START + dt.timedelta(days=2), cart_version="2-0-0"))
    load(db, local_files(_write(tmp_path / "in" / "c.tsv", major)), resolver)
    assert _count(db, "SELECT count(*) FROM atomic.com_acme_cart_2") > 0
    assert _count(db, f"SELECT count(*) FROM atomic.{table}") == old_rows + report.table_rows[f"atomic.{table}"]


def test_an_entity_of_one_column_loads_whether_its_value_is_there_or_not(db: Any, registry: Path, tmp_path: Path) -> None:
    """A NULL in an entity's only data column is still a field of its COPY line."""
    flag = "iglu:com.acme/flag/jsonschema/1-0-0"
    path = registry / "schemas" / "com.acme" / "flag" / "jsonschema" / "1-0-0"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({
        "$schema": "http://iglucentral.com/schemas/com.snowplowanalytics.self-desc/schema/jsonschema/1-0-0#",
        "self": {"vendor": "com.acme", "name": "flag", "format": "jsonschema", "version": "1-0-0"},
        "type": "object", "properties": {"label": {"type": "string", "maxLength": 20}}, "additionalProperties": False,
    }))
    index = fields.FIELD_INDEX["contexts"]
    lines = []
    for number, line in enumerate(generate.generate(40, seed=8, start=START)):
        parts = line.split("\t")
        contexts = json.loads(parts[index]) if parts[index] else {
            "schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0", "data": []}
        contexts["data"].append({"schema": flag, "data": {"label": f"n{number}"} if number % 2 else {}})
        parts[index] = json.dumps(contexts)
        lines.append("\t".join(parts))
    report = load(db, local_files(_write(tmp_path / "in" / "a.tsv", lines)), Resolver.from_sources([registry]))
    assert (report.events, report.bad_rows) == (40, 0)
    labels = Counter(r[0] is None for r in db.execute("SELECT label FROM atomic.com_acme_flag_1").fetchall())
    assert labels == {True: 20, False: 20}


def _columns(conn: Any, table: str) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'atomic' AND table_name = %s "
        "ORDER BY ordinal_position", (table,)).fetchall()]  # fmt: skip


CRASH_CHILD = r"""
import sys, json
from airflow_osds.snowplow.iglu import Resolver
from airflow_osds.snowplow.loader import LoadOptions, load
from airflow_osds.snowplow.sources import local_files
import psycopg
conn = psycopg.connect(sys.argv[1], autocommit=True)
load(conn, local_files(sys.argv[2]), Resolver.from_sources([sys.argv[3]]), LoadOptions(chunk_lines=500, max_bad_ratio=None))
"""


def test_a_crash_in_the_middle_of_a_file_then_a_retry_loads_everything_exactly_once(
    db: Any, warehouse: Any, registry: Path, tmp_path: Path
) -> None:
    labelled = list(generate.generate_labelled(20_000, seed=7, start=START, bad=40))
    lines = [line for _, line in labelled]
    good = [line for kind, line in labelled if kind == generate.GOOD]
    path = _write(tmp_path / "in" / "big.tsv", lines)
    dsn = warehouse.stack.postgres.uri(warehouse.dbname)
    child = subprocess.Popen([sys.executable, "-c", CRASH_CHILD, dsn, str(path), str(registry)],
                             env={**os.environ, "PYTHONPATH": os.getcwd()})
    deadline = time.monotonic() + 120
    committed = 0
    while time.monotonic() < deadline and child.poll() is None:
        row = db.execute("SELECT lines_done, status FROM osds_state.snowplow_files").fetchone() \
            if _count(db, "SELECT count(*) FROM pg_tables WHERE schemaname = 'osds_state'") else None
        if row and 2_000 <= row[0] and row[1] == "loading":
            child.send_signal(signal.SIGKILL)  # a real crash: no cleanup, an open transaction rolled back
            committed = row[0]
            break
        time.sleep(0.02)
    child.wait(timeout=30)
    assert committed and committed < len(lines), "the child was killed in the middle of the file"
    events_at_crash = _count(db, "SELECT count(*) FROM atomic.events")
    report = load(db, local_files(path), Resolver.from_sources([registry]), LoadOptions(chunk_lines=500, max_bad_ratio=None))
    assert report.files[0].resumed_after >= committed
    assert _count(db, "SELECT count(*) FROM atomic.events") == len(good) > events_at_crash
    assert _count(db, "SELECT count(DISTINCT (event_id, event_fingerprint)) FROM atomic.events") == len(good)
    assert _count(db, "SELECT count(*) FROM atomic.osds_bad_rows") == len(lines) - len(good)
    web_page = "atomic.com_snowplowanalytics_snowplow_web_page_1"
    assert _count(db, f"SELECT count(*) FROM {web_page}") == _count(
        db, f"SELECT count(*) FROM (SELECT DISTINCT root_id, root_tstamp FROM {web_page}) d"), "no context twice"
    state = db.execute("SELECT status, lines_done FROM osds_state.snowplow_files").fetchone()
    assert state == ("done", len(lines))


def _whole_lines_before_the_break(path: Path) -> int:
    """Lines a reader gets out of a cut gzip file before it fails (the last one may be cut short)."""
    count = 0
    with gzip.open(path, "rb") as source, contextlib.suppress(EOFError):  # the break ends the count
        for _ in source:
            count += 1
    return count


def test_a_truncated_file_fails_naming_it_keeps_what_was_read_and_loads_whole_once_complete(
    db: Any, registry: Path, tmp_path: Path
) -> None:
    lines = list(generate.generate(3_000, seed=8, start=START))
    whole = gzip.compress("".join(line + "\n" for line in lines).encode())
    path = tmp_path / "in" / "part.tsv.gz"
    path.parent.mkdir()
    path.write_bytes(whole[: len(whole) // 2])  # still being uploaded, or cut off
    resolver, options = Resolver.from_sources([registry]), LoadOptions(chunk_lines=250)
    with pytest.raises(SourceReadError, match=r"part\.tsv\.gz cannot be read past line [\d,]+: EOFError"):
        load(db, local_files(path), resolver, options)
    partial = _count(db, "SELECT count(*) FROM atomic.events")
    readable = _whole_lines_before_the_break(path)
    assert 0 < readable < len(lines)
    assert partial in (readable, readable - 1), "every whole line before the break is loaded (the last may be cut)"
    assert db.execute("SELECT status FROM osds_state.snowplow_files").fetchone() == ("loading",)
    path.write_bytes(whole)  # the complete file: another size, so it is read again from the top
    report = load(db, local_files(path), resolver, options)
    assert report.events == len(lines) - partial and report.duplicates == partial
    assert _count(db, "SELECT count(*) FROM atomic.events") == len(lines)
