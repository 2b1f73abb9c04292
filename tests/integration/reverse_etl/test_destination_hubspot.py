"""The HubSpot CRM v3 destination (``destinations.hubspot``) against a real HubSpot-like server on 127.0.0.1.

The server (:class:`tests.reverse_etl_servers.HubSpotServer`) answers as HubSpot documents it: 207
multi-status with per-input errors when the inputs carry ``objectWriteTraceId``, 400 for an unknown
property, 429 with ``X-HubSpot-RateLimit-*`` headers; faults are injected on demand.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_osds.reverse_etl.destinations.http import HttpDestinationConfig
from airflow_osds.reverse_etl.destinations.base import Change, Destination, DestinationError, RetryableError
from airflow_osds.reverse_etl.destinations.hubspot import HubSpotDestination
from tests.reverse_etl_servers import HubSpotServer

TOKEN = "pat-na1-hubspot-token"
UPSERT = "/crm/v3/objects/contacts/batch/upsert"


@pytest.fixture
def hubspot() -> Iterator[HubSpotServer]:
    with HubSpotServer(token=TOKEN) as server:
        yield server


def destination(server: HubSpotServer, *, secret: str = TOKEN, timeout: float = 2.0, **kwargs: Any) -> HubSpotDestination:
    # No pacing in these tests: the rate limit is the server's to enforce here.
    config = HttpDestinationConfig(server.base_url, secret=secret, timeout=timeout, max_requests_per_second=1000)
    return HubSpotDestination(config, **kwargs)


def contact(i: int, op: str = "create", **fields: Any) -> Change:
    fields = {"email": f"User{i}@Example.com", "firstname": f"User {i}", "plan": "pro", **fields}
    return Change(str(i), op, fields)  # type: ignore[arg-type]


def test_upserts_are_one_batch_request_by_email_and_count_created_and_updated(hubspot: HubSpotServer) -> None:
    dest = destination(hubspot)
    assert isinstance(dest, Destination) and dest.object_name == "hubspot/contacts"
    result = dest.send([contact(1), contact(2, plan=None)])
    assert result.acknowledged == ["1", "2"] and result.counts == {"created": 2}
    (request,) = hubspot.received
    assert (request.method, request.path) == ("POST", UPSERT)
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.body == {"inputs": [
        {"idProperty": "email", "id": "User1@Example.com", "objectWriteTraceId": "0",
         "properties": {"email": "User1@Example.com", "firstname": "User 1", "plan": "pro"}},
        {"idProperty": "email", "id": "User2@Example.com", "objectWriteTraceId": "1",
         "properties": {"email": "User2@Example.com", "firstname": "User 2", "plan": ""}},  # None clears it
    ]}
    result = dest.send([contact(2, "update", plan="free"), contact(3)])
    assert result.counts == {"updated": 1, "created": 1}
    assert hubspot.contacts["user2@example.com"]["plan"] == "free"
    assert sorted(hubspot.contacts) == ["user1@example.com", "user2@example.com", "user3@example.com"]


def test_a_custom_object_by_its_own_unique_property_falls_back_to_the_key(hubspot: HubSpotServer) -> None:
    dest = destination(hubspot, object_type="p_orders", id_property="order_ref")
    with pytest.raises(DestinationError, match="HTTP 404 \\(is 'p_orders' an object type of this portal\\?\\)"):
        dest.send([Change("A-1", "create", {"amount": 3})])
    assert hubspot.received[0].path == "/crm/v3/objects/p_orders/batch/upsert"
    assert hubspot.received[0].body["inputs"][0]["id"] == "A-1"  # no order_ref field: the key addresses it
    with pytest.raises(ValueError, match="hs_object_id cannot be upserted by"):
        destination(hubspot, id_property="hs_object_id")
    with pytest.raises(ValueError, match="batch_size must be between 1 and 100"):
        destination(hubspot, batch_size=101)


@pytest.mark.parametrize("context", ["trace", "ids"])
def test_an_invalid_email_is_a_rejection_with_hubspots_reason_and_the_others_are_stored(hubspot: HubSpotServer,
                                                                                        context: Any) -> None:
    hubspot.error_context = context
    hubspot.invalid.add("user2@example.com")
    result = destination(hubspot).send([contact(1), contact(2), Change("3", "create", {"email": "not-an-email"}), contact(4)])
    assert result.acknowledged == ["1", "4"]
    reasons = {r.key: r.reason for r in result.rejected}
    assert set(reasons) == {"2", "3"}
    assert reasons["2"].startswith("VALIDATION_ERROR: Property values were not valid: ")
    assert "INVALID_EMAIL" in reasons["2"] and "Email address User2@Example.com is invalid" in reasons["2"]
    assert "Email address not-an-email is invalid" in reasons["3"]
    assert result.counts == {"created": 2}
    assert sorted(hubspot.contacts) == ["user1@example.com", "user4@example.com"]
    assert len(hubspot.received) == 1  # one request, 207


def test_an_error_naming_no_record_rejects_only_the_records_the_reply_does_not_confirm(hubspot: HubSpotServer) -> None:
    hubspot.error_context = "none"
    hubspot.invalid.add("user2@example.com")
    result = destination(hubspot).send([contact(1), contact(2), contact(3)])
    assert result.acknowledged == ["1", "3"]
    (rejection,) = result.rejected
    assert rejection.key == "2" and "INVALID_EMAIL" in rejection.reason
    assert rejection.reason.endswith("(the error names no record; this one was not confirmed)")


def test_two_changes_for_one_email_the_later_is_rejected_before_sending(hubspot: HubSpotServer) -> None:
    batch = [contact(1), Change("1b", "create", {"email": " user1@EXAMPLE.com "}), Change("5", "create", {"email": ""})]
    result = destination(hubspot).send(batch)
    assert result.acknowledged == ["1"]
    reasons = {r.key: r.reason for r in result.rejected}
    assert reasons["1b"] == "email 'user1@example.com' is also that of key '1' in the same batch"
    # No email: the key addresses the record (documented), and HubSpot refuses "5" as an email.
    assert "Email address 5 is invalid" in reasons["5"]
    assert [i["id"] for i in hubspot.received[0].body["inputs"]] == ["User1@Example.com", "5"]


def test_a_property_hubspot_lacks_on_every_record_is_a_mapping_error_after_one_request(hubspot: HubSpotServer) -> None:
    with pytest.raises(DestinationError, match="HubSpot has no contacts property 'favourite_colour': create it") as excinfo:
        destination(hubspot).send([contact(i, favourite_colour="teal") for i in range(1, 9)])
    assert not isinstance(excinfo.value, RetryableError)
    assert "PROPERTY_DOESNT_EXIST" in str(excinfo.value)
    assert len(hubspot.received) == 1 and hubspot.contacts == {}


def test_another_400_is_bisected_down_to_the_bad_records(hubspot: HubSpotServer) -> None:
    # A property only some records carry: HubSpot refuses every request containing one of them, whole.
    batch = [contact(i, **({"favourite_colour": "teal"} if i in (3, 6) else {})) for i in range(1, 9)]
    result = destination(hubspot).send(batch)
    assert sorted(result.acknowledged) == ["1", "2", "4", "5", "7", "8"]
    reasons = {r.key: r.reason for r in result.rejected}
    assert set(reasons) == {"3", "6"}
    assert reasons["3"].startswith("HTTP 400: VALIDATION_ERROR: Property values were not valid: ")
    assert 'Property \\"favourite_colour\\" does not exist' in reasons["3"]
    assert sorted(hubspot.contacts) == sorted(f"user{i}@example.com" for i in (1, 2, 4, 5, 7, 8))
    sizes = [len(r.body["inputs"]) for r in hubspot.received]
    assert sizes == [8, 4, 2, 2, 1, 1, 4, 2, 1, 1, 2]  # halves, depth first; at most 2n - 1 requests


def test_a_delete_reads_the_ids_then_archives_and_an_absent_record_is_acknowledged(hubspot: HubSpotServer) -> None:
    dest = destination(hubspot)
    dest.send([contact(1), contact(2)])
    hs_id = hubspot.by_email("user1@example.com")["id"]  # type: ignore[index]
    result = dest.send([contact(1, "delete"), contact(9, "delete"), contact(3)])
    assert sorted(result.acknowledged) == ["1", "3", "9"]
    assert result.counts == {"created": 1, "archived": 1, "absent": 1}
    upsert, read, archive = hubspot.received[1:]
    assert upsert.path == UPSERT and [i["id"] for i in upsert.body["inputs"]] == ["User3@Example.com"]
    assert read.path.endswith("/batch/read")
    assert read.body == {"idProperty": "email", "properties": ["email"],
                         "inputs": [{"id": "User1@Example.com"}, {"id": "User9@Example.com"}]}
    assert archive.path.endswith("/batch/archive") and archive.body == {"inputs": [{"id": hs_id}]}
    assert sorted(hubspot.contacts) == ["user2@example.com", "user3@example.com"]
    result = dest.send([contact(8, "delete"), contact(9, "delete")])  # nothing to archive: no archive request
    assert result.counts == {"absent": 2} and hubspot.received[-1].path.endswith("/batch/read")


@pytest.mark.parametrize("policy, expected", [("SECONDLY", 1.0), ("TEN_SECONDLY_ROLLING", 0.25)])
def test_a_rate_limit_429_waits_as_the_rate_limit_headers_say(policy: Any, expected: float) -> None:
    with HubSpotServer(token=TOKEN, interval_ms=250) as hubspot:
        dest = destination(hubspot)
        hubspot.inject_rate_limit(policy)
        with pytest.raises(RetryableError, match=f"HTTP 429: .*You have reached your {policy.lower()} limit") as excinfo:
            dest.send([contact(1)])
        assert excinfo.value.retry_after == expected
        assert dest.send([contact(1)]).acknowledged == ["1"]


def test_retry_after_wins_over_the_rate_limit_headers(hubspot: HubSpotServer) -> None:
    hubspot.inject_status(429, retry_after=0.2)
    with pytest.raises(RetryableError) as excinfo:
        destination(hubspot).send([contact(1)])
    assert excinfo.value.retry_after == 0.2


@pytest.mark.parametrize("body", [["a", "list"], "a JSON string"])
def test_a_429_whose_body_is_json_but_not_an_object_is_still_retryable(hubspot: HubSpotServer, body: Any) -> None:
    hubspot.inject_status(429, body=body)
    with pytest.raises(RetryableError, match="HTTP 429") as excinfo:
        destination(hubspot).send([contact(1)])
    assert excinfo.value.retry_after is None


def test_the_daily_limit_spent_fails_for_good(hubspot: HubSpotServer) -> None:
    hubspot.inject_rate_limit("DAILY")
    with pytest.raises(DestinationError, match="daily API limit is spent") as excinfo:
        destination(hubspot).send([contact(1)])
    assert not isinstance(excinfo.value, RetryableError)


def test_the_servers_own_secondly_limit_is_met_with_a_retryable_error() -> None:
    with HubSpotServer(token=TOKEN, secondly_limit=2) as hubspot:
        dest = destination(hubspot)
        dest.send([contact(1)])
        dest.send([contact(2)])
        with pytest.raises(RetryableError) as excinfo:
            dest.send([contact(3)])
        assert excinfo.value.retry_after == 1.0
        assert hubspot.received[-1].fault is None  # HubSpot's own answer, not an injected one


def test_the_connections_rate_limit_paces_every_request_of_a_send() -> None:
    # A delete is two requests (read, archive): both are paced, not only each send.
    # 5 requests at 3.5/s stay within 4 per second; unpaced, the fifth would be refused.
    with HubSpotServer(token=TOKEN, secondly_limit=4) as hubspot:
        config = HttpDestinationConfig(hubspot.base_url, secret=TOKEN, max_requests_per_second=3.5)
        dest = HubSpotDestination(config)
        assert dest.rate_limit == 3.5
        dest.send([contact(1), contact(2)])
        dest.send([contact(1, "delete"), contact(2, "delete"), contact(3)])
        dest.send([contact(4)])
    assert [r.fault for r in hubspot.received] == [None] * 5
    assert hubspot.contacts.keys() == {"user3@example.com", "user4@example.com"}


@pytest.mark.parametrize("fault", ["500", "timeout", "drop", "drop+store"])
def test_server_errors_timeouts_and_dropped_connections_are_retryable(hubspot: HubSpotServer, fault: str) -> None:
    dest = destination(hubspot, timeout=0.3)
    if fault == "500":
        hubspot.inject_status(500)
    elif fault == "timeout":
        hubspot.inject_timeout(seconds=1.0)
    else:
        hubspot.inject_drop(store=fault == "drop+store")
    with pytest.raises(RetryableError):
        dest.send([contact(1), contact(2)])
    assert sorted(hubspot.contacts) == (["user1@example.com", "user2@example.com"] if fault == "drop+store" else [])
    result = dest.send([contact(1), contact(2)])  # upserting again is harmless: the same two contacts
    assert result.acknowledged == ["1", "2"]
    assert result.counts == ({"updated": 2} if fault == "drop+store" else {"created": 2})
    assert len(hubspot.objects) == 2


def test_a_fault_between_the_read_and_the_archive_of_a_delete_is_retryable(hubspot: HubSpotServer) -> None:
    dest = destination(hubspot)
    dest.send([contact(1)])
    hubspot.inject_status(502, on="/batch/archive")
    with pytest.raises(RetryableError, match="batch/archive answered HTTP 502"):
        dest.send([contact(1, "delete")])
    assert [r.path.rsplit("/", 1)[1] for r in hubspot.received[1:]] == ["read", "archive"]
    assert "user1@example.com" in hubspot.contacts
    assert dest.send([contact(1, "delete")]).counts == {"archived": 1}
    assert hubspot.contacts == {}


def test_a_bad_token_fails_for_good_and_is_never_in_the_message(hubspot: HubSpotServer) -> None:
    wrong = "pat-na1-wrong-token-9876"
    with pytest.raises(DestinationError, match="HTTP 401: the connection's credentials are refused") as excinfo:
        destination(hubspot, secret=wrong).send([contact(1)])
    assert not isinstance(excinfo.value, RetryableError)
    assert "INVALID_AUTHENTICATION" in str(excinfo.value) and "Bearer ***" in str(excinfo.value)
    assert wrong not in str(excinfo.value)


def test_the_token_is_never_in_a_rejection(hubspot: HubSpotServer) -> None:
    hubspot.invalid.add(f"{TOKEN}@example.com")
    result = destination(hubspot).send([Change("1", "create", {"email": f"{TOKEN}@example.com"})])
    (rejection,) = result.rejected
    assert TOKEN not in rejection.reason and "Email address ***@example.com is invalid" in rejection.reason
    assert json.dumps(hubspot.received[0].body).count(TOKEN) == 2  # it was sent: only the message hides it
