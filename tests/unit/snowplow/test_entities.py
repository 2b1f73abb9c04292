"""Entity fields of an enriched event: envelopes, entities, and 2-0-1 failure entries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from airflow_osds.snowplow.entities import Entity, extract, extract_event
from airflow_osds.snowplow.iglu import Resolver, SchemaKey, StaticRepository
from airflow_osds.snowplow.tables import entity_hash
from tests.unit.snowplow._support import WEB_PAGE, assert_valid_badrow, iglu_central, self_describing, write_registry

CONTEXTS_101 = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1"
CONTEXTS_100 = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0"
UNSTRUCT = "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0"
LINK_CLICK = "iglu:com.snowplowanalytics.snowplow/link_click/jsonschema/1-0-1"
ACME = "iglu:com.acme/cart/jsonschema/1-0-0"
READING = "iglu:com.acme/reading/jsonschema/1-0-0"
UUID = "6e4a2e3c-0d7b-4c8f-9a32-123456789abc"
PAGE = {"schema": WEB_PAGE.uri, "data": {"id": UUID}}
CART = {"schema": ACME, "data": {"items": 2}}


@pytest.fixture(scope="module")
def resolver(tmp_path_factory: pytest.TempPathFactory) -> Resolver:
    cart = self_describing(ACME, {"type": "object", "properties": {"items": {"type": "integer"}}, "required": ["items"]})
    reading = self_describing(READING, {"type": "object", "properties": {"value": {"type": "number"}}})
    local = write_registry(tmp_path_factory.mktemp("acme"), {ACME: cart, READING: reading})
    return Resolver([StaticRepository(local, name="acme"), StaticRepository(iglu_central(), name="Iglu Central")])


def contexts(*items: Any, schema: str = CONTEXTS_101) -> str:
    return json.dumps({"schema": schema, "data": list(items)})


def test_contexts_give_entities_in_order(resolver: Resolver) -> None:
    entities, failures = extract("contexts", contexts(PAGE, CART), resolver)
    assert failures == []
    assert [(e.key.uri, e.data, e.field, e.occurrence) for e in entities] == [
        (WEB_PAGE.uri, {"id": UUID}, "contexts", 0),
        (ACME, {"items": 2}, "contexts", 0),
    ]
    assert entities[0].hash == entity_hash(WEB_PAGE, {"id": UUID})
    key, data, field, *_ = entities[1]  # a tuple: (key, data, field, occurrence, hash)
    assert (key, data, field) == (SchemaKey.parse(ACME), {"items": 2}, "contexts")


def test_unstruct_event_gives_one_entity(resolver: Resolver) -> None:
    event = {"schema": LINK_CLICK, "data": {"targetUrl": "https://example.com"}}
    entities, failures = extract("unstruct_event", json.dumps({"schema": UNSTRUCT, "data": event}), resolver)
    assert failures == [] and [(e.key.uri, e.field) for e in entities] == [(LINK_CLICK, "unstruct_event")]


@pytest.mark.parametrize("raw", ["", None])
def test_an_empty_field_has_nothing(resolver: Resolver, raw: str | None) -> None:
    assert extract("derived_contexts", raw, resolver) == ([], [])


def test_empty_contexts_are_valid_in_1_0_1_not_in_1_0_0(resolver: Resolver) -> None:
    assert extract("contexts", contexts(), resolver) == ([], [])
    entities, failures = extract("contexts", contexts(schema=CONTEXTS_100), resolver)
    assert entities == []
    assert failures == [
        {
            "schemaKey": CONTEXTS_100,
            "error": {
                "error": "ValidationError",
                "dataReports": [
                    {"message": "$: there must be a minimum of 1 items in the array", "path": "$", "keyword": "minItems", "targets": ["1"]}
                ],
            },
        }
    ]
    assert_valid_badrow(failures)


def test_one_bad_entity_does_not_hide_the_good_ones(resolver: Resolver) -> None:
    missing = {"schema": "iglu:com.acme/nope/jsonschema/1-0-0", "data": {}}
    invalid = {"schema": ACME, "data": {"items": "two"}}
    entities, failures = extract("contexts", contexts(PAGE, missing, invalid, CART), resolver)
    assert [e.key.uri for e in entities] == [WEB_PAGE.uri, ACME]
    assert [f["schemaKey"] for f in failures] == ["iglu:com.acme/nope/jsonschema/1-0-0", ACME]
    assert failures[0]["error"]["error"] == "ResolutionError"
    assert [h["repository"] for h in failures[0]["error"]["lookupHistory"]] == ["osds-bootstrap", "acme", "Iglu Central"]
    assert failures[1]["error"] == {
        "error": "ValidationError",
        "dataReports": [{"message": "$.items: string found, integer expected", "path": "$.items", "keyword": "type", "targets": ["string", "integer"]}],
    }
    assert_valid_badrow(failures)


def test_an_entity_uri_outside_the_grammar_is_a_validation_error_of_the_envelope(resolver: Resolver) -> None:
    odd = {"schema": "iglu:com.acme/cart/jsonschema/1-01-0", "data": {}}  # passes the envelope's pattern
    entities, failures = extract("contexts", contexts(PAGE, odd), resolver)
    assert [e.key for e in entities] == [WEB_PAGE]
    (failure,) = failures
    assert failure["schemaKey"] == CONTEXTS_101
    (report,) = failure["error"]["dataReports"]
    assert (report["path"], report["keyword"], report["targets"]) == ("$[1].schema", "pattern", [odd["schema"]])
    assert_valid_badrow(failures)


def test_a_malformed_envelope_item_fails_the_whole_field(resolver: Resolver) -> None:
    entities, failures = extract("contexts", contexts(PAGE, {"schema": ACME}), resolver)
    assert entities == []
    (failure,) = failures
    assert failure["schemaKey"] == CONTEXTS_101
    assert [(r["path"], r["keyword"], r["targets"]) for r in failure["error"]["dataReports"]] == [("$[1]", "required", ["data"])]


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ('{"schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1", "data": [', "invalid JSON: Expecting value"),
        ('{"schema": "x", "data": NaN}', "NaN is not valid JSON"),
        ("not json", "invalid JSON"),
    ],
)
def test_invalid_json_is_wrong_type_keeping_the_text(resolver: Resolver, raw: str, fragment: str) -> None:
    entities, failures = extract("contexts", raw, resolver)
    assert entities == []
    (failure,) = failures
    assert failure["schemaKey"] == CONTEXTS_100 and failure["value"] == raw
    assert fragment in failure["expected"] and "contexts/jsonschema/1-0-*" in failure["expected"]
    assert_valid_badrow(failures)


def test_the_wrong_envelope_is_wrong_type(resolver: Resolver) -> None:
    document = {"schema": UNSTRUCT, "data": PAGE}
    entities, failures = extract("contexts", json.dumps(document), resolver)
    assert entities == []
    assert failures == [
        {
            "schemaKey": CONTEXTS_100,
            "value": document,
            "expected": f"a contexts envelope, iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-*; got {UNSTRUCT}",
        }
    ]
    assert_valid_badrow(failures)
    _, failures = extract("unstruct_event", contexts(PAGE), resolver)
    assert failures[0]["schemaKey"] == UNSTRUCT and CONTEXTS_101 in failures[0]["expected"]


def test_a_non_self_describing_field_fails_against_instance_iglu_only(resolver: Resolver) -> None:
    _, failures = extract("unstruct_event", json.dumps({"data": PAGE}), resolver)
    (failure,) = failures
    assert failure["schemaKey"] == "iglu:com.snowplowanalytics.self-desc/instance-iglu-only/jsonschema/1-0-0"
    assert failure["error"]["dataReports"][0]["targets"] == ["schema"]


def test_unknown_fields_are_refused(resolver: Resolver) -> None:
    with pytest.raises(KeyError):
        extract("page_url", contexts(PAGE), resolver)


def test_identical_entities_are_numbered_not_collapsed(resolver: Resolver) -> None:
    entities, _ = extract("contexts", contexts(PAGE, CART, PAGE, PAGE), resolver)
    assert [(e.key.name, e.occurrence) for e in entities] == [("web_page", 0), ("cart", 0), ("web_page", 1), ("web_page", 2)]
    hashes = [e.hash for e in entities]
    assert len(set(hashes)) == 4 and all(len(h) == 32 for h in hashes)
    again, _ = extract("contexts", contexts(PAGE, CART, PAGE, PAGE), resolver)  # a replay: the same hashes
    assert [e.hash for e in again] == hashes


def test_extract_event_numbers_across_fields(resolver: Resolver) -> None:
    event = {
        "contexts": contexts(PAGE),
        "derived_contexts": contexts(PAGE, CART),
        "unstruct_event": json.dumps({"schema": UNSTRUCT, "data": CART}),
        "page_url": "ignored",
    }
    entities, failures = extract_event(event, resolver)
    assert failures == []
    assert [(e.field, e.key.name, e.occurrence) for e in entities] == [
        ("contexts", "web_page", 0),
        ("derived_contexts", "web_page", 1),
        ("derived_contexts", "cart", 0),
        ("unstruct_event", "cart", 1),
    ]
    assert len({e.hash for e in entities}) == 4


def test_a_memo_parses_each_distinct_field_text_once_with_the_same_result(resolver: Resolver) -> None:
    events = [
        {"contexts": contexts(PAGE), "derived_contexts": contexts(CART)},
        {"contexts": contexts(PAGE, PAGE), "derived_contexts": contexts(CART)},
        {"contexts": "{", "derived_contexts": contexts(CART)},
    ]
    memo: dict = {}
    with_memo = [extract_event(e, resolver, memo) for e in events]
    assert with_memo == [extract_event(e, resolver) for e in events]
    assert len(memo) == 5  # three contexts texts, one derived_contexts text, one empty unstruct_event
    assert with_memo[0][0][1].canonical and with_memo[0][0][1].hash == with_memo[1][0][2].hash


def test_an_entity_shared_by_field_texts_that_differ_is_checked_once(resolver: Resolver) -> None:
    other_page = {"schema": WEB_PAGE.uri, "data": {"id": UUID.replace("6e4a", "7f5b")}}
    bad_cart = {"schema": ACME, "data": {"items": "two"}}
    events = [
        {"contexts": contexts(PAGE), "derived_contexts": contexts(PAGE, CART, bad_cart)},
        {"contexts": contexts(other_page), "derived_contexts": contexts(other_page, CART, bad_cart)},
    ]
    seen: dict = {}
    with_memo = [extract_event(e, resolver, {}, seen) for e in events]
    assert with_memo == [extract_event(e, resolver) for e in events]
    assert len(seen) == 4, "two pages, the cart and the bad cart: one entry each, whichever texts they came in"
    assert sum(isinstance(known, dict) for known in seen.values()) == 1  # the bad cart's failure, kept
    assert [len(failures) for _, failures in with_memo] == [1, 1]
    cart_hashes = {e.hash for entities, _ in with_memo for e in entities if e.key.name == "cart"}
    assert cart_hashes == {entity_hash(SchemaKey.parse(ACME), {"items": 2})}


def test_a_number_past_a_doubles_range_is_a_failure_not_a_crash(resolver: Resolver) -> None:
    # The standard parser reads 1e999 as inf (msgspec refuses it), which the schema's "number"
    # accepts and no JSON text can hold: the entity cannot be hashed.
    text = contexts({"schema": READING, "data": {"value": 1}}, PAGE).replace('"value": 1}', '"value": 1e999}')
    entities, failures = extract("contexts", text, resolver)
    assert [e.key for e in entities] == [WEB_PAGE]
    assert failures == [{"schemaKey": READING, "value": text,
                         "expected": "numbers within a double's range (one is not: it can be neither hashed nor stored)"}]
    assert_valid_badrow(failures)
    fine, none = extract("contexts", text.replace("1e999", "1e308"), resolver)
    assert none == [] and [e.key.name for e in fine] == ["reading", "web_page"]


def test_extract_event_collects_every_fields_failures(resolver: Resolver) -> None:
    entities, failures = extract_event({"contexts": "{", "unstruct_event": json.dumps({"schema": UNSTRUCT, "data": {"schema": ACME, "data": {}}})}, resolver)
    assert entities == []
    assert [f["schemaKey"] for f in failures] == [CONTEXTS_100, ACME]
    assert_valid_badrow(failures)


def test_entities_are_plain_tuples() -> None:
    entity = Entity(WEB_PAGE, {"id": UUID}, "contexts")
    assert tuple(entity)[:3] == (WEB_PAGE, {"id": UUID}, "contexts") and entity.occurrence == 0


def test_extract_with_a_resolver_of_no_repositories_still_reads_envelopes(tmp_path: Path) -> None:
    entities, failures = extract("contexts", contexts(PAGE), Resolver([]))
    assert entities == [] and failures[0]["schemaKey"] == WEB_PAGE.uri
    assert [h["repository"] for h in failures[0]["error"]["lookupHistory"]] == ["osds-bootstrap"]
