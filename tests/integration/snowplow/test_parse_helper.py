"""Loads whose chunks are parsed in the helper process, on the real embedded PostgreSQL: the same rows
as a load parsed in one process, through every path that needs the events back (a file loaded
again, a table that refuses a version), and no helper left behind by a loader that is killed."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from airflow_osds.snowplow import fields, generate
from airflow_osds.snowplow.iglu import Resolver
from airflow_osds.snowplow.loader import LoadOptions, load
from airflow_osds.snowplow.sources import local_files

START = dt.datetime(2026, 11, 24, 10, 0, tzinfo=dt.UTC)
COUNTER = "iglu:com.acme/counter/jsonschema/1-0-{}"


@pytest.fixture
def db(warehouse: Any) -> Any:
    with warehouse.stack.postgres.connect(warehouse.dbname, autocommit=True) as conn:
        yield conn


def _reset(conn: Any) -> None:
    conn.execute("DROP SCHEMA IF EXISTS atomic CASCADE")
    conn.execute("DROP SCHEMA IF EXISTS osds_state CASCADE")


def _counter_schemas(registry: Path) -> None:
    """``count`` is an integer in 1-0-0 and a string in 1-0-1: a type change the entity table refuses."""
    for patch, kind in ((0, "integer"), (1, "string")):
        path = registry / "schemas" / "com.acme" / "counter" / "jsonschema" / f"1-0-{patch}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({
            "$schema": "http://iglucentral.com/schemas/com.snowplowanalytics.self-desc/schema/jsonschema/1-0-0#",
            "self": {"vendor": "com.acme", "name": "counter", "format": "jsonschema", "version": f"1-0-{patch}"},
            "type": "object", "properties": {"count": {"type": kind, **({"maxLength": 9} if kind == "string" else {})}},
        }))


def _lines_with_counters(count: int) -> list[str]:
    """Generated lines, bad ones included; the first half carry counter 1-0-0, the second half 1-0-1."""
    index = fields.FIELD_INDEX["contexts"]
    lines = []
    for number, line in enumerate(generate.generate(count, seed=21, start=START, bad=count // 50)):
        parts = line.split("\t")
        try:
            contexts = json.loads(parts[index]) if len(parts) == 131 else None
        except json.JSONDecodeError:  # one of the bad lines
            contexts = None
        if not isinstance(contexts, dict) or not isinstance(contexts.get("data"), list):
            lines.append(line)
            continue
        second = number >= count // 2
        contexts["data"].append({"schema": COUNTER.format(int(second)), "data": {"count": str(number) if second else number}})
        parts[index] = json.dumps(contexts)
        lines.append("\t".join(parts))
    return lines


# Times differ between two loads: when a row was loaded, a file started, a schema lookup was tried
# (a bad row's lookup history); a bad row is compared by its schema, reason and original line.
_TIMES = "- 'loaded_at' - 'started_at' - 'finished_at'"


def _snapshot(conn: Any) -> dict[str, list[str]]:
    """Every row of every table the load wrote, as sorted JSON texts."""
    tables = [r[0] for r in conn.execute(
        "SELECT schemaname || '.' || tablename FROM pg_tables WHERE schemaname IN ('atomic', 'osds_state') ORDER BY 1")]
    snapshot = {}
    for table in tables:
        row = f"jsonb_set(to_jsonb(t) - 'bad_row', '{{schema}}', t.bad_row -> 'schema')" if table.endswith("bad_rows") \
            else "to_jsonb(t)"
        snapshot[table] = sorted(r[0] for r in conn.execute(f"SELECT ({row} {_TIMES})::text FROM {table} t"))
    return snapshot


def test_a_load_parsed_in_the_helper_writes_what_a_load_parsed_in_one_process_writes(
    db: Any, registry: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _counter_schemas(registry)
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.tsv").write_text("".join(line + "\n" for line in _lines_with_counters(2_000)))
    shutil.copy(folder / "a.tsv", folder / "b.tsv")  # its events again: the direct COPY is refused, staging takes over
    snapshots, reports = {}, {}
    for mode in (None, 0):
        _reset(db)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="airflow_osds.snowplow"):
            reports[mode] = load(db, local_files(folder), Resolver.from_sources([registry]),
                                 LoadOptions(chunk_lines=150, max_bad_ratio=None, helper_after_lines=mode))
        snapshots[mode] = _snapshot(db)
        assert ("a helper process (pid" in caplog.text) == (mode == 0)
        assert "parsing in the loader's process from now on" not in caplog.text
    assert reports[0].summary() == reports[None].summary()
    assert snapshots[0] == snapshots[None]
    a, b = reports[0].files
    assert a.events > 0 and b.events == 0 and b.duplicates == a.events
    refused = [json.loads(r) for r in snapshots[0]["atomic.osds_bad_rows"] if '"entity table: ' in r]
    assert refused, "events with counter 1-0-1 become bad rows: its table keeps count as an integer"
    assert snapshots[0]["atomic.com_acme_counter_1"], "and counter 1-0-0 loads"


LOADER = r"""
import sys
import psycopg
from airflow_osds.snowplow.iglu import Resolver
from airflow_osds.snowplow.loader import LoadOptions, load
from airflow_osds.snowplow.sources import local_files
print("loader started", flush=True)  # no __main__ guard: a multiprocessing child would run this again
conn = psycopg.connect(sys.argv[1], autocommit=True)
load(conn, local_files(sys.argv[2]), Resolver.from_sources([sys.argv[3]]),
     LoadOptions(chunk_lines=100, max_bad_ratio=None, helper_after_lines=0))
"""


def _helpers(parent: psutil.Process) -> list[psutil.Process]:
    found = []
    for child in parent.children():
        try:
            if "airflow_osds.snowplow.helper" in child.cmdline():
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def test_a_killed_loader_leaves_no_helper_behind(db: Any, warehouse: Any, registry: Path, tmp_path: Path) -> None:
    _reset(db)
    path = tmp_path / "big.tsv"
    path.write_text("".join(line + "\n" for line in generate.generate(20_000, seed=4, start=START)))
    loader = subprocess.Popen([sys.executable, "-c", LOADER, warehouse.stack.postgres.uri(warehouse.dbname), str(path),
                               str(registry)], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    parent = psutil.Process(loader.pid)
    deadline, helpers = time.monotonic() + 60, []
    while time.monotonic() < deadline and loader.poll() is None and not helpers:
        helpers = _helpers(parent)
        time.sleep(0.02)
    assert helpers, "the loader started its helper"
    loader.send_signal(signal.SIGKILL)  # no cleanup at all: the helper sees its stdin close
    out, _ = loader.communicate(timeout=30)
    gone, alive = psutil.wait_procs(helpers, timeout=15)
    assert not alive, f"the helper outlived its loader: {alive}"
    assert out.count("loader started") == 1
