"""The Iglu resolver against the real Iglu Central registry (a static directory) and small registries of our own."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from airflow_osds.snowplow._bootstrap import SCHEMAS as BOOTSTRAP
from airflow_osds.snowplow.iglu import (
    DataValidationError,
    HttpRepository,
    IgluError,
    InvalidSchemaError,
    Resolver,
    SchemaCriterion,
    SchemaKey,
    SchemaListNotFoundError,
    SchemaResolutionError,
    StaticRepository,
)
from tests.unit.snowplow._support import (
    BADROW_KEY,
    WEB_PAGE,
    Clock,
    CountingRepository,
    assert_valid_badrow,
    badrow,
    iglu_central,
    self_describing,
    write_registry,
)

ACME_EVENT = "iglu:com.acme/checkout/jsonschema/1-0-0"
UUID = "6e4a2e3c-0d7b-4c8f-9a32-123456789abc"


@pytest.fixture(scope="module")
def central() -> Path:
    return iglu_central()


@pytest.fixture(scope="module")
def resolver(central: Path) -> Resolver:
    return Resolver([StaticRepository(central, name="Iglu Central")])


# --------------------------------------------------------------------------- keys


def test_schema_key_parses_and_renders() -> None:
    key = SchemaKey.parse("iglu:com.snowplowanalytics.snowplow/link_click/jsonschema/1-0-12")
    assert (key.vendor, key.name, key.format, key.model, key.revision, key.addition) == (
        "com.snowplowanalytics.snowplow",
        "link_click",
        "jsonschema",
        1,
        0,
        12,
    )
    assert key.version == "1-0-12"
    assert key.path == "com.snowplowanalytics.snowplow/link_click/jsonschema/1-0-12"
    assert key.uri == "iglu:com.snowplowanalytics.snowplow/link_click/jsonschema/1-0-12"
    assert SchemaKey.parse(key.uri) == key


@pytest.mark.parametrize(
    "uri",
    [
        "iglu:com.acme/event/jsonschema/0-0-1",  # the model starts at 1
        "iglu:com.acme/event/jsonschema/1-01-0",  # no leading zeros
        "iglu:com.acme/event/jsonschema/1-0",
        "iglu:com.acme/event/1-0-0",
        "com.acme/event/jsonschema/1-0-0",
        "iglu:com.acme/ev ent/jsonschema/1-0-0",
        "iglu:com.acme/event/jsonschema/1-0-0/extra",
        "iglu:com.acme/event.v2/jsonschema/1-0-0",  # no dots in names
        "iglu:../event/jsonschema/1-0-0",  # would climb out of a static registry
        "",
    ],
)
def test_bad_uris_are_refused_with_the_grammar(uri: str) -> None:
    with pytest.raises(ValueError, match="Invalid Iglu") as excinfo:
        SchemaKey.parse(uri)
    assert repr(uri) in str(excinfo.value) or "'..'" in str(excinfo.value)


def test_non_string_uri_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="Invalid Iglu schema URI"):
        SchemaKey.parse(None)  # type: ignore[arg-type]


def test_keys_order_by_schemaver_numerically() -> None:
    versions = ["1-0-10", "2-0-0", "1-0-9", "1-1-0", "1-0-0"]
    keys = sorted(SchemaKey.parse(f"iglu:com.acme/e/jsonschema/{v}") for v in versions)
    assert [k.version for k in keys] == ["1-0-0", "1-0-9", "1-0-10", "1-1-0", "2-0-0"]
    assert SchemaKey.parse("iglu:com.acme/e/jsonschema/1-0-10") > SchemaKey.parse("iglu:com.acme/e/jsonschema/1-0-9")


def test_criterion_matches_versions() -> None:
    criterion = SchemaCriterion.parse("iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-*")
    assert criterion.uri == "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-*"
    assert criterion.matches(SchemaKey.parse("iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1"))
    assert not criterion.matches(SchemaKey.parse("iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-1-0"))
    assert not criterion.matches(SchemaKey.parse("iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0"))
    with pytest.raises(ValueError, match="criterion"):
        SchemaCriterion.parse("iglu:com.acme/e/jsonschema/1-0")


# --------------------------------------------------------------------------- lookups on Iglu Central


def test_lookup_returns_the_schema_file(resolver: Resolver, central: Path) -> None:
    schema = resolver.lookup(WEB_PAGE)
    assert schema == json.loads((central / "schemas" / WEB_PAGE.path).read_text())


def test_every_iglu_central_jsonschema_passes_the_schema_checks(central: Path) -> None:
    fresh = Resolver([StaticRepository(central, name="Iglu Central")])
    files = sorted((central / "schemas").glob("*/*/jsonschema/*"))
    assert len(files) > 600
    for file in files:
        key = SchemaKey.parse("iglu:" + file.relative_to(central / "schemas").as_posix())
        assert fresh.lookup(key)["self"]["version"] == key.version
    # Compiling is ~12 ms a schema: a fixed sample, plus every schema that uses $ref.
    with_refs = [f for f in files if '"$ref"' in f.read_text()]
    for file in files[::25] + with_refs:
        fresh.validator(SchemaKey.parse("iglu:" + file.relative_to(central / "schemas").as_posix()))


def test_versions_lists_the_model_directory(resolver: Resolver, central: Path) -> None:
    listed = resolver.versions("com.snowplowanalytics.snowplow", "link_click", 1)
    on_disk = sorted((central / "schemas/com.snowplowanalytics.snowplow/link_click/jsonschema").iterdir())
    assert [k.version for k in listed] == [p.name for p in on_disk if p.name.startswith("1-")]
    assert listed == sorted(listed) and len(listed) >= 2


def test_versions_of_an_unknown_model_is_schema_list_not_found(resolver: Resolver) -> None:
    with pytest.raises(SchemaListNotFoundError) as excinfo:
        resolver.versions("com.snowplowanalytics.snowplow", "link_click", 9)
    failure = excinfo.value.failure()
    assert failure["schemaCriterion"] == "iglu:com.snowplowanalytics.snowplow/link_click/jsonschema/9-*-*"
    assert [h["repository"] for h in failure["error"]["lookupHistory"]] == ["osds-bootstrap", "Iglu Central"]
    assert_valid_badrow([failure])


def test_missing_schema_has_a_lookup_history_per_repository(central: Path, tmp_path: Path) -> None:
    local = write_registry(tmp_path / "local", {})
    resolver = Resolver([StaticRepository(local, name="local", priority=1), StaticRepository(central, name="Iglu Central")])
    key = SchemaKey.parse(ACME_EVENT)
    with pytest.raises(SchemaResolutionError) as excinfo:
        resolver.lookup(key)
    error = excinfo.value
    assert ACME_EVENT in str(error)
    for name in ("osds-bootstrap", "'local'", "'Iglu Central'"):
        assert name in str(error)
    history = error.lookup_history
    assert [h["repository"] for h in history] == ["osds-bootstrap", "Iglu Central", "local"]  # priority order
    for entry in history:
        assert entry["errors"] == [{"error": "NotFound"}]
        assert entry["attempts"] == 1
        assert entry["lastAttempt"].endswith("Z")
    failure = error.failure()
    assert failure == {"schemaKey": ACME_EVENT, "error": {"error": "ResolutionError", "lookupHistory": history}}
    assert_valid_badrow([failure])


def test_failure_entries_validate_with_our_own_validator_too(resolver: Resolver) -> None:
    with pytest.raises(SchemaResolutionError) as excinfo:
        resolver.lookup(SchemaKey.parse(ACME_EVENT))
    key, data = resolver.validate_self_describing(badrow([excinfo.value.failure()]))
    assert key == BADROW_KEY and data["failure"][0]["schemaKey"] == ACME_EVENT
    with pytest.raises(DataValidationError):  # and the bad-row schema does reject a wrong shape
        resolver.validate_self_describing(badrow([{"schemaKey": ACME_EVENT, "error": {"error": "ResolutionError"}}]))


def test_bootstrap_schemas_are_iglu_centrals(central: Path) -> None:
    for uri, schema in BOOTSTRAP.items():
        assert schema == json.loads((central / "schemas" / SchemaKey.parse(uri).path).read_text()), uri


def test_envelopes_resolve_without_any_repository() -> None:
    resolver = Resolver([])
    for uri in BOOTSTRAP:
        assert resolver.lookup(SchemaKey.parse(uri))["self"]["version"] == SchemaKey.parse(uri).version
    with pytest.raises(SchemaResolutionError):
        Resolver([], bootstrap=False).lookup(SchemaKey.parse(next(iter(BOOTSTRAP))))


def test_remote_ref_to_iglu_central_resolves_through_the_resolver(central: Path) -> None:
    # sauna's command schema $refs http://iglucentral.com/schemas/.../instance-iglu-only/jsonschema/1-0-0#
    # twice; the reference is served by the resolver's registries (here the bootstrap), never fetched.
    repo = CountingRepository(central, name="Iglu Central")
    resolver = Resolver([repo])
    key = SchemaKey.parse("iglu:com.snowplowanalytics.sauna.commands/command/jsonschema/1-0-0")
    assert "iglucentral.com" in resolver.lookup(key)["properties"]["command"]["$ref"]
    validate = resolver.validator(key)
    envelope = {"schema": "iglu:com.acme/x/jsonschema/1-0-0", "data": {}}
    assert validate({"envelope": envelope, "command": envelope}) == []
    reports = validate({"envelope": envelope, "command": {"schema": "not an iglu uri", "data": {}}})
    assert [(r["path"], r["keyword"]) for r in reports] == [("$.command.schema", "pattern")]
    reports = validate({"envelope": envelope, "command": {"data": {}}})
    assert [(r["path"], r["keyword"], r["targets"]) for r in reports] == [("$.command", "required", ["schema"])]
    assert repo.fetches == {key.uri: 1}


# --------------------------------------------------------------------------- order and config


def _two_registries(tmp_path: Path) -> tuple[Path, Path]:
    uri = ACME_EVENT
    a = write_registry(tmp_path / "a", {uri: self_describing(uri, {"description": "from a", "type": "object"})})
    b = write_registry(tmp_path / "b", {uri: self_describing(uri, {"description": "from b", "type": "object"})})
    return a, b


def test_ascending_priority_decides(tmp_path: Path) -> None:
    a, b = _two_registries(tmp_path)
    key = SchemaKey.parse(ACME_EVENT)
    first_b = Resolver([StaticRepository(a, name="a", priority=5), StaticRepository(b, name="b", priority=1)])
    assert first_b.lookup(key)["description"] == "from b"
    first_a = Resolver([StaticRepository(a, name="a", priority=0), StaticRepository(b, name="b", priority=1)])
    assert first_a.lookup(key)["description"] == "from a"
    same = Resolver([StaticRepository(b, name="b"), StaticRepository(a, name="a")])  # ties: given order
    assert same.lookup(key)["description"] == "from b"


def test_vendor_prefixes_come_before_priority(tmp_path: Path) -> None:
    a, b = _two_registries(tmp_path)
    resolver = Resolver(
        [StaticRepository(a, name="a", priority=0), StaticRepository(b, name="b", priority=9, vendor_prefixes=["com.acme"])]
    )
    assert resolver.lookup(SchemaKey.parse(ACME_EVENT))["description"] == "from b"
    assert [r.name for r in resolver.repositories_for("com.acme")] == ["osds-bootstrap", "b", "a"]
    assert [r.name for r in resolver.repositories_for("com.other")] == ["osds-bootstrap", "a", "b"]


def test_from_sources_keeps_the_given_order(tmp_path: Path) -> None:
    a, b = _two_registries(tmp_path)
    resolver = Resolver.from_sources([b, str(a), "https://iglu.example.com/api"])
    assert [type(r).__name__ for r in resolver.repositories] == ["StaticRepository", "StaticRepository", "HttpRepository"]
    assert resolver.lookup(SchemaKey.parse(ACME_EVENT))["description"] == "from b"
    assert [r.priority for r in resolver.repositories] == [0, 1, 2]


def test_from_config_reads_snowplow_resolver_config(tmp_path: Path) -> None:
    a, b = _two_registries(tmp_path)
    config = {
        "schema": "iglu:com.snowplowanalytics.iglu/resolver-config/jsonschema/1-0-3",
        "data": {
            "cacheSize": 500,
            "cacheTtl": 30,
            "repositories": [
                {"name": "Iglu Central", "priority": 0, "vendorPrefixes": ["com.snowplowanalytics"],
                 "connection": {"http": {"uri": "http://iglucentral.com"}}},
                {"name": "Server", "priority": 5, "vendorPrefixes": [],
                 "connection": {"http": {"uri": "https://iglu.example.com/api", "apikey": "secret-key"}}},
                {"name": "embedded b", "priority": 1, "vendorPrefixes": ["com.acme"], "connection": {"embedded": {"path": "/b"}}},
                {"name": "embedded a", "priority": 0, "vendorPrefixes": [], "connection": {"embedded": {"path": "/a"}}},
            ],
        },
    }
    resolver = Resolver.from_config(config, base_dir=tmp_path)
    assert resolver.cache_ttl == 30
    assert [r.name for r in resolver.repositories_for("com.acme")] == ["osds-bootstrap", "embedded b", "Iglu Central", "embedded a", "Server"]
    server = next(r for r in resolver.repositories if r.name == "Server")
    assert isinstance(server, HttpRepository) and server.apikey == "secret-key" and "secret-key" not in repr(server)
    assert resolver.lookup(SchemaKey.parse(ACME_EVENT))["description"] == "from b"
    assert Resolver.from_config(config["data"], base_dir=tmp_path).cache_ttl == 30  # the bare data works too


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"repositories": "no"}, "'repositories' list"),
        ({"repositories": [{"name": "x"}]}, "needs a 'connection'"),
        ({"repositories": [{"name": "x", "connection": {"ftp": {}}}]}, "must be"),
        ({"repositories": [{"name": "x", "connection": {"http": {}}}]}, "needs a 'uri'"),
        ({"cacheTtl": -1, "repositories": []}, "cacheTtl"),
        ({"schema": "iglu:com.acme/config/jsonschema/1-0-0", "data": {"repositories": []}}, "is not iglu:com.snowplowanalytics.iglu/resolver-config"),
    ],
)
def test_bad_resolver_configs_say_what_is_wrong(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Resolver.from_config(config)


def test_duplicate_repository_names_are_refused(tmp_path: Path) -> None:
    a, b = _two_registries(tmp_path)
    with pytest.raises(ValueError, match="unique.*same"):
        Resolver([StaticRepository(a, name="same"), StaticRepository(b, name="same")])


def test_a_directory_without_schemas_is_not_a_registry(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no schemas/ directory"):
        StaticRepository(tmp_path)


# --------------------------------------------------------------------------- caching


def test_a_found_schema_is_fetched_once(central: Path) -> None:
    repo = CountingRepository(central, name="Iglu Central")
    clock = Clock()
    resolver = Resolver([repo], cache_ttl=10, clock=clock)
    for _ in range(3):
        resolver.lookup(WEB_PAGE)
        clock.now += 100  # far beyond the TTL: hits do not expire
    resolver.validator(WEB_PAGE)({"id": UUID})
    assert repo.fetches == {WEB_PAGE.uri: 1}


def test_a_miss_is_fetched_once_per_ttl(central: Path) -> None:
    repo = CountingRepository(central, name="Iglu Central")
    clock = Clock()
    resolver = Resolver([repo], cache_ttl=60, clock=clock)
    key = SchemaKey.parse(ACME_EVENT)
    for _ in range(5):
        with pytest.raises(SchemaResolutionError):
            resolver.lookup(key)
        clock.now += 10
    assert repo.fetches == {ACME_EVENT: 1}
    clock.now += 60
    with pytest.raises(SchemaResolutionError):
        resolver.lookup(key)
    assert repo.fetches == {ACME_EVENT: 2}


def test_ttl_zero_caches_no_miss_and_none_caches_forever(central: Path) -> None:
    key = SchemaKey.parse(ACME_EVENT)
    for ttl, expected in ((0, 3), (None, 1)):
        repo = CountingRepository(central, name="Iglu Central")
        clock = Clock()
        resolver = Resolver([repo], cache_ttl=ttl, clock=clock)
        for _ in range(3):
            with pytest.raises(SchemaResolutionError):
                resolver.lookup(key)
            clock.now += 10**6
        assert repo.fetches[ACME_EVENT] == expected, ttl


def test_a_schema_published_after_a_miss_is_found_once_the_ttl_expires(tmp_path: Path) -> None:
    root = write_registry(tmp_path / "r", {})
    clock = Clock()
    resolver = Resolver([StaticRepository(root, name="r")], cache_ttl=60, clock=clock)
    key = SchemaKey.parse(ACME_EVENT)
    with pytest.raises(SchemaResolutionError):
        resolver.lookup(key)
    write_registry(root, {ACME_EVENT: self_describing(ACME_EVENT, {"type": "object"})})
    with pytest.raises(SchemaResolutionError):  # still the cached miss
        resolver.lookup(key)
    clock.now += 61
    assert resolver.lookup(key)["type"] == "object"


def test_validators_are_compiled_once(resolver: Resolver) -> None:
    assert resolver.validator(WEB_PAGE) is resolver.validator(WEB_PAGE)


def test_concurrent_first_lookups_fetch_once(central: Path) -> None:
    repo = CountingRepository(central, name="Iglu Central")
    resolver = Resolver([repo])
    key = SchemaKey.parse("iglu:com.snowplowanalytics.snowplow/client_session/jsonschema/1-0-2")
    barrier = threading.Barrier(8)
    results: list[Any] = []

    def work() -> None:
        barrier.wait()
        validator = resolver.validator(key)
        results.append((resolver.lookup(key), validator({"sessionId": "x"})))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert repo.fetches == {key.uri: 1}
    assert len(results) == 8 and all(r == results[0] for r in results)
    assert {r["keyword"] for r in results[0][1]} == {"required", "format"}


# --------------------------------------------------------------------------- invalid schemas


def test_unparsable_file_is_a_repo_failure_and_the_next_repository_answers(tmp_path: Path) -> None:
    broken = write_registry(tmp_path / "broken", {ACME_EVENT: "{not json"})
    good = write_registry(tmp_path / "good", {ACME_EVENT: self_describing(ACME_EVENT, {"type": "object"})})
    resolver = Resolver([StaticRepository(broken, name="broken"), StaticRepository(good, name="good", priority=1)])
    assert resolver.lookup(SchemaKey.parse(ACME_EVENT))["type"] == "object"
    alone = Resolver([StaticRepository(broken, name="broken")])
    with pytest.raises(SchemaResolutionError) as excinfo:
        alone.lookup(SchemaKey.parse(ACME_EVENT))
    (entry,) = [h for h in excinfo.value.lookup_history if h["repository"] == "broken"]
    assert entry["errors"][0]["error"] == "RepoFailure" and "not valid JSON" in entry["errors"][0]["message"]
    assert len(entry["errors"][0]["message"]) <= 256


@pytest.mark.parametrize(
    ("schema", "path", "fragment"),
    [
        (self_describing("iglu:com.acme/other/jsonschema/1-0-0", {"type": "object"}), "$.self", "describes itself as iglu:com.acme/other"),
        ({"$schema": "http://iglucentral.com/schemas/com.snowplowanalytics.self-desc/schema/jsonschema/1-0-0#", "type": "object"}, "$.self", "needs a 'self'"),
        (self_describing(ACME_EVENT, {"type": "strin"}), "$.type", "is not valid under any of the given schemas"),
        (self_describing(ACME_EVENT, {"properties": {"a": {"maxLength": -1}}}), "$.properties.a.maxLength", "less than the minimum"),
        (self_describing(ACME_EVENT, {"properties": {"a": {"pattern": "(unclosed"}}}), "$.properties.a.pattern", "regex"),
        (dict(self_describing(ACME_EVENT, {}), **{"$schema": "http://json-schema.org/draft-07/schema#"}), "$.$schema", "not the Iglu self-describing"),
        ([1, 2], "$", "must be a JSON object"),
    ],
)
def test_invalid_schemas_are_invalid_schema_errors(tmp_path: Path, schema: Any, path: str, fragment: str) -> None:
    root = write_registry(tmp_path / "r", {ACME_EVENT: schema})
    clock = Clock()
    repo = CountingRepository(root, name="r")
    resolver = Resolver([repo], clock=clock)
    key = SchemaKey.parse(ACME_EVENT)
    with pytest.raises(InvalidSchemaError) as excinfo:
        resolver.validator(key)
    issues = excinfo.value.issues
    assert any(i["path"] == path and fragment in i["message"] for i in issues), issues
    assert "'r'" in str(excinfo.value) and ACME_EVENT in str(excinfo.value)
    failure = excinfo.value.failure()
    assert failure == {"schemaKey": ACME_EVENT, "error": {"error": "ValidationError", "schemaIssues": issues}}
    assert_valid_badrow([failure])
    with pytest.raises(InvalidSchemaError):  # cached like a miss
        resolver.lookup(key)
    assert repo.fetches == {ACME_EVENT: 1}


def test_a_schema_python_cannot_compile_is_invalid(tmp_path: Path) -> None:
    # Valid draft-04, but the $ref points nowhere: compiling fails, once.
    uri = ACME_EVENT
    root = write_registry(tmp_path / "r", {uri: self_describing(uri, {"properties": {"a": {"$ref": "#/definitions/nope"}}})})
    resolver = Resolver([StaticRepository(root, name="r")])
    with pytest.raises(InvalidSchemaError, match="cannot compile"):
        resolver.validator(SchemaKey.parse(uri))


def test_remote_refs_outside_iglu_are_not_fetched(tmp_path: Path) -> None:
    uri = ACME_EVENT
    schema = self_describing(uri, {"properties": {"a": {"$ref": "http://example.invalid/schema.json#"}}})
    resolver = Resolver([StaticRepository(write_registry(tmp_path / "r", {uri: schema}), name="r")])
    with pytest.raises(InvalidSchemaError, match="remote refs are not fetched"):
        resolver.validator(SchemaKey.parse(uri))


# --------------------------------------------------------------------------- validation


CHECKOUT = self_describing(
    ACME_EVENT,
    {
        "type": "object",
        "properties": {
            "orderId": {"type": "string", "maxLength": 10},
            "total": {"type": "number", "minimum": 0},
            "items": {"type": "integer", "maximum": 100},
            "currency": {"enum": ["EUR", "USD"]},
            "coupon": {"type": ["string", "null"], "minLength": 3},
            "placedAt": {"type": "string", "format": "date-time"},
            "customer": {
                "type": "object",
                "properties": {"email": {"type": "string", "format": "email"}, "id": {"type": "string", "format": "uuid"}},
                "required": ["id"],
                "additionalProperties": False,
            },
            "express": {"type": "boolean"},
        },
        "required": ["orderId", "total", "customer"],
        "additionalProperties": False,
    },
)
GOOD_CHECKOUT = {
    "orderId": "A-1",
    "total": 10.5,
    "items": 3,
    "currency": "EUR",
    "coupon": None,
    "placedAt": "2024-02-29T23:59:59.123+02:00",
    "customer": {"email": "a.b@example.com", "id": UUID},
    "express": True,
}


@pytest.fixture(scope="module")
def checkout_resolver(tmp_path_factory: pytest.TempPathFactory) -> Resolver:
    root = write_registry(tmp_path_factory.mktemp("acme"), {ACME_EVENT: CHECKOUT})
    return Resolver([StaticRepository(root, name="acme")])


def test_valid_data_has_no_reports(checkout_resolver: Resolver) -> None:
    assert checkout_resolver.validator(SchemaKey.parse(ACME_EVENT))(GOOD_CHECKOUT) == []
    checkout_resolver.validate(SchemaKey.parse(ACME_EVENT), GOOD_CHECKOUT)


def test_reports_name_path_keyword_and_targets(checkout_resolver: Resolver) -> None:
    bad = {
        "orderId": "A-1234567890",
        "total": -1,
        "items": "3",
        "currency": "GBP",
        "coupon": "x",
        "placedAt": "2023-02-29T10:00:00Z",  # no 29 February in 2023
        "customer": {"email": "not-an-email", "extra": 1},
        "surprise": True,
    }
    reports = checkout_resolver.validator(SchemaKey.parse(ACME_EVENT))(bad)
    by_path = {(r["path"], r["keyword"]): r for r in reports}
    assert set(by_path) == {
        ("$.orderId", "maxLength"),
        ("$.total", "minimum"),
        ("$.items", "type"),
        ("$.currency", "enum"),
        ("$.coupon", "minLength"),
        ("$.placedAt", "format"),
        ("$.customer.email", "format"),
        ("$.customer", "required"),
        ("$.customer", "additionalProperties"),
        ("$", "additionalProperties"),
    }
    assert by_path[("$.orderId", "maxLength")] == {
        "message": "$.orderId: may only be 10 characters long",
        "path": "$.orderId",
        "keyword": "maxLength",
        "targets": ["10"],
    }
    assert by_path[("$.items", "type")]["message"] == "$.items: string found, integer expected"
    assert by_path[("$.items", "type")]["targets"] == ["string", "integer"]
    assert by_path[("$.customer", "required")]["message"] == "$.customer.id: is missing but it is required"
    assert by_path[("$.customer", "required")]["targets"] == ["id"]
    assert by_path[("$", "additionalProperties")]["targets"] == ["surprise"]
    assert by_path[("$.placedAt", "format")]["targets"] == ["date-time"]
    for report in reports:  # never the datum's values
        assert "A-1234567890" not in report["message"] and "not-an-email" not in report["message"]
    with pytest.raises(DataValidationError) as excinfo:
        checkout_resolver.validate(SchemaKey.parse(ACME_EVENT), bad)
    failure = excinfo.value.failure()
    assert failure["error"]["error"] == "ValidationError" and failure["error"]["dataReports"] == reports
    assert_valid_badrow([failure])


def test_the_fast_verdict_and_the_reports_agree(checkout_resolver: Resolver) -> None:
    validator = checkout_resolver.validator(SchemaKey.parse(ACME_EVENT))
    import jsonschema

    from airflow_osds.snowplow.validation import FORMATS

    checker = jsonschema.FormatChecker(formats=())
    for name, check in FORMATS.items():
        checker.checks(name)(check)
    reference = jsonschema.Draft4Validator(CHECKOUT, format_checker=checker)
    variants: list[Any] = [GOOD_CHECKOUT, {}, [], None, "x"]
    edits = {
        "total": [0, 1e308, -0.0, True, "1", None],
        "items": [100, 101, 1.0, 2.5, False, -(2**70)],
        "placedAt": ["2024-02-29T23:59:59Z", "2024-02-30T00:00:00Z", "2024-01-01 10:00:00Z", "2016-12-31T23:59:60Z",
                     "2016-12-31T22:59:60Z", "2024-01-01T10:00:00+24:00", "2024-01-01T10:00:00", "２０24-01-01T10:00:00Z"],
        "customer": [{"id": UUID}, {"id": UUID.upper()}, {"id": UUID[:-1]}, {"id": UUID, "email": "a..b@x.com"},
                     {"id": UUID, "email": "a@b"}, {"id": UUID, "email": "a@-b.com"}],
        "currency": ["EUR", "eur", None],
        "coupon": [None, "abc", "ab", 3],
        "orderId": ["", "0123456789", "01234567890", "ünïcödé✓✓"],
    }
    for field, values in edits.items():
        for value in values:
            variants.append(dict(GOOD_CHECKOUT, **{field: value}))
    for datum in variants:
        expected_valid = not list(reference.iter_errors(datum))
        assert validator.is_valid(datum) is expected_valid, datum
        assert (validator(datum) == []) is expected_valid, datum


@pytest.mark.parametrize(
    ("fmt", "good", "bad"),
    [
        ("date-time", ["2021-01-01T00:00:00Z", "2021-01-01t00:00:00.5+05:30", "2016-12-31T23:59:60Z"],
         ["2021-01-01", "2021-13-01T00:00:00Z", "2021-01-01T24:00:00Z", "2021-01-01T00:00:00+0100", "2016-12-31T23:58:60Z"]),
        ("date", ["2024-02-29", "0001-01-01"], ["2023-02-29", "2024-1-01", "2024-01-01T00:00:00Z"]),
        ("uuid", [UUID, UUID.upper()], [UUID + "0", "6e4a2e3c0d7b4c8f9a32123456789abc"]),
        ("ipv4", ["127.0.0.1", "255.255.255.255"], ["256.0.0.1", "01.2.3.4", "1.2.3"]),
        ("ipv6", ["::1", "2001:db8::ff00:42:8329", "::ffff:127.0.0.1"], ["fe80::1%eth0", "1:2:3", "12345::"]),
        ("email", ["a.b+c@example.co.uk"], ["a@", "@b.com", "a..b@c.com", "a b@c.com"]),
        ("hostname", ["example.com", "a-b.c"], ["-a.com", "a_b.com", "a" * 64 + ".com"]),
        ("uri", ["https://example.com/a?b=c#d", "urn:isbn:123", "mailto:a@b.c"], ["/relative", "http://exa mple.com", "ftp://é.com", "50%off:x"]),
    ],
)
def test_formats(tmp_path: Path, fmt: str, good: list[str], bad: list[str]) -> None:
    uri = f"iglu:com.acme/fmt_{fmt.replace('-', '_')}/jsonschema/1-0-0"
    root = write_registry(tmp_path / "r", {uri: self_describing(uri, {"type": "string", "format": fmt})})
    validator = Resolver([StaticRepository(root, name="r")]).validator(SchemaKey.parse(uri))
    for value in good:
        assert validator(value) == [], value
    for value in bad:
        reports = validator(value)
        assert [(r["keyword"], r["targets"]) for r in reports] == [("format", [fmt])], value
    assert validator(42) != [] and [r["keyword"] for r in validator(42)] == ["type"]


def test_reports_are_capped(tmp_path: Path) -> None:
    uri = "iglu:com.acme/many/jsonschema/1-0-0"
    root = write_registry(tmp_path / "r", {uri: self_describing(uri, {"type": "array", "items": {"type": "integer"}})})
    validator = Resolver([StaticRepository(root, name="r")]).validator(SchemaKey.parse(uri))
    reports = validator(["x"] * 80)
    assert len(reports) == 51
    assert reports[-1] == {"message": "30 further errors not reported", "path": None, "keyword": None, "targets": None}
    assert reports[0]["path"] == "$[0]" and reports[49]["path"] == "$[49]"


def test_integer_semantics_are_draft_04(checkout_resolver: Resolver) -> None:
    validator = checkout_resolver.validator(SchemaKey.parse(ACME_EVENT))
    assert validator(dict(GOOD_CHECKOUT, items=3)) == []
    assert [r["keyword"] for r in validator(dict(GOOD_CHECKOUT, items=3.0))] == ["type"]  # 1.0 is not an integer in draft-04
    assert [r["keyword"] for r in validator(dict(GOOD_CHECKOUT, items=True))] == ["type"]


def test_validation_does_not_modify_the_data(tmp_path: Path) -> None:
    uri = "iglu:com.acme/defaults/jsonschema/1-0-0"
    schema = self_describing(uri, {"type": "object", "properties": {"a": {"type": "integer", "default": 5}}})
    validator = Resolver([StaticRepository(write_registry(tmp_path / "r", {uri: schema}), name="r")]).validator(SchemaKey.parse(uri))
    datum: dict[str, Any] = {}
    assert validator(datum) == [] and datum == {}


# --------------------------------------------------------------------------- self-describing JSON


def test_validate_self_describing_returns_key_and_data(resolver: Resolver) -> None:
    data = {"id": UUID}
    key, got = resolver.validate_self_describing({"schema": WEB_PAGE.uri, "data": data})
    assert key == WEB_PAGE and got is data


@pytest.mark.parametrize(
    ("instance", "keyword"),
    [
        ({"schema": WEB_PAGE.uri}, "required"),
        ({"schema": WEB_PAGE.uri, "data": {}, "extra": 1}, "additionalProperties"),
        ({"schema": "web_page", "data": {}}, "pattern"),
        ({"schema": "iglu:com.acme/e/jsonschema/0-1-0", "data": {}}, "pattern"),  # passes the pattern, not the grammar
        ([WEB_PAGE.uri, {}], "type"),
    ],
)
def test_malformed_self_describing_json_fails_against_instance_iglu_only(
    resolver: Resolver, instance: Any, keyword: str
) -> None:
    with pytest.raises(DataValidationError) as excinfo:
        resolver.validate_self_describing(instance)
    failure = excinfo.value.failure()
    assert failure["schemaKey"] == "iglu:com.snowplowanalytics.self-desc/instance-iglu-only/jsonschema/1-0-0"
    assert keyword in [r["keyword"] for r in failure["error"]["dataReports"]]
    assert_valid_badrow([failure])


def test_self_describing_errors_are_iglu_errors(resolver: Resolver) -> None:
    with pytest.raises(IgluError):
        resolver.validate_self_describing({"schema": WEB_PAGE.uri, "data": {"id": "x"}})
    with pytest.raises(SchemaResolutionError):
        resolver.validate_self_describing({"schema": ACME_EVENT, "data": {}})


def test_criterion_is_exported_for_envelopes() -> None:
    assert str(SchemaCriterion("com.acme", "e", "jsonschema", 1)) == "iglu:com.acme/e/jsonschema/1-*-*"
