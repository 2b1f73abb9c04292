"""The parsing helper process: what it sends back is what the loader's own parse makes, and anything
that keeps it from working hands the parse back to the loader's process with a warning."""

from __future__ import annotations

import datetime as dt
import logging
import pickle
import threading
from typing import Any

import pytest

from airflow_osds.snowplow import generate
from airflow_osds.snowplow.chunks import Chunk, ChunkParser
from airflow_osds.snowplow.helper import ParseHelper
from airflow_osds.snowplow.iglu import Resolver
from airflow_osds.snowplow.registries import HttpRepository, MemoryRepository, Repository, StaticRepository

from ._support import IGLU_CENTRAL, WEB_PAGE

START = dt.datetime(2026, 11, 24, 10, 0, tzinfo=dt.UTC)


def _resolver(*extra: Repository) -> Resolver:
    custom = {f"iglu:{uri}": schema for uri, schema in generate.custom_schemas().items()}
    return Resolver([StaticRepository(IGLU_CENTRAL, name="central"), MemoryRepository(custom, name="custom"), *extra])


def _chunks(count: int, size: int, *, bad: int = 0) -> list[list[tuple[int, bytes]]]:
    lines = [(n, line.encode()) for n, line in enumerate(generate.generate(count, seed=3, start=START, bad=bad), 1)]
    return [lines[i:i + size] for i in range(0, len(lines), size)]


def _same(ours: Chunk, theirs: Chunk) -> None:
    assert ours.batch == theirs.batch
    # A bad row's own schema and texts; its lookup history holds the time of each parse's lookup.
    assert [(*b[:4], b[4]["schema"]) for b in ours.bad] == [(*b[:4], b[4]["schema"]) for b in theirs.bad]
    assert ours.event_count == theirs.event_count


def test_the_helper_sends_back_the_chunk_the_loader_would_make(caplog: pytest.LogCaptureFixture) -> None:
    chunks = _chunks(900, 150, bad=12)
    here = ChunkParser(_resolver())
    with caplog.at_level(logging.INFO, logger="airflow_osds.snowplow.helper"), \
            ParseHelper(ChunkParser(_resolver()), start_after=300) as helper:
        # One chunk at a time: the helper is never busy when the next one comes, so it gets them all.
        results = [helper.submit(chunk, batch=index % 2 == 0).result() for index, chunk in enumerate(chunks)]
    assert helper.chunks_in_helper == len(chunks) - 2, "the first 300 lines are parsed here, the rest in the helper"
    assert helper.chunks_here == 2
    assert "a helper process (pid" in caplog.text and helper.stopped is None
    assert sum(len(r.bad) for r in results) == 12
    for index, (chunk, result) in enumerate(zip(chunks, results)):
        expected = here.parse(chunk, batch=index % 2 == 0)
        _same(result, expected)
        if index >= 2 and index % 2 == 0:  # made in the helper with a batch: the events stay there, the lines here
            assert result.events is None and result.lines is chunk
        else:
            assert result.events == expected.events


def test_when_the_writer_waits_for_the_helper_the_loaders_process_parses_too() -> None:
    chunks = _chunks(8000, 1000, bad=8)
    here = ChunkParser(_resolver())
    results = []
    with ParseHelper(ChunkParser(_resolver()), start_after=2000) as helper:
        # As the loader does: the next chunk is submitted, then the one before is taken. The
        # third waits for the helper to start (an interpreter, the schemas compiled again), so
        # the parse is the bound; the fourth is still in the helper when the fifth comes.
        before = None
        for chunk in chunks:
            parsed = helper.submit(chunk, batch=True)
            if before is not None:
                results.append(before.result())
            before = parsed
        results.append(before.result())
    assert helper.chunks_in_helper >= 2 and helper.chunks_here >= 3, (helper.chunks_in_helper, helper.chunks_here)
    assert helper.chunks_in_helper + helper.chunks_here == len(chunks) and helper.stopped is None
    for chunk, result in zip(chunks, results):  # in order, whichever process made each
        _same(result, here.parse(chunk, batch=True))
    assert sum(len(r.bad) for r in results) == 8


def test_a_helper_that_dies_hands_its_chunks_back(caplog: pytest.LogCaptureFixture) -> None:
    chunks = _chunks(600, 100)
    here = ChunkParser(_resolver())
    with caplog.at_level(logging.WARNING, logger="airflow_osds.snowplow.helper"), \
            ParseHelper(ChunkParser(_resolver()), start_after=0) as helper:
        first = helper.submit(chunks[0], batch=True)
        first.result()
        assert helper._process is not None
        helper._process._proc.kill()  # a real SIGKILL of the real helper (the OOM killer, an operator)
        rest = [helper.submit(chunk, batch=True) for chunk in chunks[1:]]
        results = [p.result() for p in rest]
    assert helper.stopped is not None and "exit status -9" in helper.stopped
    assert "parsing in the loader's process from now on" in caplog.text
    for chunk, result in zip(chunks[1:], results):
        _same(result, here.parse(chunk, batch=True))


class _Unpicklable(MemoryRepository):
    def __init__(self) -> None:
        super().__init__({}, name="local-only")
        self.lock = threading.Lock()


def test_a_resolver_that_cannot_cross_processes_keeps_the_parse_here(caplog: pytest.LogCaptureFixture) -> None:
    chunks = _chunks(200, 100)
    with caplog.at_level(logging.WARNING, logger="airflow_osds.snowplow.helper"), \
            ParseHelper(ChunkParser(_resolver(_Unpicklable())), start_after=0) as helper:
        results = [helper.submit(chunk, batch=True).result() for chunk in chunks]
    assert helper.chunks_in_helper == 0
    assert helper.stopped is not None and "could not be started (TypeError: cannot pickle" in helper.stopped
    assert "parsing in the loader's process from now on" in caplog.text
    assert all(r.events is not None and r.bad == [] for r in results)
    assert sum(r.event_count for r in results) == 200


def test_start_after_none_never_starts_a_helper() -> None:
    chunks = _chunks(300, 100)
    with ParseHelper(ChunkParser(_resolver()), start_after=None) as helper:
        for chunk in chunks:
            helper.submit(chunk, batch=True).result()
    assert helper.chunks_in_helper == 0 and helper.stopped is None


def test_a_resolver_crosses_processes_with_what_it_found_and_without_its_client() -> None:
    http = HttpRepository("http://127.0.0.1:9/iglu", name="private", apikey="s3cr3t-key", priority=1)
    resolver = _resolver(http)
    assert resolver.lookup(WEB_PAGE)["self"]["name"] == "web_page"
    http._http()  # a live client: it must not travel
    copy: Any = pickle.loads(pickle.dumps(resolver))
    assert copy._schemas == resolver._schemas and WEB_PAGE in copy._schemas
    assert [r.name for r in copy.repositories] == ["central", "custom", "private"]
    other = copy.repositories[2]
    assert other._client is None and other.apikey == "s3cr3t-key" and other._own_client
    assert other._http().headers["apikey"] == "s3cr3t-key"
    copy.validate(WEB_PAGE, {"id": "2b4e1a52-8d4e-4d1a-9e0f-4a7f3a1b2c3d"})  # compiles its own validator
