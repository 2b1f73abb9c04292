"""The Mailchimp destination (``destinations.mailchimp``) against a real Mailchimp-like server on 127.0.0.1.

The server (:class:`tests.reverse_etl_servers.MailchimpServer`) answers batch subscribes with 200 and the
failed members inside the body, archives members on DELETE, refuses a schema violation with a 400 problem
document, and checks basic auth with the API key as the password; faults are injected on demand.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_osds.reverse_etl.destinations.http import HttpDestinationConfig
from airflow_osds.reverse_etl.destinations.base import Change, Destination, DestinationError, RetryableError
from airflow_osds.reverse_etl.destinations.mailchimp import MailchimpDestination, subscriber_hash
from tests.reverse_etl_servers import MailchimpServer

KEY = "0123456789abcdef0123456789abcdef-us1"
LIST = "a1b2c3"


@pytest.fixture
def mailchimp() -> Iterator[MailchimpServer]:
    with MailchimpServer(api_key=KEY, lists=(LIST,)) as server:
        yield server


def destination(server: MailchimpServer, *, secret: str = KEY, timeout: float = 2.0, base_path: str = "",
                login: str = "", list_id: str = LIST, **kwargs: Any) -> MailchimpDestination:
    config = HttpDestinationConfig(server.base_url + base_path, auth_type="basic", login=login, secret=secret,
                                   timeout=timeout)
    return MailchimpDestination(config, list_id, **kwargs)


def member(i: int, op: str = "create", groups: tuple[str, ...] = (), **fields: Any) -> Change:
    fields = {"email": f"User{i}@Example.com", "fname": f"User {i}", "plan": "pro", **fields}
    return Change(str(i), op, fields, groups)  # type: ignore[arg-type]


def test_a_batch_is_one_post_of_members_with_upper_case_merge_fields_and_groups_as_tags(mailchimp: MailchimpServer) -> None:
    dest = destination(mailchimp)
    assert isinstance(dest, Destination) and dest.object_name == f"mailchimp/{LIST}"
    assert dest.operations == {"create", "update", "delete"}
    result = dest.send([member(1, groups=("vip", "pro")), member(2, plan=None)])
    assert result.acknowledged == ["1", "2"] and result.rejected == [] and result.counts == {"created": 2}
    (request,) = mailchimp.received
    assert (request.method, request.path) == ("POST", f"/3.0/lists/{LIST}")
    user, _, password = base64.b64decode(request.headers["authorization"].removeprefix("Basic ")).decode().partition(":")
    assert (user, password) == ("airflow-osds", KEY)
    assert request.body == {"update_existing": True, "sync_tags": False, "members": [
        {"email_address": "User1@Example.com", "status": "subscribed",
         "merge_fields": {"FNAME": "User 1", "PLAN": "pro"}, "tags": ["vip", "pro"]},
        {"email_address": "User2@Example.com", "status": "subscribed",
         "merge_fields": {"FNAME": "User 2", "PLAN": ""}},  # None clears the merge field; no groups, no tags
    ]}
    stored = mailchimp.members()["user1@example.com"]
    assert stored["id"] == subscriber_hash("user1@example.com")
    assert [t["name"] for t in stored["tags"]] == ["vip", "pro"]

    result = dest.send([member(1, "update", plan="free", groups=("pro",)), member(3)])
    assert result.counts == {"updated": 1, "created": 1}
    stored = mailchimp.members()["user1@example.com"]
    assert stored["merge_fields"]["PLAN"] == "free"
    assert [t["name"] for t in stored["tags"]] == ["vip", "pro"]  # tags are only added by default


def test_sync_tags_replaces_the_members_tags_with_its_groups(mailchimp: MailchimpServer) -> None:
    dest = destination(mailchimp, sync_tags=True)
    dest.send([member(1, groups=("vip", "pro")), member(2, groups=("pro",))])
    dest.send([member(1, "update", groups=("pro",)), member(2, "update")])
    assert mailchimp.received[-1].body["sync_tags"] is True
    assert mailchimp.received[-1].body["members"][1]["tags"] == []  # no group left: an empty list clears them
    assert [t["name"] for t in mailchimp.members()["user1@example.com"]["tags"]] == ["pro"]
    assert mailchimp.members()["user2@example.com"]["tags"] == []


def test_errors_inside_the_200_reject_their_members_by_address_case_aside(mailchimp: MailchimpServer) -> None:
    mailchimp.invalid.add("user2@example.com")
    batch = [member(1), member(2), Change("3", "create", {"email_address": "no-at-sign", "fname": "X"}),
             member(4, favourite="teal"), member(5)]
    result = destination(mailchimp).send(batch)
    assert result.acknowledged == ["1", "5"] and result.counts == {"created": 2}
    reasons = {r.key: r.reason for r in result.rejected}
    assert reasons == {
        "2": "ERROR_GENERIC: User2@Example.com looks fake or invalid, please enter a real email address.",
        "3": "ERROR_GENERIC: no-at-sign looks fake or invalid, please enter a real email address.",
        "4": "ERROR_GENERIC: Your merge fields were invalid: FAVOURITE does not exist.",
    }
    assert sorted(mailchimp.members()) == ["user1@example.com", "user5@example.com"]
    assert len(mailchimp.received) == 1


def test_records_mailchimp_would_refuse_are_rejected_before_sending(mailchimp: MailchimpServer) -> None:
    batch = [
        member(1),
        Change("1b", "create", {"email_address": " USER1@example.COM "}),  # the same member
        Change("2", "create", {"fname": "no address"}),
        member(3, status="gone"),
        member(4, Plan="x"),  # plan and Plan: both PLAN
        member(5, status="unsubscribed"),
    ]
    result = destination(mailchimp).send(batch)
    assert result.acknowledged == ["1", "5"]
    reasons = {r.key: r.reason for r in result.rejected}
    assert reasons["1b"] == "email address 'user1@example.com' is also that of key '1' in the same batch"
    assert reasons["2"] == "no email address to address the record by"
    assert reasons["3"].startswith("status 'gone' is not one of cleaned, pending, subscribed")
    assert reasons["4"] == "two fields become merge field PLAN; rename one of them"
    sent = mailchimp.received[0].body["members"]
    assert [(m["email_address"], m["status"]) for m in sent] == [("User1@Example.com", "subscribed"),
                                                                 ("User5@Example.com", "unsubscribed")]
    assert "STATUS" not in sent[1]["merge_fields"]  # the status field is the member's status, not a merge field
    assert mailchimp.members()["user5@example.com"]["status"] == "unsubscribed"


def test_a_400_is_bisected_down_to_the_members_mailchimp_refuses(mailchimp: MailchimpServer) -> None:
    batch = [member(i, **({"plan": ["a", "list"]} if i == 3 else {})) for i in range(1, 6)]
    result = destination(mailchimp).send(batch)
    assert sorted(result.acknowledged) == ["1", "2", "4", "5"]
    (rejection,) = result.rejected
    assert rejection.key == "3"
    assert rejection.reason == ("HTTP 400: Invalid Resource: The resource submitted could not be validated. For "
                                "field-specific details, see the 'errors' array. (members.0.merge_fields.PLAN: "
                                "Schema describes string, array found instead)")
    assert [len(r.body["members"]) for r in mailchimp.received] == [5, 2, 3, 1, 2]  # halves, depth first
    assert sorted(mailchimp.members()) == [f"user{i}@example.com" for i in (1, 2, 4, 5)]


def test_without_update_existing_only_new_members_are_added_and_updates_are_not_offered(mailchimp: MailchimpServer) -> None:
    destination(mailchimp).send([member(1, plan="pro")])
    dest = destination(mailchimp, update_existing=False)
    assert dest.operations == {"create", "delete"}
    result = dest.send([member(1, plan="free"), member(2)])
    assert result.acknowledged == ["1", "2"]
    assert result.counts == {"existing": 1, "created": 1}  # already a member: a create-only sync leaves it
    assert mailchimp.received[-1].body["update_existing"] is False
    assert mailchimp.members()["user1@example.com"]["merge_fields"]["PLAN"] == "pro"  # not touched


def test_a_delete_archives_the_member_by_its_hash_and_an_absent_one_is_acknowledged(mailchimp: MailchimpServer) -> None:
    destination(mailchimp).send([member(1), member(2)])
    dest = destination(mailchimp)  # a new destination: it has not seen the list yet
    result = dest.send([member(1, "delete"), member(9, "delete"), member(3)])
    assert sorted(result.acknowledged) == ["1", "3", "9"]
    assert result.counts == {"created": 1, "archived": 1, "absent": 1}
    calls = [(r.method, r.path) for r in mailchimp.received[1:]]
    assert calls == [("POST", f"/3.0/lists/{LIST}"),
                     ("DELETE", f"/3.0/lists/{LIST}/members/{subscriber_hash('user1@example.com')}"),
                     ("DELETE", f"/3.0/lists/{LIST}/members/{subscriber_hash('user9@example.com')}")]
    assert sorted(mailchimp.members()) == ["user2@example.com", "user3@example.com"]
    assert mailchimp.archived[LIST][subscriber_hash("user1@example.com")]["status"] == "archived"


def test_a_delete_only_batch_looks_the_list_up_once_so_a_wrong_list_is_not_taken_for_gone_members(
        mailchimp: MailchimpServer) -> None:
    dest = destination(mailchimp)
    dest.send([member(1, "delete")])
    dest.send([member(2, "delete")])
    assert [(r.method, r.path) for r in mailchimp.received][:2] == [("GET", f"/3.0/lists/{LIST}?fields=id"),
                                                                    ("DELETE", f"/3.0/lists/{LIST}/members/"
                                                                               f"{subscriber_hash('user1@example.com')}")]
    assert [r.method for r in mailchimp.received].count("GET") == 1
    with pytest.raises(DestinationError, match="HTTP 404 \\(is 'nope99' an audience of this account"):
        destination(mailchimp, list_id="nope99").send([member(1, "delete")])


def test_an_unknown_list_fails_for_good(mailchimp: MailchimpServer) -> None:
    with pytest.raises(DestinationError, match="Resource Not Found: The requested resource could not be found") as excinfo:
        destination(mailchimp, list_id="nope99").send([member(1)])
    assert not isinstance(excinfo.value, RetryableError)


def test_a_base_url_that_ends_in_3_0_is_not_doubled(mailchimp: MailchimpServer) -> None:
    assert destination(mailchimp, base_path="/3.0/").send([member(1)]).acknowledged == ["1"]
    assert mailchimp.received[0].path == f"/3.0/lists/{LIST}"


@pytest.mark.parametrize("fault", ["429", "500", "timeout", "drop", "drop+store"])
def test_throttling_server_errors_timeouts_and_dropped_connections_are_retryable(mailchimp: MailchimpServer,
                                                                                fault: str) -> None:
    dest = destination(mailchimp, timeout=0.3)
    if fault == "429":
        mailchimp.inject_status(429, retry_after=0.2)
    elif fault == "500":
        mailchimp.inject_status(500)
    elif fault == "timeout":
        mailchimp.inject_timeout(seconds=1.0)
    else:
        mailchimp.inject_drop(store=fault == "drop+store")
    with pytest.raises(RetryableError) as excinfo:
        dest.send([member(1), member(2)])
    assert excinfo.value.retry_after == (0.2 if fault == "429" else None)
    assert len(mailchimp.members()) == (2 if fault == "drop+store" else 0)
    result = dest.send([member(1), member(2)])  # the retry: update_existing makes it harmless
    assert result.acknowledged == ["1", "2"]
    assert result.counts == ({"updated": 2} if fault == "drop+store" else {"created": 2})


def test_a_fault_on_a_members_delete_is_retryable(mailchimp: MailchimpServer) -> None:
    dest = destination(mailchimp)
    dest.send([member(1), member(2)])
    mailchimp.inject_status(503, on=f"/members/{subscriber_hash('user2@example.com')}")
    with pytest.raises(RetryableError, match="HTTP 503"):
        dest.send([member(1, "delete"), member(2, "delete")])
    result = dest.send([member(1, "delete"), member(2, "delete")])  # 1 is gone already: absent, fine
    assert result.counts == {"absent": 1, "archived": 1} and mailchimp.members() == {}


def test_a_bad_api_key_fails_for_good_and_no_form_of_it_is_in_the_message(mailchimp: MailchimpServer) -> None:
    wrong = "fedcba9876543210fedcba9876543210-us1"
    with pytest.raises(DestinationError, match="HTTP 401: the connection's credentials are refused") as excinfo:
        destination(mailchimp, secret=wrong, login="me").send([member(1)])
    assert not isinstance(excinfo.value, RetryableError)
    message = str(excinfo.value)
    assert "API Key Invalid" in message and "Your API key '***'" in message and "Authorization: Basic ***" in message
    assert wrong not in message and base64.b64encode(f"me:{wrong}".encode()).decode() not in message


def test_the_api_key_is_never_in_a_rejection(mailchimp: MailchimpServer) -> None:
    address = f"{KEY}@example.com"
    mailchimp.invalid.add(address)
    result = destination(mailchimp).send([Change("1", "create", {"email": address})])
    (rejection,) = result.rejected
    assert KEY not in rejection.reason and "***@example.com looks fake" in rejection.reason


def test_constructor_arguments_are_checked(mailchimp: MailchimpServer) -> None:
    with pytest.raises(ValueError, match="batch_size must be between 1 and 500"):
        destination(mailchimp, batch_size=501)
    with pytest.raises(ValueError, match="status must be one of"):
        destination(mailchimp, status="archived")
    with pytest.raises(ValueError, match="is not a Mailchimp audience id"):
        destination(mailchimp, list_id="a/b")
