"""Real Singer taps and targets from PyPI for the tests, each in its cached virtualenv: built on first use,
a test that needs one fails in CI when it cannot be built (and is skipped elsewhere, saying why)."""

from __future__ import annotations

import os
from pathlib import Path

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
