"""Iglu Central from the shared folder, and a tiny static resolver over it plus the generator's schemas.

The registry is ``$OSDS_IGLU_CENTRAL`` or ``<repo>/../shared/iglu-central`` (where CI lays
``shared/``). Without it these tests skip, except under CI, where they fail: a green run must
have validated the bad rows against Snowplow's real schemas.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from airflow_osds.snowplow.generate import custom_schemas

REPO_ROOT = Path(__file__).resolve().parents[3]


def iglu_central_root() -> Path | None:
    configured = os.environ.get("OSDS_IGLU_CENTRAL")
    root = Path(configured) if configured else REPO_ROOT.parent / "shared" / "iglu-central"
    return root if (root / "schemas").is_dir() else None


@pytest.fixture(scope="session")
def iglu_central() -> Path:
    root = iglu_central_root()
    if root is None:
        message = "Iglu Central not found: set OSDS_IGLU_CENTRAL or lay shared/iglu-central beside the repository"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return root


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
