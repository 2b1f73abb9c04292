"""Shared by the Snowplow tests: the Iglu Central checkout, small static registries, a counting repository."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from airflow_osds.snowplow.iglu import SchemaKey, StaticRepository

# The real Iglu Central registry (schemas only, Apache-2.0), kept in the repository: the tests are hermetic.
IGLU_CENTRAL = Path(__file__).resolve().parents[2] / "data" / "iglu-central"
BADROW_KEY = SchemaKey.parse("iglu:com.snowplowanalytics.snowplow.badrows/loader_iglu_error/jsonschema/2-0-1")
WEB_PAGE = SchemaKey.parse("iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0")
SELF_DESC = "http://iglucentral.com/schemas/com.snowplowanalytics.self-desc/schema/jsonschema/1-0-0#"


def iglu_central() -> Path:
    assert (IGLU_CENTRAL / "schemas").is_dir(), f"the repository's copy of Iglu Central is missing: {IGLU_CENTRAL}"
    return IGLU_CENTRAL


def self_describing(uri: str, body: dict[str, Any]) -> dict[str, Any]:
    """A self-describing schema for ``uri`` around ``body`` (type, properties, ...)."""
    key = SchemaKey.parse(uri)
    return {
        "$schema": SELF_DESC,
        "self": {"vendor": key.vendor, "name": key.name, "format": key.format, "version": key.version},
        **body,
    }


def write_registry(root: Path, schemas: dict[str, Any]) -> Path:
    """A static registry at ``root``: ``{uri: schema}``; a ``str`` value is written verbatim."""
    (root / "schemas").mkdir(parents=True, exist_ok=True)
    for uri, schema in schemas.items():
        key = SchemaKey.parse(uri)
        file = root / "schemas" / key.path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(schema if isinstance(schema, str) else json.dumps(schema, indent=2))
    return root


class CountingRepository(StaticRepository):
    """A real static registry that counts the lookups that reach it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fetches: dict[str, int] = {}
        self._count_lock = threading.Lock()

    def fetch(self, key: SchemaKey) -> Any:
        with self._count_lock:
            self.fetches[key.uri] = self.fetches.get(key.uri, 0) + 1
        return super().fetch(key)


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def badrow(failures: list[dict[str, Any]]) -> dict[str, Any]:
    """A minimal ``loader_iglu_error/jsonschema/2-0-1`` bad row around ``failures``."""
    return {
        "schema": BADROW_KEY.uri,
        "data": {
            "processor": {"artifact": "airflow-osds", "version": "0.1.0"},
            "failure": failures,
            "payload": {"event_id": "c6ef3124-b53a-4b13-a233-0088f79dcbcb", "collector_tstamp": "2021-01-01T00:00:00Z"},
        },
    }


def assert_valid_badrow(failures: list[dict[str, Any]]) -> None:
    """The failure entries fit 2-0-1, checked by jsonschema's Draft4Validator on the real schema file."""
    import jsonschema

    schema = json.loads((iglu_central() / "schemas" / BADROW_KEY.path).read_text())
    errors = sorted(jsonschema.Draft4Validator(schema).iter_errors(badrow(failures)["data"]), key=str)
    assert not errors, [e.message for e in errors]
