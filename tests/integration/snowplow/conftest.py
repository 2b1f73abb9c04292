"""The Snowplow integration tests share the unit tests' registry helpers, a static Iglu registry and an S3 server."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_osds.snowplow import generate
from tests.integration.snowplow._s3 import S3Server, s3_server
from tests.unit.snowplow._support import IGLU_CENTRAL

__all__ = ["IGLU_CENTRAL"]


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    """A static registry: the Iglu Central schemas the generator uses plus its custom com.acme ones."""
    root = tmp_path / "iglu"
    shutil.copytree(IGLU_CENTRAL / "schemas", root / "schemas")
    for relative, schema in generate.custom_schemas().items():
        path = root / "schemas" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(schema))
    return root


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    """A real S3 HTTP API (moto's server) on 127.0.0.1 and an ``aws`` Airflow connection to it (``s3.conn_id``)."""
    with s3_server() as server:
        yield server
