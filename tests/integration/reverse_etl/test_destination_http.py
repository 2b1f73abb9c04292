"""The generic JSON batch destination (``destinations.http``) against a real sink on 127.0.0.1.

What the sink received is the evidence: request shapes, the ``Idempotency-Key``, what it stored. Faults
are injected by the sink (:mod:`tests.reverse_etl_servers`): 429 with ``Retry-After``, 5xx, a reply that
comes after the client's timeout, a connection closed mid-request.
"""

from __future__ import annotations

import base64
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_osds.reverse_etl.destinations.http import HttpDestinationConfig
from airflow_osds.reverse_etl.destinations.base import Change, Destination, DestinationError, RetryableError
from airflow_osds.reverse_etl.destinations.http import HttpDestination, idempotency_key
from tests.reverse_etl_servers import JsonSink

TOKEN = "sink-token-0123"
PATH = "/hooks/records"


@pytest.fixture
def sink() -> Iterator[JsonSink]:
    with JsonSink(path=PATH, token=TOKEN) as server:
        yield server


def destination(server: JsonSink, *, secret: str = TOKEN, timeout: float = 2.0, **kwargs: Any) -> HttpDestination:
    auth = kwargs.pop("auth_type", "bearer")
    login = kwargs.pop("login", "")
    config = HttpDestinationConfig(server.base_url, auth_type=auth, login=login, secret=secret, timeout=timeout,
                                   api_key_header="X-Sink-Key")
    kwargs.setdefault("object_name", "sink/customers")
    return HttpDestination(config, kwargs.pop("path", PATH), **kwargs)


def change(i: int, op: str = "create", plan: str = "pro", groups: tuple[str, ...] = ()) -> Change:
    return Change(str(i), op, {"email": f"user{i}@example.com", "plan": plan}, groups)  # type: ignore[arg-type]


def test_a_batch_is_one_post_of_its_records_with_a_stable_idempotency_key(sink: JsonSink) -> None:
    dest = destination(sink)
    assert isinstance(dest, Destination)
    batch = [change(1, groups=("vip",)), change(2, "update", "free"), change(3, "delete")]
    result = dest.send(batch)
    assert result.acknowledged == ["1", "2", "3"] and result.rejected == []
    assert result.counts == {"created": 1, "updated": 1, "deleted": 1}
    (request,) = sink.received
    assert (request.method, request.path) == ("POST", PATH)
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["content-type"] == "application/json"
    assert request.body == {"records": [
        {"key": "1", "op": "create", "fields": {"email": "user1@example.com", "plan": "pro"}, "groups": ["vip"]},
        {"key": "2", "op": "update", "fields": {"email": "user2@example.com", "plan": "free"}, "groups": []},
        {"key": "3", "op": "delete", "fields": {"email": "user3@example.com", "plan": "pro"}, "groups": []},
    ]}
    assert request.idempotency_key == idempotency_key("sink/customers", batch)
    assert sink.records == {"1": {"fields": {"email": "user1@example.com", "plan": "pro"}, "groups": ["vip"]},
                            "2": {"fields": {"email": "user2@example.com", "plan": "free"}, "groups": []}}

    dest.send(batch)  # the same batch again (a retry, or the next run): the same key
    assert sink.received[1].idempotency_key == request.idempotency_key
    dest.send([change(1, groups=("vip",)), change(2, "update", "pro"), change(3, "delete")])  # one payload differs
    dest.send([change(1, groups=()), change(2, "update", "free"), change(3, "delete")])  # only the groups differ
    assert len({r.idempotency_key for r in sink.received}) == 3
    dest.close()


def test_a_body_template_wraps_the_records_and_a_mixed_batch_is_sent_per_operation() -> None:
    template = {"data": {"items": "$records", "action": "$op-customers", "source": "warehouse"}}
    with JsonSink(path=PATH, token=TOKEN, extract=lambda body: body["data"]["items"]) as sink:
        dest = destination(sink, body_template=template)
        result = dest.send([change(1), change(2, "update"), change(3), change(4, "delete")])
    assert sorted(result.acknowledged) == ["1", "2", "3", "4"]
    assert [(r.body["data"]["action"], [x["key"] for x in r.body["data"]["items"]]) for r in sink.received] == [
        ("create-customers", ["1", "3"]), ("update-customers", ["2"]), ("delete-customers", ["4"])]
    assert all(r.body["data"]["source"] == "warehouse" for r in sink.received)
    assert len({r.idempotency_key for r in sink.received}) == 3  # each request its own key
    with pytest.raises(ValueError, match=r"must contain the value '\$records'"):
        destination(sink, body_template={"items": "records"})


@pytest.mark.parametrize("auth_type, login, expected", [
    ("bearer", "", {"Authorization": f"Bearer {TOKEN}"}),
    ("header", "", {"X-Sink-Key": TOKEN}),
    ("basic", "airflow", {"Authorization": "Basic " + base64.b64encode(f"airflow:{TOKEN}".encode()).decode()}),
])
def test_each_auth_type_sends_its_credential(auth_type: str, login: str, expected: dict[str, str]) -> None:
    with JsonSink(path=PATH, expect_headers=expected) as sink:
        result = destination(sink, auth_type=auth_type, login=login).send([change(1)])
        assert result.acknowledged == ["1"]
        with pytest.raises(DestinationError, match="HTTP 401"):  # the same server refuses another scheme
            destination(sink, auth_type="header" if auth_type != "header" else "bearer").send([change(1)])


def test_a_4xx_rejects_every_record_of_the_request_with_the_reply(sink: JsonSink) -> None:
    sink.reject = {"2": "plan 'gold' is not a plan"}
    result = destination(sink).send([change(1), change(2), change(3)])
    assert result.acknowledged == []
    assert {r.key for r in result.rejected} == {"1", "2", "3"}
    reason = result.rejected[0].reason
    assert reason.startswith("HTTP 422: ") and "plan 'gold' is not a plan" in reason
    assert sink.records == {}


@pytest.mark.parametrize("path, method, status", [("/hooks/nowhere", "POST", 404), (PATH, "PUT", 405)])
def test_a_wrong_url_or_method_fails_the_batch_for_good(sink: JsonSink, path: str, method: str, status: int) -> None:
    with pytest.raises(DestinationError, match=f"answered HTTP {status} \\(check the URL and method\\)") as excinfo:
        destination(sink, path=path, method=method).send([change(1)])
    assert not isinstance(excinfo.value, RetryableError)


@pytest.mark.parametrize("status, retry_after, expected", [
    (429, 0.2, 0.2),
    (429, None, None),
    (503, "Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # an HTTP date in the past: retry now
    (500, None, None),
    (502, 1.5, 1.5),
])
def test_throttling_and_server_errors_are_retryable_with_retry_after(sink: JsonSink, status: int, retry_after: Any,
                                                                     expected: float | None) -> None:
    dest = destination(sink)
    sink.inject_status(status, retry_after=retry_after)
    with pytest.raises(RetryableError, match=f"answered HTTP {status}") as excinfo:
        dest.send([change(1)])
    assert excinfo.value.retry_after == expected
    assert sink.records == {}
    assert dest.send([change(1)]).acknowledged == ["1"]  # the fault was for one request only
    assert list(sink.records) == ["1"]


@pytest.mark.parametrize("store", [False, True])
def test_a_reply_after_the_timeout_is_retryable(sink: JsonSink, store: bool) -> None:
    dest = destination(sink, timeout=0.3)
    sink.inject_timeout(seconds=2.0, store=store)
    started = time.monotonic()
    with pytest.raises(RetryableError, match="timed out"):
        dest.send([change(1)])
    assert time.monotonic() - started < 1.5  # the client's timeout, not the server's delay
    assert list(sink.records) == (["1"] if store else [])


@pytest.mark.parametrize("store", [False, True])
def test_a_connection_closed_mid_request_is_retryable_and_the_key_lets_the_sink_drop_the_replay(store: bool) -> None:
    with JsonSink(path=PATH, token=TOKEN, dedupe=True) as sink:
        dest = destination(sink)
        batch = [change(1), change(2)]
        sink.inject_drop(store=store)
        with pytest.raises(RetryableError, match="connection failed") as excinfo:
            dest.send(batch)
        assert excinfo.value.retry_after is None
        assert [r.fault for r in sink.received] == ["drop+store" if store else "drop"]
        assert dest.send(batch).acknowledged == ["1", "2"]
    assert sink.received[0].idempotency_key == sink.received[1].idempotency_key
    assert sink.applied == [("1", "create"), ("2", "create")]  # stored once either way
    assert sink.replays == (1 if store else 0)


def test_a_refused_connection_is_retryable() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = HttpDestinationConfig(f"http://127.0.0.1:{port}", secret=TOKEN, timeout=1.0)
    with pytest.raises(RetryableError, match="connection failed \\(ConnectError"):
        HttpDestination(config, PATH, object_name="sink/customers").send([change(1)])


@pytest.mark.parametrize("auth_type", ["bearer", "header", "basic"])
def test_bad_credentials_fail_for_good_and_the_secret_is_never_in_the_message(sink: JsonSink, auth_type: str) -> None:
    wrong = "wrong-secret-4321"
    dest = destination(sink, secret=wrong, auth_type=auth_type, login="airflow")
    with pytest.raises(DestinationError, match="HTTP 401: the connection's credentials are refused") as excinfo:
        dest.send([change(1)])
    assert not isinstance(excinfo.value, RetryableError)
    message = str(excinfo.value)
    assert "credential" in message and "***" in message  # the sink echoed it; it was scrubbed
    assert wrong not in message
    assert base64.b64encode(f"airflow:{wrong}".encode()).decode() not in message
    assert sink.records == {}


def test_the_secret_is_never_in_a_rejection_or_a_retryable_message(sink: JsonSink) -> None:
    sink.reject = {"1": f"the token {TOKEN} may not write plan"}
    result = destination(sink).send([change(1)])
    assert TOKEN not in result.rejected[0].reason and "the token *** may not" in result.rejected[0].reason
    sink.inject_status(503, body={"message": f"upstream refused Bearer {TOKEN}"})
    with pytest.raises(RetryableError, match="upstream refused Bearer \\*\\*\\*") as excinfo:
        destination(sink).send([change(2)])
    assert TOKEN not in str(excinfo.value)


@pytest.mark.parametrize("fault", ["timeout", "drop", "404"])
def test_a_secret_in_the_path_is_not_in_the_message_either(sink: JsonSink, fault: str) -> None:
    path = f"/hooks/other?api_key={TOKEN}" if fault == "404" else f"{PATH}?api_key={TOKEN}"
    dest = destination(sink, path=path, timeout=0.3)
    if fault == "timeout":
        sink.inject_timeout(seconds=1.0)
    elif fault == "drop":
        sink.inject_drop()
    with pytest.raises(DestinationError) as excinfo:
        dest.send([change(1)])
    assert "api_key=***" in str(excinfo.value) and TOKEN not in str(excinfo.value)
