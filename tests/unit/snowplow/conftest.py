"""Iglu Central (the repository's copy in tests/data), and a tiny static resolver over it plus the generator's schemas."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from airflow_osds.snowplow.generate import custom_schemas
from tests.unit.snowplow._support import iglu_central as support_iglu_central

@pytest.fixture(scope="session")
def iglu_central() -> Path:
    return support_iglu_central()


def _key_path(schema_key: str) -> str:
    assert schema_key.startswith("iglu:"), schema_key
    return schema_key[len("iglu:") :]


class Registry:
    """Iglu Central's schemas plus :func:`custom_schemas`, looked up by ``iglu:`` key."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.custom = custom_schemas()

    @cache  # noqa: B019 - one registry per session
    def schema(self, schema_key: str) -> dict[str, Any] | None:
        path = _key_path(schema_key)
        if path in self.custom:
            return self.custom[path]
        file = self.root / "schemas" / path
        return json.loads(file.read_text()) if file.is_file() else None

    def validator(self, schema_key: str) -> jsonschema.Draft4Validator | None:
        schema = self.schema(schema_key)
        return None if schema is None else jsonschema.Draft4Validator(schema)

    def check(self, entity: dict[str, Any]) -> str:
        """``"ok"``, ``"unknown"`` (no such schema) or ``"invalid"`` for a self-describing entity."""
        validator = self.validator(entity["schema"])
        if validator is None:
            return "unknown"
        return "ok" if validator.is_valid(entity["data"]) else "invalid"


@pytest.fixture(scope="session")
def registry(iglu_central: Path) -> Registry:
    return Registry(iglu_central)


def badrow_validator(iglu_central: Path, schema_key: str) -> jsonschema.Draft4Validator:
    """A validator for the ``data`` of a bad row: the bad-row schemas carry no ``$ref``."""
    schema = json.loads((iglu_central / "schemas" / _key_path(schema_key)).read_text())
    assert "$ref" not in json.dumps(schema)
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema)
