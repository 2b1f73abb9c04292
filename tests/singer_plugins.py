"""Real Singer taps and targets from PyPI for the tests, each in its cached virtualenv: built on first use,
a test that needs one fails in CI when it cannot be built (and is skipped elsewhere, saying why); and
the throw-away source databases the taps read."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from airflow_osds.singer.plugins import PluginError, executable

TAP_JSONL = "tap-jsonl==0.3.1"
TAP_CSV_FOLDER = "tap-csv-folder==0.0.1a1"
TAP_POSTGRES = "meltanolabs-tap-postgres==0.10.0"
MELTANOLABS_TARGET = "meltanolabs-target-postgres==0.8.1"
PIPELINEWISE_TARGET = "pipelinewise-target-postgres==2.1.2"


def plugin(name: str, pip_url: str) -> Path:
    """The executable ``name`` of ``pip_url``'s virtualenv."""
    try:
        return executable(name, pip_url=pip_url)
    except PluginError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"the {pip_url} virtualenv could not be built: {exc}")
        pytest.skip(f"the {pip_url} virtualenv could not be built: {exc}")


@contextmanager
def source_database(pg: Any, prefix: str, *statements: str) -> Iterator[str]:
    """A new database on the embedded PostgreSQL ``pg``, ``statements`` run in it; dropped afterwards."""
    dbname = f"{prefix}_{uuid.uuid4().hex[:10]}"
    pg.create_database(dbname, exist_ok=False)
    try:
        with pg.connect(dbname, autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)
        yield dbname
    finally:
        pg.drop_database(dbname)
