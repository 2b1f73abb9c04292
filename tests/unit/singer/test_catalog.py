"""Meltano's ``select`` and ``metadata`` applied to a Singer catalog."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from airflow_osds.singer.catalog import CatalogError, apply, selected_streams, stream_names


def _prop(*types: str, fmt: str | None = None) -> dict[str, Any]:
    return {"type": list(types), **({"format": fmt} if fmt else {})}


def _pg_stream(table: str, props: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A stream as meltanolabs-tap-postgres 0.10.0 discovers it: property entries first, the root last."""
    return {
        "tap_stream_id": f"public-{table}",
        "table_name": table,
        "replication_method": "",
        "key_properties": ["id"],
        "schema": {"properties": props, "type": "object", "required": ["id"],
                   "$schema": "https://json-schema.org/draft/2020-12/schema"},
        "is_view": False,
        "stream": f"public-{table}",
        "metadata": [
            *({"breadcrumb": ["properties", p], "metadata": {"inclusion": "automatic" if p == "id" else "available"}}
              for p in props),
            {"breadcrumb": [], "metadata": {"inclusion": "available", "table-key-properties": ["id"],
                                            "forced-replication-method": "", "schema-name": "public"}},
        ],
    }


def catalog() -> dict[str, Any]:
    """Two streams shaped like tap-postgres's discovery, and one like an SDK REST tap's (selected-by-default,
    valid-replication-keys, an unsupported property)."""
    return {"streams": [
        _pg_stream("customers", {"id": _prop("integer"), "email": _prop("string", "null"),
                                 "name": _prop("string", "null"),
                                 "updated_at": _prop("string", "null", fmt="date-time")}),
        _pg_stream("orders", {"id": _prop("integer"), "customer_id": _prop("integer", "null"),
                              "amount": _prop("number", "null"),
                              "updated_at": _prop("string", "null", fmt="date-time")}),
        {
            "tap_stream_id": "events",
            "stream": "events",
            "key_properties": ["id"],
            "schema": {"type": "object", "properties": {"id": _prop("string"), "created_at": _prop("string", fmt="date-time"),
                                                        "payload": _prop("object", "null")}},
            "metadata": [
                {"breadcrumb": [], "metadata": {"inclusion": "available", "selected-by-default": False,
                                                "table-key-properties": ["id"], "valid-replication-keys": ["created_at"]}},
                {"breadcrumb": ["properties", "id"], "metadata": {"inclusion": "automatic"}},
                {"breadcrumb": ["properties", "created_at"], "metadata": {"inclusion": "automatic"}},
                {"breadcrumb": ["properties", "payload"], "metadata": {"inclusion": "unsupported"}},
            ],
        },
    ]}


def selection(cat: dict[str, Any]) -> dict[str, tuple[Any, dict[str, Any]]]:
    """Per stream: the root's ``selected`` and each property's, in metadata order."""
    out = {}
    for stream in cat["streams"]:
        root = next(e["metadata"] for e in stream["metadata"] if e["breadcrumb"] == [])
        props = {e["breadcrumb"][1]: e["metadata"].get("selected") for e in stream["metadata"] if e["breadcrumb"]}
        out[stream["tap_stream_id"]] = (root.get("selected"), props)
    return out


def test_select_and_metadata_set_exactly_the_selection_and_the_replication() -> None:
    given = catalog()
    result = apply(given, ["public-customers.*", "public-orders.*", "!public-customers.email"],
                   {"public-orders": {"replication-key": "updated_at"}})
    assert given == catalog()  # the input is never mutated
    expected = catalog()
    customers, orders, events = expected["streams"]
    customers["metadata"] = [
        {"breadcrumb": ["properties", "id"], "metadata": {"inclusion": "automatic", "selected": True}},
        {"breadcrumb": ["properties", "email"], "metadata": {"inclusion": "available", "selected": False}},
        {"breadcrumb": ["properties", "name"], "metadata": {"inclusion": "available", "selected": True}},
        {"breadcrumb": ["properties", "updated_at"], "metadata": {"inclusion": "available", "selected": True}},
        {"breadcrumb": [], "metadata": {"inclusion": "available", "table-key-properties": ["id"],
                                        "forced-replication-method": "", "schema-name": "public", "selected": True}},
    ]
    orders["metadata"] = [
        {"breadcrumb": ["properties", "id"], "metadata": {"inclusion": "automatic", "selected": True}},
        {"breadcrumb": ["properties", "customer_id"], "metadata": {"inclusion": "available", "selected": True}},
        {"breadcrumb": ["properties", "amount"], "metadata": {"inclusion": "available", "selected": True}},
        {"breadcrumb": ["properties", "updated_at"], "metadata": {"inclusion": "available", "selected": True}},
        {"breadcrumb": [], "metadata": {"inclusion": "available", "table-key-properties": ["id"],
                                        "forced-replication-method": "", "schema-name": "public", "selected": True,
                                        "replication-key": "updated_at", "replication-method": "INCREMENTAL"}},
    ]
    events["metadata"] = [
        {"breadcrumb": [], "metadata": {"inclusion": "available", "selected-by-default": False,
                                        "table-key-properties": ["id"], "valid-replication-keys": ["created_at"],
                                        "selected": False}},
        {"breadcrumb": ["properties", "id"], "metadata": {"inclusion": "automatic", "selected": True}},
        {"breadcrumb": ["properties", "created_at"], "metadata": {"inclusion": "automatic", "selected": True}},
        {"breadcrumb": ["properties", "payload"], "metadata": {"inclusion": "unsupported", "selected": False}},
    ]
    assert result == expected
    assert selected_streams(result) == ["public-customers", "public-orders"]


def test_without_select_every_stream_is_selected_and_properties_stay_as_discovered() -> None:
    result = apply(catalog())
    expected = catalog()
    for stream in expected["streams"]:
        next(e for e in stream["metadata"] if e["breadcrumb"] == [])["metadata"]["selected"] = True
    assert result == expected
    assert selected_streams(result) == ["public-customers", "public-orders", "events"]


@pytest.mark.parametrize(
    ("select", "expected"),
    [
        # globs on both parts; automatic properties stay selected in every stream
        (["*.id"], {
            "public-customers": (True, {"id": True, "email": False, "name": False, "updated_at": False}),
            "public-orders": (True, {"id": True, "customer_id": False, "amount": False, "updated_at": False}),
            "events": (True, {"id": True, "created_at": True, "payload": False}),
        }),
        # no '.' means <stream>.*
        (["public-orders"], {
            "public-customers": (False, {"id": True, "email": False, "name": False, "updated_at": False}),
            "public-orders": (True, {"id": True, "customer_id": True, "amount": True, "updated_at": True}),
            "events": (False, {"id": True, "created_at": True, "payload": False}),
        }),
        # an exclusion wins, but an automatic property cannot be excluded; '?' and '[...]' are globs too
        (["public-*.*", "!public-customers.id", "!public-????rs.*_id", "!*.[ne]*"], {
            "public-customers": (True, {"id": True, "email": False, "name": False, "updated_at": True}),
            "public-orders": (True, {"id": True, "customer_id": False, "amount": True, "updated_at": True}),
            "events": (False, {"id": True, "created_at": True, "payload": False}),
        }),
        # an unsupported property is never selected, and selecting only it selects no stream
        (["events.payload", "public-customers.email"], {
            "public-customers": (True, {"id": True, "email": True, "name": False, "updated_at": False}),
            "public-orders": (False, {"id": True, "customer_id": False, "amount": False, "updated_at": False}),
            "events": (False, {"id": True, "created_at": True, "payload": False}),
        }),
        # a whole-stream exclusion deselects the stream even though its automatic properties stay marked
        (["*", "!public-orders"], {
            "public-customers": (True, {"id": True, "email": True, "name": True, "updated_at": True}),
            "public-orders": (False, {"id": True, "customer_id": False, "amount": False, "updated_at": False}),
            "events": (True, {"id": True, "created_at": True, "payload": False}),
        }),
    ],
)
def test_select_patterns(select: list[str], expected: dict[str, Any]) -> None:
    assert selection(apply(catalog(), select)) == expected


def test_missing_metadata_entries_are_created() -> None:
    cat = {"streams": [{"tap_stream_id": "s", "schema": {"properties": {"a": {}, "b": {}}},
                        "metadata": [{"breadcrumb": ["properties", "a"], "metadata": {"inclusion": "available"}}]},
                       {"tap_stream_id": "t", "schema": {"properties": {"c": {}}}}]}
    assert apply(cat, ["s.a", "t.*"]) == {"streams": [
        {"tap_stream_id": "s", "schema": {"properties": {"a": {}, "b": {}}}, "metadata": [
            {"breadcrumb": ["properties", "a"], "metadata": {"inclusion": "available", "selected": True}},
            {"breadcrumb": [], "metadata": {"selected": True}},
            {"breadcrumb": ["properties", "b"], "metadata": {"selected": False}},
        ]},
        {"tap_stream_id": "t", "schema": {"properties": {"c": {}}}, "metadata": [
            {"breadcrumb": [], "metadata": {"selected": True}},
            {"breadcrumb": ["properties", "c"], "metadata": {"selected": True}},
        ]},
    ]}


def test_metadata_sets_root_and_property_metadata_and_has_the_last_word() -> None:
    result = apply(catalog(), ["public-*"], {
        "public-*": {"replication-method": "FULL_TABLE"},
        "public-orders": {"replication-key": "id", "properties": {"amount": {"selected": False, "sql-datatype": "x"}}},
        "public-cust*": {"properties": {"*_at": {"selected": False}}},
    })
    assert selection(result) == {
        "public-customers": (True, {"id": True, "email": True, "name": True, "updated_at": False}),
        "public-orders": (True, {"id": True, "customer_id": True, "amount": False, "updated_at": True}),
        "events": (False, {"id": True, "created_at": True, "payload": False}),
    }
    roots = {s["tap_stream_id"]: s["metadata"][-1]["metadata"] for s in result["streams"][:2]}
    assert roots == {
        "public-customers": {"inclusion": "available", "table-key-properties": ["id"], "forced-replication-method": "",
                             "schema-name": "public", "selected": True, "replication-method": "FULL_TABLE"},
        # the user's FULL_TABLE (from the glob) is kept: INCREMENTAL is only the default of a replication-key
        "public-orders": {"inclusion": "available", "table-key-properties": ["id"], "forced-replication-method": "",
                          "schema-name": "public", "selected": True, "replication-method": "FULL_TABLE",
                          "replication-key": "id"},
    }
    assert result["streams"][1]["metadata"][2] == {
        "breadcrumb": ["properties", "amount"], "metadata": {"inclusion": "available", "selected": False, "sql-datatype": "x"}}


def test_a_replication_key_alone_makes_the_stream_incremental_even_over_a_discovered_method() -> None:
    cat = catalog()
    cat["streams"][2]["metadata"][0]["metadata"]["replication-method"] = "FULL_TABLE"
    result = apply(cat, ["events"], {"events": {"replication-key": "created_at"}})
    assert result["streams"][2]["metadata"][0]["metadata"] == {
        "inclusion": "available", "selected-by-default": False, "table-key-properties": ["id"],
        "valid-replication-keys": ["created_at"], "replication-method": "INCREMENTAL", "selected": True,
        "replication-key": "created_at"}


def test_metadata_can_deselect_a_stream() -> None:
    result = apply(catalog(), (), {"events": {"selected": False}})
    assert selected_streams(result) == ["public-customers", "public-orders"]


STREAMS = "public-customers, public-orders, events"


@pytest.mark.parametrize(
    ("select", "metadata", "message"),
    [
        (["publik-customers.*"], {},
         f"select pattern 'publik-customers.*' matches no stream; the tap's streams are: {STREAMS} "
         "(did you mean 'public-customers'?)"),
        (["public-customers.*", "nope"], {}, f"select pattern 'nope' matches no stream; the tap's streams are: {STREAMS}"),
        (["public-customers.emial"], {},
         "select pattern 'public-customers.emial' matches no property of public-customers; its properties are: "
         "email, id, name, updated_at (did you mean 'email'?)"),
        (["public-customers.id", "!public-customers.id"], {},
         "nothing selected: select ['public-customers.id', '!public-customers.id'] selects none of the tap's streams "
         f"({STREAMS})"),
        (["!public-customers.email"], {},
         f"nothing selected: select ['!public-customers.email'] selects none of the tap's streams ({STREAMS}); select "
         "has only exclusions, add what to include first, e.g. '*.*'"),
        ((), {"*": {"selected": False}}, f"nothing selected: the catalog selects none of the tap's streams ({STREAMS})"),
        (["*"], {"public-order": {"replication-key": "id"}},
         f"metadata pattern 'public-order' matches no stream; the tap's streams are: {STREAMS} "
         "(did you mean 'public-orders'?)"),
        (["*"], {"public-orders": {"replication-key": "updatedat"}},
         "metadata for public-orders: replication-key 'updatedat' is not a property of the stream; its properties "
         "are: id, customer_id, amount, updated_at (did you mean 'updated_at'?)"),
        (["*"], {"public-orders": {"replication-method": "incremental"}},
         "metadata for public-orders: replication-method 'incremental' is not one of FULL_TABLE, INCREMENTAL, LOG_BASED"),
        (["*"], {"public-*": {"properties": {"emali": {"selected": False}}}},
         "metadata for 'public-*' names property 'emali', which is not a property of public-customers, "
         "public-orders; its properties are: amount, customer_id, email, id, name, updated_at (did you mean 'email'?)"),
        (["*", "!public-orders.updated_at"], {"public-orders": {"replication-key": "updated_at"}},
         "stream public-orders: its replication-key 'updated_at' is not selected; select it, or choose another key: "
         "the tap can only bookmark a property it sends"),
        ("public-customers.*", {}, "select must be a list of patterns, got 'public-customers.*'"),
        (["public-customers."], {},
         "select pattern 'public-customers.' is not <stream>.<property> (e.g. 'public-customers.*' or "
         "'public-customers.id'; '!' in front excludes)"),
        (["*"], {"public-orders": "INCREMENTAL"},
         "metadata for 'public-orders' must be a mapping of metadata keys, got 'INCREMENTAL'"),
    ],
)
def test_errors_say_what_to_fix(select: Any, metadata: Any, message: str) -> None:
    given = catalog()
    with pytest.raises(CatalogError) as info:
        apply(given, select, metadata)
    assert str(info.value) == message
    assert given == catalog()


@pytest.mark.parametrize("bad", [[], {}, {"streams": {}}, None])
def test_a_catalog_that_is_not_a_stream_list_is_refused(bad: Any) -> None:
    with pytest.raises(CatalogError) as info:
        apply(bad, ["*"])
    assert str(info.value) == ('a Singer catalog is a JSON object {"streams": [...]}, got '
                               f"{bad!r}; is this the output of the tap's --discover?")


def test_a_stream_without_tap_stream_id_is_refused() -> None:
    with pytest.raises(CatalogError) as info:
        selected_streams({"streams": [{"stream": "x"}]})
    assert str(info.value) == "stream #0 of the catalog has no tap_stream_id: {'stream': 'x'}"


def test_selected_streams_follows_selected_then_selected_by_default() -> None:
    cat = catalog()
    assert selected_streams(cat) == []  # as discovered: tap-postgres marks nothing selected
    cat["streams"][2]["metadata"][0]["metadata"]["selected-by-default"] = True
    cat["streams"][1]["metadata"][-1]["metadata"]["selected"] = True
    assert selected_streams(cat) == ["public-orders", "events"]
    cat["streams"][2]["metadata"][0]["metadata"]["selected"] = False
    cat["streams"][0]["metadata"][-1]["metadata"].update(selected=True, inclusion="unsupported")
    assert selected_streams(cat) == ["public-orders"]
    assert selected_streams(copy.deepcopy(cat)) == selected_streams(cat)


@pytest.mark.parametrize(
    ("select", "expected"),
    [
        ([], ([], [])),
        (["public-customers.*", "public-orders.id", "public-orders.amount", "!public-customers.email"],
         (["public-customers", "public-orders"], [])),
        (["events", "public-*.*", "*.id", "!legacy-*", "s?.*", "public-[ab].x", "public-*.*"],
         (["events"], ["public-*.*", "*.id", "s?.*", "public-[ab].x"])),
        # a whole-stream exclusion removes a literal name; a property exclusion does not
        (["a.*", "b", "c.x", "d.*", "!a", "!b.*", "!c.y", "!d*"], (["c"], [])),
    ],
)
def test_stream_names_before_discovery(select: list[str], expected: tuple[list[str], list[str]]) -> None:
    assert stream_names(select) == expected
