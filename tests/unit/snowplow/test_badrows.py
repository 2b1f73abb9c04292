"""Every bad row we write validates against Snowplow's real schema in Iglu Central."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import airflow_osds
from airflow_osds.snowplow import _json, badrows, tsv
from airflow_osds.snowplow import generate as gen
from airflow_osds.snowplow.fields import ATOMIC_COLUMNS, FIELD_INDEX, FIELDS

from .conftest import Registry, badrow_validator

START = datetime(2026, 3, 1, tzinfo=timezone.utc)
WHEN = datetime(2026, 3, 1, 12, 0, 0, 250000, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def samples() -> dict[str, list[str]]:
    """Lines of every kind, from the generator."""
    out: dict[str, list[str]] = {}
    for kind, line in gen.generate_labelled(1200, seed=21, start=START, bad=60):
        out.setdefault(kind, []).append(line)
    return out


def assert_valid_badrow(iglu_central: Path, row: dict[str, Any]) -> None:
    assert set(row) == {"schema", "data"}
    validator = badrow_validator(iglu_central, row["schema"])
    schema = validator.schema
    vendor, name, fmt, version = row["schema"].removeprefix("iglu:").split("/")
    assert schema["self"] == {"vendor": vendor, "name": name, "format": fmt, "version": version}
    errors = sorted(validator.iter_errors(row["data"]), key=str)
    assert not errors, errors[0]
    assert row["data"]["processor"] == {"artifact": "airflow-osds", "version": airflow_osds.__version__}
    json.dumps(row)  # plain JSON all the way down


def assert_rfc3339_utc(value: str) -> None:
    assert value.endswith("Z") and "T" in value
    assert datetime.fromisoformat(value).tzinfo is not None


# -- loader_parsing_error -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["not_tsv", "field_count", "invalid_value"])
def test_parsing_errors(iglu_central: Path, samples: dict[str, list[str]], kind: str) -> None:
    for line in samples[kind]:
        failure = tsv.check(line)
        assert isinstance(failure, tsv.ParseFailure)
        row = badrows.parsing_error(line, failure.to_failure())
        assert row["schema"] == "iglu:com.snowplowanalytics.snowplow.badrows/loader_parsing_error/jsonschema/2-0-0"
        assert row["data"]["payload"] == line
        assert_valid_badrow(iglu_central, row)
    expected = {"not_tsv": "NotTSV", "field_count": "FieldNumberMismatch", "invalid_value": "RowDecodingError"}
    assert row["data"]["failure"]["type"] == expected[kind]


def test_the_parsing_error_schema_is_really_checked(iglu_central: Path) -> None:
    validator = badrow_validator(iglu_central, badrows.PARSING_ERROR)
    good = badrows.parsing_error("x", tsv.FieldNumberMismatch(3).to_failure())["data"]
    assert validator.is_valid(good)
    assert not validator.is_valid({**good, "failure": {"type": "FieldNumberMismatch"}})
    assert not validator.is_valid({**good, "processor": {**good["processor"], "extra": 1}})
    long_key = tsv.RowDecodingError(({"type": "InvalidValue", "key": "k" * 33, "value": "", "message": ""},))
    assert not validator.is_valid({**good, "failure": long_key.to_failure()})


# -- loader_iglu_error --------------------------------------------------------------------------


def entity_failures(line: str, registry: Registry) -> list[dict[str, Any]]:
    """What a loader would report for the entities of one well-formed line."""
    parts = line.split("\t")
    failures = []
    for field in ("contexts", "unstruct_event", "derived_contexts"):
        raw = parts[FIELD_INDEX[field]]
        if not raw:
            continue
        try:
            envelope = _json.loads(raw)
        except ValueError as exc:
            failures.append(badrows.invalid_json(field, raw, f"the text does not parse as JSON: {exc}"))
            continue
        found = envelope["data"] if field != "unstruct_event" else [envelope["data"]]
        for entity in found:
            schema = registry.schema(entity["schema"])
            if schema is None:
                history = [badrows.lookup("Iglu Central", attempts=1, last_attempt=WHEN), badrows.lookup("acme static", last_attempt=WHEN)]  # fmt: skip
                failures.append(badrows.resolution_error(entity["schema"], history))
                continue
            errors = list(jsonschema.Draft4Validator(schema).iter_errors(entity["data"]))
            if errors:
                failures.append(badrows.validation_error(entity["schema"], badrows.data_reports_from_jsonschema(errors)))
    return failures


@pytest.mark.parametrize("kind", ["invalid_json", "schema_violation", "unknown_schema"])
def test_iglu_errors(iglu_central: Path, registry: Registry, samples: dict[str, list[str]], kind: str) -> None:
    expected = {"invalid_json": "WrongType", "schema_violation": "ValidationError", "unknown_schema": "ResolutionError"}
    for line in samples[kind]:
        failures = entity_failures(line, registry)
        assert failures, line
        row = badrows.iglu_error(badrows.event_payload(line.split("\t")), failures)
        assert row["schema"] == "iglu:com.snowplowanalytics.snowplow.badrows/loader_iglu_error/jsonschema/2-0-1"
        assert_valid_badrow(iglu_central, row)
        kinds = {"WrongType" if "expected" in f else f["error"]["error"] for f in row["data"]["failure"]}
        assert kinds == {expected[kind]}, row["data"]["failure"]
        if kind == "invalid_json":
            assert row["data"]["payload"]["contexts"] is None  # the raw text is in the failure instead
            assert row["data"]["failure"][0]["value"] == line.split("\t")[FIELD_INDEX["contexts"]]
    assert all(not entity_failures(line, registry) for line in samples["good"][:200])


def test_validation_error_reports(registry: Registry) -> None:
    schema = registry.schema("iglu:com.acme/cart/jsonschema/1-0-0")
    data = {"cart_id": "c", "total": "12.50", "item_count": 1, "items": [{"sku": "S", "quantity": 0, "unit_price": 1}], "colour": "red"}  # fmt: skip
    reports = badrows.data_reports_from_jsonschema(jsonschema.Draft4Validator(schema).iter_errors(data))
    by_keyword = {r["keyword"]: r for r in reports}
    assert set(by_keyword) == {"required", "type", "minimum", "additionalProperties"}
    assert by_keyword["required"] == {"message": "'currency' is a required property", "path": "$", "keyword": "required", "targets": ["currency"]}  # fmt: skip
    assert by_keyword["type"]["path"] == "$.total" and by_keyword["type"]["targets"] == ["number"]
    assert by_keyword["minimum"]["path"] == "$.items[0].quantity"
    assert by_keyword["additionalProperties"]["targets"] == ["colour"]
    with pytest.raises(ValueError):
        badrows.validation_error("iglu:a/b/jsonschema/1-0-0", [])
    with pytest.raises(ValueError):
        badrows.validation_error("iglu:a/b/jsonschema/1-0-0", [{"message": "m"}])


def test_resolution_error_shape() -> None:
    entry = badrows.lookup("Iglu Central", [{"error": "RepoFailure", "message": "x" * 300}], attempts=3, last_attempt=WHEN)
    assert entry == {
        "repository": "Iglu Central",
        "errors": [{"error": "RepoFailure", "message": "x" * 256}],
        "attempts": 3,
        "lastAttempt": "2026-03-01T12:00:00.250Z",
    }
    failure = badrows.resolution_error("iglu:com.acme/wishlist/jsonschema/1-0-0", [entry])
    assert failure == {"schemaKey": "iglu:com.acme/wishlist/jsonschema/1-0-0", "error": {"error": "ResolutionError", "lookupHistory": [entry]}}  # fmt: skip
    with pytest.raises(ValueError):
        badrows.resolution_error("iglu:a/b/jsonschema/1-0-0", [])


def test_invalid_json_is_a_wrong_type_entry() -> None:
    entry = badrows.invalid_json("unstruct_event", "{nope", "Expecting property name")
    assert entry["schemaKey"] == "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0"
    assert entry["value"] == "{nope" and "Expecting property name" in entry["expected"]
    with pytest.raises(ValueError):
        badrows.invalid_json("page_url", "x", "y")


def test_iglu_error_needs_a_failure(samples: dict[str, list[str]]) -> None:
    with pytest.raises(ValueError):
        badrows.iglu_error(badrows.event_payload(samples["good"][0].split("\t")), [])


# -- loader_runtime_error -----------------------------------------------------------------------


def test_runtime_error(iglu_central: Path, samples: dict[str, list[str]]) -> None:
    payload = badrows.event_payload(samples["good"][0].split("\t"))
    row = badrows.runtime_error(payload, 'ERROR: value too long for type character varying(128)')
    assert row["schema"] == "iglu:com.snowplowanalytics.snowplow.badrows/loader_runtime_error/jsonschema/1-0-1"
    assert row["data"]["failure"] == "ERROR: value too long for type character varying(128)"
    assert_valid_badrow(iglu_central, row)


# -- the event payload --------------------------------------------------------------------------


def test_event_payload_of_good_lines(iglu_central: Path, samples: dict[str, list[str]]) -> None:
    validator = badrow_validator(iglu_central, badrows.IGLU_ERROR)
    payload_schema = jsonschema.Draft4Validator(validator.schema["properties"]["payload"])
    for line in samples["good"]:
        parts = line.split("\t")
        payload = badrows.event_payload(parts)
        assert not list(payload_schema.iter_errors(payload))
        assert list(payload)[:128] == list(ATOMIC_COLUMNS)
        assert list(payload)[128:] == ["contexts", "unstruct_event", "derived_contexts"]
        decoded = tsv.decode(parts)
        for f in FIELDS:
            value, expected = payload[f.name], decoded[f.name]
            if expected is None or f.kind != "tstamp":
                assert value == expected, f.name
            else:
                assert_rfc3339_utc(value)
                assert datetime.fromisoformat(value) == expected, f.name


def test_event_payload_of_lines_that_do_not_decode(iglu_central: Path, samples: dict[str, list[str]]) -> None:
    validator = badrow_validator(iglu_central, badrows.IGLU_ERROR)
    payload_schema = jsonschema.Draft4Validator(validator.schema["properties"]["payload"])
    parts = samples["good"][0].split("\t")
    parts[FIELD_INDEX["collector_tstamp"]] = "yesterday"
    parts[FIELD_INDEX["page_urlport"]] = "https"
    parts[FIELD_INDEX["br_cookies"]] = "true"
    parts[FIELD_INDEX["geo_country"]] = "NLD"
    parts[FIELD_INDEX["contexts"]] = "[1, 2]"  # JSON, but not an object
    parts[FIELD_INDEX["unstruct_event"]] = "{broken"
    payload = badrows.event_payload(parts)
    assert not list(payload_schema.iter_errors(payload))
    assert payload["collector_tstamp"] == "yesterday" and payload["page_urlport"] is None
    assert payload["br_cookies"] is None and payload["geo_country"] == "NL"
    assert payload["contexts"] is None and payload["unstruct_event"] is None
    with pytest.raises(ValueError):
        badrows.event_payload(parts[:100])
