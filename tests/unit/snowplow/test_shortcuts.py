"""The validators' yes-only shortcut: it covers the envelopes, and says "valid" only where fastjsonschema does."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from fastjsonschema import JsonSchemaValueException

from airflow_osds.snowplow.iglu import Resolver, SchemaKey, StaticRepository
from airflow_osds.snowplow.shortcuts import shortcut
from airflow_osds.snowplow.validation import SchemaValidator, compile_schema
from tests.unit.snowplow._support import iglu_central, self_describing

ENVELOPES = [
    "iglu:com.snowplowanalytics.self-desc/instance-iglu-only/jsonschema/1-0-0",
    "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0",
    "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1",
    "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
]


@pytest.fixture(scope="module")
def resolver() -> Resolver:
    return Resolver([StaticRepository(iglu_central(), name="Iglu Central")])


def _compiled(uri: str, body: dict[str, Any]) -> SchemaValidator:
    schema = self_describing(uri, body)
    return compile_schema(SchemaKey.parse(uri), schema, retrieve=lambda ref: None)


@pytest.mark.parametrize("uri", ENVELOPES)
def test_every_envelope_gets_a_shortcut(resolver: Resolver, uri: str) -> None:
    validator = resolver.validator(SchemaKey.parse(uri))
    assert validator._shortcut is not None  # a fastjsonschema that stops exposing its patterns fails here


@pytest.mark.parametrize("body", [
    {"type": ["object", "null"], "properties": {}, "additionalProperties": False},
    {"type": "object", "properties": {"a": {"type": "string"}}},  # additional properties allowed
    {"type": "object", "properties": {"a": {"type": "string", "format": "uuid"}}, "additionalProperties": False},
    {"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": False},
    {"type": "object", "minProperties": 1, "properties": {}, "additionalProperties": False},
    {"type": "object", "patternProperties": {"^x": {}}, "additionalProperties": False},
    {"type": "array", "items": [{"type": "object", "additionalProperties": False}]},
    {"type": "array", "items": {"type": "object", "properties": {}, "additionalProperties": False}, "uniqueItems": True},
])
def test_a_schema_with_anything_else_gets_none(body: dict[str, Any]) -> None:
    assert _compiled("iglu:com.acme/other/jsonschema/1-0-0", body)._shortcut is None


def test_a_real_entity_schema_gets_none(resolver: Resolver) -> None:
    yauaa = SchemaKey.parse("iglu:nl.basjes/yauaa_context/jsonschema/1-0-4")
    assert resolver.validator(yauaa)._shortcut is None


def _values(rng: random.Random) -> Any:
    uri = "iglu:com.acme/thing/jsonschema/1-0-0"
    if rng.random() < 0.6:  # mostly values some schema here takes, so that "valid" comes often
        return rng.choice([uri, "ab", "abc"])
    choices: list[Any] = [
        uri, uri + "\n", uri.replace("1-0-0", "1-0"), "iglu:com.acme/th ing/jsonschema/1-0-0", "", "x" * rng.randrange(12),
        "ab", "abc", "é", None, 0, 1.5, True, [], {}, [uri], {"schema": uri}, type("S", (str,), {})(uri),
    ]
    return rng.choice(choices)


def _object(rng: random.Random, names: list[str]) -> Any:
    data: Any = {name: _values(rng) for name in names if rng.random() < 0.9}
    if rng.random() < 0.05:
        data["extra"] = 1
    if rng.random() < 0.05:
        data = type("D", (dict,), {})(data)  # a subclass: the shortcut leaves it to fastjsonschema
    return data


def _instance(rng: random.Random, names: list[str], *, array: bool) -> Any:
    """Mostly the schema's own shape (an array of objects, or an object), with every kind of flaw now and then."""
    if array != (rng.random() < 0.1):
        items = [_object(rng, names) for _ in range(rng.randrange(4))]
        return tuple(items) if rng.random() < 0.05 else items
    return _object(rng, names)


SYNTHETIC = [
    {"type": "object", "properties": {"schema": {"type": "string", "pattern": "^iglu:[a-z.]+/[a-z]+/jsonschema/[0-9]+-[0-9]+-[0-9]+$"},
                                      "data": {}}, "required": ["schema", "data"], "additionalProperties": False},
    {"type": "object", "properties": {"a": {"type": "string", "minLength": 2, "maxLength": 3, "description": "d"},
                                      "b": {"type": "string"}}, "required": ["a"], "additionalProperties": False},
    {"type": "array", "minItems": 1, "maxItems": 2,
     "items": {"type": "object", "properties": {"schema": {"type": "string", "pattern": "thing"}, "data": {}},
               "required": ["schema"], "additionalProperties": False}},
]


@pytest.mark.parametrize("index", range(len(SYNTHETIC) + len(ENVELOPES)))
def test_a_shortcut_says_valid_only_where_the_compiled_validator_does(resolver: Resolver, index: int) -> None:
    if index < len(SYNTHETIC):
        validator = _compiled(f"iglu:com.acme/synthetic{index}/jsonschema/1-0-0", SYNTHETIC[index])
    else:
        validator = resolver.validator(SchemaKey.parse(ENVELOPES[index - len(SYNTHETIC)]))
    assert validator._shortcut is not None
    without = SchemaValidator(validator.key, validator.schema, validator._fast, lambda ref: None)
    array = validator.schema["type"] == "array"
    names = sorted((validator.schema["items"] if array else validator.schema)["properties"])
    rng = random.Random(index)
    said_valid = refused = 0
    for _ in range(4_000):
        data = _instance(rng, names, array=array)
        if validator._shortcut(data):
            said_valid += 1
            validator._fast(data)  # raises JsonSchemaValueException if the shortcut was wrong
        else:
            try:
                validator._fast(data)
            except JsonSchemaValueException:
                refused += 1
        assert validator(data) == without(data), json.dumps(data, default=repr)
    assert said_valid > 100 and refused > 100, (said_valid, refused)  # both answers, many times


def test_a_patterns_verdict_is_kept_per_property() -> None:
    validator = _compiled("iglu:com.acme/two/jsonschema/1-0-0", {
        "type": "object", "additionalProperties": False,
        "properties": {"a": {"type": "string", "pattern": "^x"}, "b": {"type": "string", "pattern": "^y"}},
    })
    check = validator._shortcut
    assert check is not None
    assert check({"a": "x1"}) is True  # "x1" matched a's pattern ...
    assert check({"b": "x1"}) is False  # ... which says nothing about b's
    assert validator({"b": "x1"}) != [] and validator({"a": "x1", "b": "y"}) == []


def test_without_the_compiled_patterns_there_is_no_shortcut() -> None:
    body = SYNTHETIC[0]
    assert shortcut(body, lambda data: data) is None  # a plain function: no REGEX_PATTERNS to use
    assert shortcut({k: v for k, v in body.items()} | {"properties": {"data": {}}, "required": ["data"]},
                    lambda data: data) is not None
