"""Enriched files read from ``s3://`` through Airflow's ObjectStoragePath, against a real S3 HTTP API on
127.0.0.1 (moto's server, ``_s3.py``) and the real embedded PostgreSQL: listing, sizes, gzip found by
its magic bytes on the stream, the ledger's URIs and sha256 checksums, loads that add nothing twice,
and the hook's, the sensor's and the trigger's "pending" view as objects arrive."""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import hashlib
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_osds.hooks.snowplow import SnowplowHook, list_source
from airflow_osds.snowplow import generate
from airflow_osds.snowplow.loader import LoadOptions
from airflow_osds.snowplow.sources import read_lines

from ._s3 import S3Server

START = dt.datetime(2026, 11, 24, 10, 0, tzinfo=dt.UTC)


@pytest.fixture
def fresh(warehouse: Any) -> Any:
    """The module's warehouse database without the loader's schemas (each test starts with no ledger)."""
    with warehouse.stack.postgres.connect(warehouse.dbname, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS atomic CASCADE")
        conn.execute("DROP SCHEMA IF EXISTS osds_state CASCADE")
    return warehouse


def _enriched(tmp_path: Path, name: str, n: int, *, gz: bool, seed: int, start: dt.datetime = START) -> bytes:
    path = tmp_path / "generated" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    assert generate.write(path, n, gzip=gz, seed=seed, start=start) == n
    return path.read_bytes()


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _ledger(warehouse: Any) -> list[tuple[Any, ...]]:
    return warehouse.query("SELECT uri, size, checksum, status, lines_done, events FROM osds_state.snowplow_files "
                           "WHERE events_table = 'atomic.events' ORDER BY uri")


def test_objects_load_once_with_their_sizes_and_checksums_and_a_later_object_loads_alone(
    fresh: Any, s3: S3Server, registry: Path, tmp_path: Path
) -> None:
    bucket = s3.new_bucket()
    prefix = f"s3://{bucket}/enriched/2026-11-24/"
    uploaded = {
        "a.tsv.gz": _enriched(tmp_path, "a.tsv.gz", 300, gz=True, seed=31),
        "b.tsv": _enriched(tmp_path, "b.tsv", 200, gz=False, seed=32, start=START + dt.timedelta(hours=1)),
    }
    assert uploaded["a.tsv.gz"][:2] == b"\x1f\x8b" and uploaded["b.tsv"][:2] != b"\x1f\x8b"
    for name, data in uploaded.items():
        s3.put(prefix + name, data)
    s3.put(prefix + "_SUCCESS", b"")  # a job's marker, not events
    hook = SnowplowHook("warehouse", iglu=[str(registry)], source_conn_id=s3.conn_id)

    files = hook.files(prefix)
    assert [(f.uri, f.size) for f in files] == [(prefix + n, len(d)) for n, d in sorted(uploaded.items())]
    assert [f.uri for f in hook.pending(prefix)] == [prefix + "a.tsv.gz", prefix + "b.tsv"]

    report = hook.load(prefix, LoadOptions())
    assert [f.uri for f in report.loaded_files] == [prefix + "a.tsv.gz", prefix + "b.tsv"]
    assert (report.lines, report.events, report.duplicates, report.bad_rows) == (500, 500, 0, 0)
    assert fresh.scalar("SELECT count(*) FROM atomic.events") == 500
    assert fresh.scalar("SELECT count(*) FROM atomic.osds_bad_rows") == 0
    assert _ledger(fresh) == [
        (prefix + "a.tsv.gz", len(uploaded["a.tsv.gz"]), _sha256(uploaded["a.tsv.gz"]), "done", 300, 300),
        (prefix + "b.tsv", len(uploaded["b.tsv"]), _sha256(uploaded["b.tsv"]), "done", 200, 200),
    ]
    assert hook.pending(prefix) == []

    again = hook.load(prefix, LoadOptions())
    assert again.loaded_files == [] and len(again.files) == 2
    assert all((f.skipped or "").startswith("already loaded") for f in again.files), again.files
    assert fresh.scalar("SELECT count(*) FROM atomic.events") == 500

    # A new object, gzip under a name that does not say so: its magic bytes, read off the stream, do.
    later = _enriched(tmp_path, "part-00002", 120, gz=True, seed=33, start=START + dt.timedelta(hours=2))
    s3.put(prefix + "part-00002", later)
    assert [f.uri for f in hook.pending(prefix)] == [prefix + "part-00002"]
    third = hook.load(prefix, LoadOptions())
    assert [f.uri for f in third.loaded_files] == [prefix + "part-00002"]
    assert (third.events, third.duplicates, third.bad_rows) == (120, 0, 0)
    assert [f.uri for f in third.files if f.skipped] == [prefix + "a.tsv.gz", prefix + "b.tsv"]
    assert fresh.scalar("SELECT count(*) FROM atomic.events") == 620
    assert _ledger(fresh)[-1] == (prefix + "part-00002", len(later), _sha256(later), "done", 120, 120)
    assert len(_ledger(fresh)) == 3


def test_listing_is_fresh_names_objects_without_the_connection_and_skips_markers(s3: S3Server) -> None:
    """The same process lists the same prefix again (a triggerer polling for days): objects written
    since are there with their current size; the URI carries no connection id, however the connection is
    given; ``_``/``.`` files and folders are skipped as locally."""
    bucket = s3.new_bucket()
    root = f"s3://{bucket}/enriched/"
    s3.put(root + "2026-11-24/a.tsv", b"x\n")
    for skipped in ("2026-11-24/_SUCCESS", "_temporary/0/part-0.tsv", ".staging/b.tsv", "2026-11-24/.c.tsv.swp"):
        s3.put(root + skipped, b"y\n")
    assert [(f.uri, f.size) for f in list_source(root, conn_id=s3.conn_id)] == [(root + "2026-11-24/a.tsv", 2)]

    s3.put(root + "2026-11-24/a.tsv", b"x\nx\n")  # rewritten, bigger
    s3.put(root + "2026-11-25/b.tsv", b"z\n")  # a new day's folder
    expected = [(root + "2026-11-24/a.tsv", 4), (root + "2026-11-25/b.tsv", 2)]
    assert [(f.uri, f.size) for f in list_source(root, conn_id=s3.conn_id)] == expected
    in_url = f"s3://{s3.conn_id}@{bucket}/enriched/"  # the connection in the URL's user part
    assert [(f.uri, f.size) for f in list_source(in_url)] == expected

    (one,) = list_source(root + "2026-11-25/b.tsv", conn_id=s3.conn_id)
    assert (one.uri, one.size) == (root + "2026-11-25/b.tsv", 2)
    with pytest.raises(FileNotFoundError, match="nothing exists there"):
        list_source(f"s3://{bucket}/nothing/", conn_id=s3.conn_id)


def test_a_gzip_object_streams_through_the_reader_with_the_checksum_of_its_stored_bytes(
    s3: S3Server, tmp_path: Path
) -> None:
    bucket = s3.new_bucket()
    url = f"s3://{bucket}/enriched/2026-11-24/events"  # no suffix: gzip is told by its magic bytes
    data = _enriched(tmp_path, "events", 2_000, gz=True, seed=34)
    s3.put(url, data)
    (source,) = list_source(url, conn_id=s3.conn_id)
    with read_lines(source) as reader:
        lines = [raw for _, raw in reader]
        assert reader.finished
        assert reader.checksum == _sha256(data)
    assert lines == [line.encode() for line in gzip.decompress(data).decode().splitlines()]
    assert len(lines) == 2_000 and all(line.count(b"\t") == 130 for line in lines)


def test_the_sensor_and_the_trigger_see_only_the_objects_not_loaded_yet(
    fresh: Any, s3: S3Server, registry: Path, tmp_path: Path
) -> None:
    from airflow_osds.sensors.snowplow import SnowplowNewFilesSensor
    from airflow_osds.triggers.snowplow import SnowplowNewFilesTrigger

    bucket = s3.new_bucket()
    prefix = f"s3://{bucket}/enriched/2026-11-24/"
    sensor = SnowplowNewFilesSensor(task_id="wait", source=prefix, source_conn_id=s3.conn_id, deferrable=False)

    def trigger_event() -> dict[str, Any]:
        trigger = SnowplowNewFilesTrigger(source=prefix, warehouse_conn_id="warehouse", source_conn_id=s3.conn_id,
                                          end_time=time.time(), poke_interval=0.1)  # one poll, then time out

        async def first() -> dict[str, Any]:
            async for event in trigger.run():
                return event.payload
            raise AssertionError("the trigger fired nothing")

        return asyncio.run(first())

    poke = sensor.poke({})
    assert (poke.is_done, poke.xcom_value) == (False, []), "no prefix yet"
    s3.put(prefix + "a.tsv.gz", _enriched(tmp_path, "a.tsv.gz", 50, gz=True, seed=35))
    poke = sensor.poke({})
    assert (poke.is_done, poke.xcom_value) == (True, [prefix + "a.tsv.gz"])
    assert trigger_event() == {"status": "found", "files": [prefix + "a.tsv.gz"]}

    hook = SnowplowHook("warehouse", iglu=[str(registry)], source_conn_id=s3.conn_id)
    assert hook.load(prefix, LoadOptions()).events == 50
    assert sensor.poke({}).is_done is False
    assert trigger_event() == {"status": "timeout", "files": []}

    s3.put(prefix + "b.tsv", _enriched(tmp_path, "b.tsv", 40, gz=False, seed=36))
    poke = sensor.poke({})
    assert (poke.is_done, poke.xcom_value) == (True, [prefix + "b.tsv"])
    assert trigger_event() == {"status": "found", "files": [prefix + "b.tsv"]}
