"""The synthetic event generator: deterministic, realistic, valid, and bad exactly where asked."""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from itertools import islice
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from airflow_osds.snowplow import _json, tsv
from airflow_osds.snowplow import generate as gen
from airflow_osds.snowplow.fields import FIELD_INDEX

from .conftest import Registry

START = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def labelled() -> list[tuple[str, str]]:
    return list(gen.generate_labelled(3000, seed=11, start=START, bad=60))


@pytest.fixture(scope="module")
def good(labelled: list[tuple[str, str]]) -> list[dict[str, Any]]:
    return [tsv.decode(line.split("\t")) for kind, line in labelled if kind == "good"]


def entities(event: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for field in ("contexts", "derived_contexts"):
        if event[field] is not None:
            found += event[field]["data"]
    if event["unstruct_event"] is not None:
        found.append(event["unstruct_event"]["data"])
    return found


def test_same_seed_same_lines_other_seed_other_lines() -> None:
    first = list(gen.generate(500, seed=3, start=START))
    assert first == list(gen.generate(500, seed=3, start=START))
    assert first != list(gen.generate(500, seed=4, start=START))
    assert len(set(first)) == 500


def test_start_moves_the_timestamps() -> None:
    a = tsv.decode(next(gen.generate(1, start=START)).split("\t"))
    b = tsv.decode(next(gen.generate(1, start=START + timedelta(days=30))).split("\t"))
    assert b["collector_tstamp"] - a["collector_tstamp"] == timedelta(days=30)


def test_bad_lines_replace_events_and_leave_the_good_ones_alone(labelled: list[tuple[str, str]]) -> None:
    plain = list(gen.generate(3000, seed=11, start=START))
    kinds = Counter(kind for kind, _ in labelled)
    assert kinds == {"good": 2940, **{k: 10 for k in gen.BAD_KINDS}}
    for (kind, line), clean in zip(labelled, plain, strict=True):
        assert (line == clean) == (kind == "good")
    positions = [i for i, (kind, _) in enumerate(labelled) if kind != "good"]
    assert max(b - a for a, b in zip(positions, positions[1:])) <= 51  # spread evenly, not bunched
    assert [labelled[i][0] for i in positions[:6]] == list(gen.BAD_KINDS)


def test_bad_kinds_can_be_chosen() -> None:
    kinds = {kind for kind, _ in gen.generate_labelled(100, start=START, bad=10, bad_kinds=["invalid_json"])}
    assert kinds == {"good", "invalid_json"}
    with pytest.raises(ValueError):
        list(gen.generate(10, start=START, bad=11))
    with pytest.raises(ValueError):
        list(gen.generate(10, start=START, bad=1, bad_kinds=["nope"]))


def test_good_lines_have_no_invalid_values(labelled: list[tuple[str, str]]) -> None:
    for kind, line in labelled:
        if kind == "good":
            parts = tsv.check(line)
            assert isinstance(parts, list), parts
            assert tsv._invalid_values_exact(parts) == []


def test_good_entities_validate_against_their_schemas(good: list[dict[str, Any]], registry: Registry) -> None:
    seen = Counter()
    for event in good:
        assert event["contexts"]["schema"] == gen.CONTEXTS
        assert event["derived_contexts"]["schema"] == gen.CONTEXTS
        if event["unstruct_event"] is not None:
            assert event["unstruct_event"]["schema"] == gen.UNSTRUCT
        for envelope, field in ((gen.CONTEXTS, "contexts"), (gen.CONTEXTS, "derived_contexts"), (gen.UNSTRUCT, "unstruct_event")):  # fmt: skip
            if event[field] is not None:
                assert registry.check({"schema": envelope, "data": event[field]["data"]}) == "ok"
        for entity in entities(event):
            assert registry.check(entity) == "ok", entity
            seen[entity["schema"]] += 1
    assert set(seen) == {
        gen.WEB_PAGE, gen.YAUAA, gen.SPIDERS, gen.CHECKOUT_STEP, "iglu:com.acme/cart/jsonschema/1-0-0",
    }  # fmt: skip


@pytest.mark.parametrize("version", gen.CART_VERSIONS)
def test_cart_versions(version: str, registry: Registry) -> None:
    carts = []
    for line in gen.generate(3000, seed=5, start=START, cart_version=version):
        event = tsv.decode(line.split("\t"))
        carts += [e for e in entities(event) if e["schema"].startswith("iglu:com.acme/cart/")]
    assert carts and {c["schema"] for c in carts} == {f"iglu:com.acme/cart/jsonschema/{version}"}
    assert all(registry.check(c) == "ok" for c in carts)
    if version == "1-0-1":
        assert any("coupon_code" in c["data"] for c in carts)
    if version == "2-0-0":
        assert all("total_minor" in c["data"] and "total" not in c["data"] for c in carts)
    with pytest.raises(ValueError):
        gen.generate(1, start=START, cart_version="3-0-0").__next__()


def test_event_types(good: list[dict[str, Any]]) -> None:
    builtin = {
        "page_view": ("com.snowplowanalytics.snowplow", "page_view", "jsonschema", "1-0-0"),
        "page_ping": ("com.snowplowanalytics.snowplow", "page_ping", "jsonschema", "1-0-0"),
        "struct": ("com.google.analytics", "event", "jsonschema", "1-0-0"),
        "transaction": ("com.snowplowanalytics.snowplow", "transaction", "jsonschema", "1-0-0"),
        "transaction_item": ("com.snowplowanalytics.snowplow", "transaction_item", "jsonschema", "1-0-0"),
    }
    counts = Counter(e["event"] for e in good)
    assert set(counts) == {*builtin, "unstruct"}
    assert counts["page_ping"] > counts["page_view"] > counts["struct"] > counts["transaction"] > 0
    for e in good:
        schema = (e["event_vendor"], e["event_name"], e["event_format"], e["event_version"])
        if e["event"] == "unstruct":
            vendor, name, fmt, version = e["unstruct_event"]["data"]["schema"].removeprefix("iglu:").split("/")
            assert schema == (vendor, name, fmt, version)
        else:
            assert schema == builtin[e["event"]] and e["unstruct_event"] is None
        if e["event"] == "page_ping":
            assert e["pp_yoffset_max"] >= e["pp_yoffset_min"] >= 0
        if e["event"] == "struct":
            assert e["se_action"] == "add-to-cart" and e["se_value"] > 0
        if e["event"] == "transaction":
            assert e["tr_total"] > 0 and e["tr_currency"] and e["base_currency"] == "EUR" and e["tr_total_base"] > 0
        if e["event"] == "transaction_item":
            assert e["ti_quantity"] >= 1 and e["ti_price"] > 0 and e["ti_orderid"].startswith("ORD-")


def test_sessions_are_consistent(good: list[dict[str, Any]]) -> None:
    sessions: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in good:
        sessions[e["domain_sessionid"]].append(e)
    assert len(sessions) > 50
    by_visitor: dict[str, set[tuple[int, str]]] = defaultdict(set)
    for sid, events in sessions.items():
        for key in ("domain_userid", "network_userid", "domain_sessionidx", "user_ipaddress", "useragent", "geo_city"):
            assert len({e[key] for e in events}) == 1, (sid, key)
        by_visitor[events[0]["domain_userid"]].add((events[0]["domain_sessionidx"], sid))
        page_ids = {}
        for e in events:  # a page view and its pings share one web_page id
            page_id = e["contexts"]["data"][0]["data"]["id"]
            page_ids.setdefault(page_id, set()).add(e["page_url"])
        assert all(len(urls) == 1 for urls in page_ids.values())
    # Returning visitors count their sessions 1, 2, …; every index is a different session.
    returning = [s for s in by_visitor.values() if len(s) > 1]
    assert returning
    for visits in by_visitor.values():
        indexes = sorted(i for i, _ in visits)
        assert len(indexes) == len(set(indexes))


def test_timestamps_follow_enrichs_rules(good: list[dict[str, Any]]) -> None:
    for e in good:
        created, sent, collector = e["dvce_created_tstamp"], e["dvce_sent_tstamp"], e["collector_tstamp"]
        expected = collector - (sent - created) if sent > created else collector
        assert e["derived_tstamp"] == expected
        assert e["etl_tstamp"] > collector and e["true_tstamp"] is None
        assert sent >= created
    collectors = [e["collector_tstamp"] for e in good]
    assert collectors[0] >= START
    # In collector order within the network's jitter: the stream is time ordered.
    assert all(b - a > timedelta(seconds=-2) for a, b in zip(collectors, collectors[1:]))


def test_raw_timestamps_are_enrichs_format(labelled: list[tuple[str, str]]) -> None:
    kind, line = labelled[0]
    parts = line.split("\t")
    for name in ("etl_tstamp", "collector_tstamp", "dvce_created_tstamp", "dvce_sent_tstamp", "derived_tstamp"):
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", parts[FIELD_INDEX[name]]), name


def test_urls_are_split_as_enrich_does(good: list[dict[str, Any]]) -> None:
    mediums = Counter()
    for e in good:
        url = f"{e['page_urlscheme']}://{e['page_urlhost']}{e['page_urlpath']}"
        url += f"?{e['page_urlquery']}" if e["page_urlquery"] else ""
        url += f"#{e['page_urlfragment']}" if e["page_urlfragment"] else ""
        assert e["page_url"] == url and e["page_urlport"] == 443
        if e["page_referrer"]:
            refr = f"{e['refr_urlscheme']}://{e['refr_urlhost']}{e['refr_urlpath']}"
            refr += f"?{e['refr_urlquery']}" if e["refr_urlquery"] else ""
            assert e["page_referrer"] == refr and e["refr_urlport"] == 443
            mediums[e["refr_medium"]] += 1
            if e["refr_medium"] == "internal":
                assert e["refr_urlhost"] == e["page_urlhost"] and e["refr_source"] is None
        else:
            assert e["refr_urlhost"] is None and e["refr_medium"] is None
        if e["page_urlquery"] and "utm_medium=" in e["page_urlquery"]:
            assert e["mkt_medium"] == "email" and e["mkt_source"] == "newsletter" and e["mkt_campaign"]
        if e["mkt_clickid"]:
            assert e["page_urlquery"] == f"gclid={e['mkt_clickid']}" and e["mkt_network"] == "Google"
    assert {"internal", "search", "social"} <= set(mediums)


def test_other_fields_are_plausible(good: list[dict[str, Any]]) -> None:
    fingerprints = [e["event_fingerprint"] for e in good]
    assert all(re.fullmatch(r"[0-9a-f]{32}", f) for f in fingerprints) and len(set(fingerprints)) == len(good)
    ids = [e["event_id"] for e in good]
    assert len(set(ids)) == len(ids) and all(i[14] == "4" and i[19] in "89ab" for i in ids)
    for e in good:
        assert e["app_id"] == "acme-shop" and e["platform"] == "web" and e["useragent"].startswith("Mozilla/5.0")
        assert re.fullmatch(r"(192\.0\.2|198\.51\.100|203\.0\.113)\.\d+", e["user_ipaddress"])
        assert -90 <= e["geo_latitude"] <= 90 and -180 <= e["geo_longitude"] <= 180 and len(e["geo_country"]) == 2
        assert e["v_etl"].startswith("airflow-osds-generate-")
        assert e["dvce_screenwidth"] >= e["br_viewwidth"] and e["doc_width"] == e["br_viewwidth"]
    assert any(not line.isascii() for line in gen.generate(500, start=START))


def test_fingerprint_is_enrichs_rule() -> None:
    # MD5 of key\x1fvalue\x1f over the parameters sorted by key, whatever order they come in.
    import hashlib

    expected = hashlib.md5("a\x1f1\x1fb\x1f2\x1fe\x1fpv\x1f".encode()).hexdigest()
    assert gen._fingerprint(("e", "b", "a"), ["pv", "2", "1"]) == expected
    assert gen._fingerprint(("b", "a", "e"), ["2", "1", "pv"]) == expected


def test_each_bad_kind_fails_the_way_it_says(labelled: list[tuple[str, str]], registry: Registry) -> None:
    invalid_keys = []
    for kind, line in labelled:
        if kind == "good":
            continue
        checked = tsv.check(line)
        if kind == "not_tsv":
            assert checked == tsv.NotTSV()
            continue
        if kind == "field_count":
            assert isinstance(checked, tsv.FieldNumberMismatch) and checked.fieldCount != 131
            continue
        if kind == "invalid_value":
            assert isinstance(checked, tsv.RowDecodingError) and len(checked.errors) == 1, checked
            invalid_keys.append(checked.errors[0]["key"])
            continue
        assert isinstance(checked, list), (kind, checked)  # the rest are well-formed lines
        contexts = checked[FIELD_INDEX["contexts"]]
        if kind == "invalid_json":
            with pytest.raises(ValueError):
                _json.loads(contexts)
            with pytest.raises(tsv.InvalidField):
                tsv.decode(checked)
            continue
        results = Counter(registry.check(entity) for entity in entities(tsv.decode(checked)))
        if kind == "schema_violation":
            assert results["invalid"] >= 1 and results["unknown"] == 0, results
        else:
            assert kind == "unknown_schema"
            assert results["unknown"] == 1 and results["invalid"] == 0, results
    assert invalid_keys == [k for k, _ in gen.INVALID_VALUES]


def test_custom_schemas_are_self_describing_draft_4(iglu_central: Path) -> None:
    meta = json.loads((iglu_central / "schemas/com.snowplowanalytics.self-desc/schema/jsonschema/1-0-0").read_text())
    schemas = gen.custom_schemas()
    assert set(schemas) == {
        "com.acme/checkout_step/jsonschema/1-0-0", "com.acme/cart/jsonschema/1-0-0",
        "com.acme/cart/jsonschema/1-0-1", "com.acme/cart/jsonschema/2-0-0",
    }  # fmt: skip
    for key, schema in schemas.items():
        jsonschema.Draft4Validator.check_schema(schema)
        jsonschema.Draft4Validator(meta).validate(schema)
        vendor, name, fmt, version = key.split("/")
        assert schema["self"] == {"vendor": vendor, "name": name, "format": fmt, "version": version}
    v100, v101, v200 = (schemas[f"com.acme/cart/jsonschema/{v}"] for v in ("1-0-0", "1-0-1", "2-0-0"))
    added = set(v101["properties"]) - set(v100["properties"])
    assert added == {"coupon_code"} and v101["required"] == v100["required"]
    assert {k: v for k, v in v101["properties"].items() if k in v100["properties"]} == v100["properties"]
    assert "total" not in v200["properties"] and "total_minor" in v200["required"]


def test_write_custom_schemas(tmp_path: Path) -> None:
    paths = gen.write_custom_schemas(tmp_path)
    assert sorted(str(p.relative_to(tmp_path)) for p in paths) == sorted(f"schemas/{k}" for k in gen.custom_schemas())
    assert json.loads(paths[0].read_text()) == gen.custom_schemas()[str(paths[0].relative_to(tmp_path / "schemas"))]


@pytest.mark.parametrize("compressed", [False, True])
def test_write_streams_lines(tmp_path: Path, compressed: bool) -> None:
    path = tmp_path / ("events.tsv.gz" if compressed else "events.tsv")
    assert gen.write(path, 300, gzip=compressed, seed=2, start=START, bad=6) == 300
    text = gzip.open(path, "rt", encoding="utf-8").read() if compressed else path.read_text(encoding="utf-8")
    assert text == "".join(f"{line}\n" for line in gen.generate(300, seed=2, start=START, bad=6))


def test_generate_is_lazy() -> None:
    # A billion lines are never made or held: only the ones taken.
    assert len(list(islice(gen.generate(10**9, start=START), 5))) == 5
