"""Real HTTP servers on 127.0.0.1 for the reverse-ETL destination tests, with faults injected on demand.

Each server is a stdlib :class:`~http.server.ThreadingHTTPServer` running in a thread (use it as a context
manager) that implements its API's documented contract as far as the destinations use it, checks the
credential (401 otherwise, echoing what it was given, as careless servers do: the destinations must scrub it),
and keeps what it received (:attr:`FaultyServer.received`) and what it holds:

* :class:`JsonSink`: a generic JSON batch endpoint (``{"records": [{"key", "op", "fields", "groups"}]}``):
  stores records by key, logs every application (:attr:`JsonSink.applied`, where a record applied twice
  shows), optionally drops a request whose ``Idempotency-Key`` it already applied (``dedupe=True``);
* :class:`HubSpotServer`: CRM v3 objects ``batch/upsert``, ``batch/read``, ``batch/archive``, with 207
  multi-status per-record errors (an invalid email), 400 for an unknown property, rate-limit headers;
* :class:`MailchimpServer`: ``POST /3.0/lists/{id}`` (batch subscribe, errors inside a 200 body) and
  ``DELETE /3.0/lists/{id}/members/{subscriber_hash}``.

Faults apply to the next N requests (whatever their path, or only those whose path ends with ``on``; after
letting ``after`` requests through), in front of the API (as a proxy or rate limiter
would): :meth:`~FaultyServer.inject_status` (429 with ``Retry-After``, 500…), :meth:`~FaultyServer.inject_timeout`
(answer only after the client gave up, having applied the request or not) and :meth:`~FaultyServer.inject_drop`
(read the whole request, apply it or not, close the socket without an answer). Per-record errors are the APIs'
own: each server refuses the records its API would (``invalid`` adds addresses it treats as invalid).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

__all__ = ["FaultyServer", "HubSpotServer", "JsonSink", "MailchimpServer", "Received", "Reply", "subscriber_hash"]


@dataclass(frozen=True)
class Received:
    """One request as the server read it (``headers`` with lower-case names, ``body`` parsed from JSON)."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: Any
    fault: str | None  # the fault injected into its answer: "status 429", "timeout", "drop", "drop+store"…

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any = None  # JSON-able (bytes are sent as they are)
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Fault:
    kind: Literal["status", "timeout", "drop", "pass"]
    status: int = 0
    retry_after: str | None = None
    seconds: float = 0.0
    store: bool = False
    body: Any = None
    on: str | None = None  # only for a request whose path ends with this
    passes: int = 0  # kind "pass": requests to let through untouched

    @property
    def label(self) -> str:
        if self.kind == "status":
            return f"status {self.status}"
        return self.kind + ("+store" if self.store else "")


class FaultyServer(ThreadingHTTPServer):
    """The shared part: threads, request log, fault queue, authentication hook. Subclasses implement
    :meth:`authorized` and :meth:`api` (called under :attr:`lock`)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.RLock()
        self.received: list[Received] = []
        self._faults: deque[_Fault] = deque()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> Any:
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()  # wakes handlers sleeping in a timeout fault
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(5)

    # -- faults ------------------------------------------------------------------------------------
    # Every inject_* takes ``times`` (how many requests get the fault), ``on`` (only requests whose path, query
    # aside, ends with it count) and ``after`` (that many counting requests pass untouched first).
    def inject_status(self, status: int, *, times: int = 1, retry_after: float | str | None = None,
                      body: Any = None, on: str | None = None, after: int = 0) -> None:
        """Answer the next ``times`` requests with ``status`` (and ``Retry-After``, and ``body`` if given), without
        applying them."""
        value = None if retry_after is None else (retry_after if isinstance(retry_after, str) else f"{retry_after:g}")
        self._queue(_Fault("status", status=status, retry_after=value, body=body, on=on), times, after)

    def inject_timeout(self, *, times: int = 1, seconds: float = 3.0, store: bool = False, on: str | None = None,
                       after: int = 0) -> None:
        """Hold the next ``times`` requests ``seconds`` (past the client's timeout); with ``store`` the request is
        applied first and answered late, else it is never applied and the socket is closed."""
        self._queue(_Fault("timeout", seconds=seconds, store=store, on=on), times, after)

    def inject_drop(self, *, times: int = 1, store: bool = False, on: str | None = None, after: int = 0) -> None:
        """Read the next ``times`` requests whole, apply them when ``store``, then close the socket unanswered."""
        self._queue(_Fault("drop", store=store, on=on), times, after)

    def clear_faults(self) -> None:
        self._faults.clear()

    def _queue(self, fault: _Fault, times: int, after: int) -> None:
        with self.lock:
            if after:
                self._faults.append(replace(fault, kind="pass", passes=after))
            self._faults.extend([fault] * times)

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        bare = path.partition("?")[0]
        for i, fault in enumerate(self._faults):
            if fault.on is None or bare.endswith(fault.on):
                if fault.kind == "pass":  # a request let through before the faults behind it
                    if fault.passes > 1:
                        self._faults[i] = replace(fault, passes=fault.passes - 1)
                    else:
                        del self._faults[i]
                    return None
                del self._faults[i]
                return fault
        return None

    @property
    def pending_faults(self) -> int:
        return sum(f.kind != "pass" for f in self._faults)

    # -- for the assertions ------------------------------------------------------------------------
    def requests_to(self, suffix: str, method: str = "POST") -> list[Received]:
        return [r for r in self.received if r.method == method and r.path.endswith(suffix)]

    # -- what subclasses provide -------------------------------------------------------------------
    def authorized(self, headers: Mapping[str, str]) -> bool:
        raise NotImplementedError

    def unauthorized(self, headers: Mapping[str, str]) -> Reply:
        given = headers.get("authorization") or next((v for k, v in headers.items() if "key" in k), "")
        return Reply(401, {"status": "error", "message": f"Authentication failed: credential {given!r} is not valid"})

    def fault_reply(self, fault: _Fault) -> Reply:
        headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
        body = fault.body if fault.body is not None else {"status": "error", "message": f"injected HTTP {fault.status}"}
        return Reply(fault.status, body, headers)

    def api(self, method: str, path: str, headers: Mapping[str, str], body: Any) -> Reply:
        raise NotImplementedError

    # -- one request (called by the handler) -------------------------------------------------------
    def serve(self, handler: _Handler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in handler.headers.items()}
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            handler.answer(Reply(400, {"status": "error", "message": "the body is not JSON"}))
            return
        with self.lock:
            fault = self._take_fault(method, handler.path)
            self.received.append(Received(method, handler.path, headers, body, fault.label if fault else None))
        if fault is not None and fault.kind == "status":
            handler.answer(self.fault_reply(fault))
            return
        if not self.authorized(headers):
            handler.answer(self.unauthorized(headers))
            return
        reply = None
        if fault is None or fault.store:
            with self.lock:
                reply = self.api(method, handler.path, headers, body)
        if fault is not None and fault.kind == "timeout":
            self._stopping.wait(fault.seconds)
            if reply is not None:
                handler.answer(reply)  # too late: the client has given up
                return
        if fault is not None:
            handler.drop()
            return
        assert reply is not None
        handler.answer(reply)


class _Handler(BaseHTTPRequestHandler):
    server: FaultyServer

    def log_message(self, format: str, *args: Any) -> None:  # keep the test output clean
        pass

    def do_POST(self) -> None:
        self.server.serve(self, "POST")

    def do_PUT(self) -> None:
        self.server.serve(self, "PUT")

    def do_GET(self) -> None:
        self.server.serve(self, "GET")

    def do_DELETE(self) -> None:
        self.server.serve(self, "DELETE")

    def answer(self, reply: Reply) -> None:
        payload = reply.body if isinstance(reply.body, bytes) else (b"" if reply.body is None else json.dumps(reply.body).encode())
        try:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            if payload:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:  # the client gave up already
            pass

    def drop(self) -> None:
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.close_connection = True


def _bearer(headers: Mapping[str, str], token: str) -> bool:
    return headers.get("authorization") == f"Bearer {token}"


def _basic_password(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization", "")
    if not value.startswith("Basic "):
        return None
    try:
        _, _, password = base64.b64decode(value[6:]).decode().partition(":")
    except ValueError:
        return None
    return password


# --- the generic JSON sink -------------------------------------------------------------------------


class JsonSink(FaultyServer):
    """A JSON batch endpoint at ``path`` (``POST``): 2xx when every record of the request is stored.

    :param expect_headers: the headers that authenticate a request (default: ``Authorization: Bearer <token>``).
    :param dedupe: a request whose ``Idempotency-Key`` was already applied is answered as the first time and
        not applied again (counted in :attr:`replays`).
    :param extract: where the records are in the body (for a ``body_template``).
    :param reject: key → reason: a request carrying such a record is refused whole with 422 (nothing stored).
    """

    def __init__(self, *, path: str = "/hooks/records", token: str = "sink-token-0123",
                 expect_headers: Mapping[str, str] | None = None, dedupe: bool = False,
                 extract: Callable[[Any], Any] = lambda body: body.get("records")) -> None:
        super().__init__()
        self.path = path
        self.expect_headers = {k.lower(): v for k, v in (expect_headers or {"Authorization": f"Bearer {token}"}).items()}
        self.dedupe = dedupe
        self.extract = extract
        self.reject: dict[str, str] = {}
        self.records: dict[str, dict[str, Any]] = {}  # key -> {"fields", "groups"}
        self.applied: list[tuple[str, str]] = []  # (key, op) per application, in order
        self.replays = 0
        self._answered: dict[str, Reply] = {}

    def authorized(self, headers: Mapping[str, str]) -> bool:
        return all(headers.get(k) == v for k, v in self.expect_headers.items())

    def api(self, method: str, path: str, headers: Mapping[str, str], body: Any) -> Reply:
        if path.partition("?")[0] != self.path:
            return Reply(404, {"error": f"no endpoint {path}"})
        if method != "POST":
            return Reply(405, {"error": f"{method} is not allowed here"})
        key = headers.get("idempotency-key")
        if self.dedupe and key in self._answered:
            self.replays += 1
            return self._answered[key]
        records = self.extract(body) if isinstance(body, dict) else None
        if not isinstance(records, list) or not all(isinstance(r, dict) and "key" in r for r in records):
            return Reply(400, {"error": "expected a list of records with a key each"})
        refused = [{"key": r["key"], "reason": self.reject[r["key"]]} for r in records if r["key"] in self.reject]
        if refused:
            return Reply(422, {"error": "invalid records", "records": refused})
        for record in records:
            op = record.get("op", "create")
            if op == "delete":
                self.records.pop(record["key"], None)
            else:
                self.records[record["key"]] = {"fields": record.get("fields"), "groups": record.get("groups")}
            self.applied.append((record["key"], op))
        reply = Reply(200, {"received": len(records)})
        if key is not None:
            self._answered[key] = reply
        return reply


# --- HubSpot CRM v3 ----------------------------------------------------------------------------------

HUBSPOT_PROPERTIES = frozenset({"email", "firstname", "lastname", "plan", "company", "lifecyclestage"})
HUBSPOT_MAX_INPUTS = 100


def _hubspot_error(category: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"status": "error", "category": category, "message": message, "correlationId": "test-correlation", **extra}


class HubSpotServer(FaultyServer):
    """CRM v3 objects (``contacts`` by default) addressed by ``email``, authenticated by a bearer token.

    * ``batch/upsert``: more than 100 inputs, a repeated id or a property it does not know → 400 for the whole
      request; an invalid email (no ``@``, or in :attr:`invalid`) → when every input carries an
      ``objectWriteTraceId``, 207 with one error per bad input (naming it as :attr:`error_context` says:
      ``"trace"`` ``context.objectWriteTraceId``, ``"ids"`` ``context.ids``, ``"none"`` nothing), the good
      ones applied; without trace ids, 400 and nothing applied;
    * ``batch/read`` by ``idProperty=email``: the objects, 207 with ``OBJECT_NOT_FOUND`` for the missing;
    * ``batch/archive`` by HubSpot id: 204, known or not;
    * every answer has ``X-HubSpot-RateLimit-*`` headers; past ``secondly_limit`` requests in one second, or
      through :meth:`inject_rate_limit`, a 429 the way HubSpot answers it.
    """

    def __init__(self, *, token: str = "pat-na1-hubspot-token", properties: Iterable[str] = HUBSPOT_PROPERTIES,
                 object_types: Iterable[str] = ("contacts",), secondly_limit: int | None = None,
                 interval_ms: int = 10000) -> None:
        super().__init__()
        self.token = token
        self.properties = frozenset(properties)
        self.object_types = frozenset(object_types)
        self.secondly_limit = secondly_limit
        self.interval_ms = interval_ms
        self.invalid: set[str] = set()
        self.error_context: Literal["trace", "ids", "none"] = "trace"
        self.objects: dict[str, dict[str, Any]] = {}  # hs id -> {"id", "properties", "archived"}
        self._ids = itertools.count(1001)
        self._recent: deque[float] = deque()
        self._policies: deque[str] = deque()

    def inject_rate_limit(self, policy: Literal["SECONDLY", "TEN_SECONDLY_ROLLING", "DAILY"], *, times: int = 1) -> None:
        """The next ``times`` requests answer 429 for ``policy``, with the headers and body HubSpot sends (no
        ``Retry-After``)."""
        self._policies.extend([policy] * times)
        self.inject_status(429, times=times)

    def by_email(self, email: str) -> dict[str, Any] | None:
        email = email.strip().lower()
        return next((o for o in self.objects.values() if not o["archived"] and o["properties"].get("email") == email), None)

    @property
    def contacts(self) -> dict[str, dict[str, Any]]:
        """email → properties of every contact not archived."""
        return {o["properties"]["email"]: o["properties"] for o in self.objects.values() if not o["archived"]}

    # -- rate limits -----------------------------------------------------------------------------
    def _limit_headers(self, *, secondly_left: int = 9, interval_left: int = 99, daily_left: int = 249000) -> dict[str, str]:
        return {
            "X-HubSpot-RateLimit-Daily": "250000", "X-HubSpot-RateLimit-Daily-Remaining": str(daily_left),
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(self.interval_ms), "X-HubSpot-RateLimit-Max": "100",
            "X-HubSpot-RateLimit-Remaining": str(interval_left), "X-HubSpot-RateLimit-Secondly": "10",
            "X-HubSpot-RateLimit-Secondly-Remaining": str(secondly_left),
        }

    def _rate_limited(self, policy: str, retry_after: str | None = None) -> Reply:
        headers = self._limit_headers(secondly_left=0 if policy == "SECONDLY" else 5,
                                      interval_left=0 if policy == "TEN_SECONDLY_ROLLING" else 50,
                                      daily_left=0 if policy == "DAILY" else 1000)
        if retry_after is not None:
            headers["Retry-After"] = retry_after
        return Reply(429, {"status": "error", "message": f"You have reached your {policy.lower()} limit.",
                           "errorType": "RATE_LIMIT", "correlationId": "test-correlation", "policyName": policy,
                           "groupName": "publicapi:private-app"}, headers)

    def fault_reply(self, fault: _Fault) -> Reply:
        if fault.status == 429 and fault.body is None:
            policy = self._policies.popleft() if self._policies else "TEN_SECONDLY_ROLLING"
            return self._rate_limited(policy, fault.retry_after)
        reply = super().fault_reply(fault)
        return Reply(reply.status, reply.body, {**self._limit_headers(), **reply.headers})

    # -- the API ---------------------------------------------------------------------------------
    def authorized(self, headers: Mapping[str, str]) -> bool:
        return _bearer(headers, self.token)

    def unauthorized(self, headers: Mapping[str, str]) -> Reply:
        return Reply(401, _hubspot_error(
            "INVALID_AUTHENTICATION",
            f"Authentication credentials not found or invalid (got {headers.get('authorization')!r}). This API "
            "supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview"))

    def api(self, method: str, path: str, headers: Mapping[str, str], body: Any) -> Reply:
        if self.secondly_limit is not None:
            now = time.monotonic()
            while self._recent and now - self._recent[0] > 1.0:
                self._recent.popleft()
            if len(self._recent) >= self.secondly_limit:
                return self._rate_limited("SECONDLY")
            self._recent.append(now)
        parts = path.split("/")  # "", crm, v3, objects, <type>, batch, <action>
        if method != "POST" or len(parts) != 7 or parts[1:4] != ["crm", "v3", "objects"] or parts[5] != "batch":
            return Reply(404, _hubspot_error("OBJECT_NOT_FOUND", f"no route {method} {path}"))
        if parts[4] not in self.object_types:
            return Reply(404, _hubspot_error("OBJECT_NOT_FOUND", f"Unable to infer object type from: {parts[4]}"))
        inputs = body.get("inputs") if isinstance(body, dict) else None
        if not isinstance(inputs, list) or not all(isinstance(i, dict) for i in inputs):
            return Reply(400, _hubspot_error("VALIDATION_ERROR", "Invalid input JSON: 'inputs' must be a list"))
        if len(inputs) > HUBSPOT_MAX_INPUTS:
            return Reply(400, _hubspot_error("VALIDATION_ERROR", f"Batch input size {len(inputs)} exceeds limit of {HUBSPOT_MAX_INPUTS}"))
        action = {"upsert": self._upsert, "read": self._read, "archive": self._archive}.get(parts[6])
        if action is None:
            return Reply(404, _hubspot_error("OBJECT_NOT_FOUND", f"no route {method} {path}"))
        reply = action(body, inputs)
        return Reply(reply.status, reply.body, {**self._limit_headers(), **reply.headers})

    def _email_error(self, email: str) -> str | None:
        if "@" not in email or email.strip().lower() in self.invalid:
            detail = {"isValid": False, "message": f"Email address {email} is invalid", "error": "INVALID_EMAIL", "name": "email"}
            return f"Property values were not valid: {json.dumps([detail])}"
        return None

    def _upsert(self, body: dict[str, Any], inputs: list[dict[str, Any]]) -> Reply:
        if any(i.get("idProperty") != "email" for i in inputs):
            return Reply(400, _hubspot_error("VALIDATION_ERROR", "idProperty must be a unique property: email"))
        ids = [str(i.get("id", "")).strip().lower() for i in inputs]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            return Reply(400, _hubspot_error("VALIDATION_ERROR", f"Duplicate IDs found in batch input: {repeated}. IDs must be unique"))
        unknown = sorted({p for i in inputs for p in (i.get("properties") or {}) if p not in self.properties})
        if unknown:
            details = [{"isValid": False, "message": f'Property "{p}" does not exist', "error": "PROPERTY_DOESNT_EXIST",
                        "name": p, "localizedErrorMessage": f'Property "{p}" does not exist'} for p in unknown]
            return Reply(400, _hubspot_error("VALIDATION_ERROR", f"Property values were not valid: {json.dumps(details)}"))
        traced = all(i.get("objectWriteTraceId") is not None for i in inputs)
        errors: list[dict[str, Any]] = []
        results: list[dict[str, Any]] = []
        for item, email in zip(inputs, ids):
            problem = self._email_error(str(item.get("id", "")))
            if problem is not None:
                if not traced:
                    return Reply(400, _hubspot_error("VALIDATION_ERROR", problem))
                context = {"trace": {"objectWriteTraceId": [item["objectWriteTraceId"]]}, "ids": {"ids": [item.get("id")]},
                           "none": {}}[self.error_context]
                errors.append(_hubspot_error("VALIDATION_ERROR", problem, context=context))
                continue
            results.append(self._apply(email, item.get("properties") or {}))
        now = "2026-01-01T00:00:00Z"
        if errors:
            return Reply(207, {"status": "COMPLETE", "results": results, "numErrors": len(errors), "errors": errors,
                               "startedAt": now, "completedAt": now})
        return Reply(200, {"status": "COMPLETE", "results": results, "startedAt": now, "completedAt": now})

    def _apply(self, email: str, properties: Mapping[str, Any]) -> dict[str, Any]:
        existing = self.by_email(email)
        props = {k: ("" if v is None else str(v)) for k, v in properties.items()}
        props["email"] = email
        if existing is None:
            existing = {"id": str(next(self._ids)), "properties": props, "archived": False}
            self.objects[existing["id"]] = existing
            new = True
        else:
            existing["properties"].update(props)
            new = False
        return {"id": existing["id"], "properties": dict(existing["properties"]), "new": new, "archived": False}

    def _read(self, body: dict[str, Any], inputs: list[dict[str, Any]]) -> Reply:
        if body.get("idProperty") != "email":
            return Reply(400, _hubspot_error("VALIDATION_ERROR", "idProperty must be email here"))
        results, missing = [], []
        for item in inputs:
            found = self.by_email(str(item.get("id", "")))
            if found is None:
                missing.append(item.get("id"))
            else:
                results.append({"id": found["id"], "properties": {"email": found["properties"]["email"]}, "archived": False})
        if missing:
            error = _hubspot_error("OBJECT_NOT_FOUND", "Could not get some CONTACT objects, they may be deleted or not "
                                   "exist. Check that ids are valid.", context={"ids": missing})
            return Reply(207, {"status": "COMPLETE", "results": results, "numErrors": 1, "errors": [error]})
        return Reply(200, {"status": "COMPLETE", "results": results})

    def _archive(self, body: dict[str, Any], inputs: list[dict[str, Any]]) -> Reply:
        for item in inputs:
            found = self.objects.get(str(item.get("id")))
            if found is not None:
                found["archived"] = True
        return Reply(204)


# --- Mailchimp Marketing ----------------------------------------------------------------------------

MAILCHIMP_STATUSES = frozenset({"subscribed", "unsubscribed", "cleaned", "pending", "transactional"})
MAILCHIMP_MAX_MEMBERS = 500


def subscriber_hash(email: str) -> str:
    return hashlib.md5(email.strip().lower().encode()).hexdigest()  # noqa: S324 (Mailchimp's id, not security)


def _problem(status: int, title: str, detail: str, **extra: Any) -> Reply:
    return Reply(status, {"type": "https://mailchimp.com/developer/marketing/docs/errors/", "title": title,
                          "status": status, "detail": detail, "instance": "test-instance", **extra})


class MailchimpServer(FaultyServer):
    """Mailchimp Marketing lists: basic auth with any user name and the API key as the password.

    * ``POST /3.0/lists/{id}``: more than 500 members, or a member without ``email_address`` / with a status
      outside the five / with a list as a merge field's value → 400 problem document, nothing applied; else 200 with ``new_members``,
      ``updated_members``, ``errors`` (an invalid address: no ``@`` or in :attr:`invalid`; a merge field the
      list does not have; an existing member when ``update_existing`` is false: ``ERROR_CONTACT_EXISTS``),
      ``total_created``, ``total_updated``, ``error_count``. Tags are added, or replace the member's when
      ``sync_tags`` (with ``update_existing``);
    * ``DELETE /3.0/lists/{id}/members/{subscriber_hash}``: archives the member (204), 404 when absent;
    * ``GET /3.0/lists/{id}``: the list; an unknown list: 404 on every path.
    """

    def __init__(self, *, api_key: str = "0123456789abcdef0123456789abcdef-us1", lists: Iterable[str] = ("a1b2c3",),
                 merge_fields: Iterable[str] = ("FNAME", "LNAME", "PLAN")) -> None:
        super().__init__()
        self.api_key = api_key
        self.merge_fields = frozenset(merge_fields)
        self.lists: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in lists}  # list -> hash -> member
        self.archived: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in lists}
        self.invalid: set[str] = set()

    def members(self, list_id: str | None = None) -> dict[str, dict[str, Any]]:
        """email (lower-case) → member, of the list (the only one when there is one)."""
        members = self.lists[list_id or next(iter(self.lists))]
        return {m["email_address"].lower(): m for m in members.values()}

    def authorized(self, headers: Mapping[str, str]) -> bool:
        return _basic_password(headers) == self.api_key

    def unauthorized(self, headers: Mapping[str, str]) -> Reply:
        return _problem(401, "API Key Invalid", f"Your API key {_basic_password(headers)!r} may be invalid, or you've "
                        f"attempted to access the wrong datacenter. (Authorization: {headers.get('authorization')})")

    def api(self, method: str, path: str, headers: Mapping[str, str], body: Any) -> Reply:
        parts = path.partition("?")[0].split("/")  # "", 3.0, lists, <id>[, members, <hash>]
        if len(parts) < 4 or parts[1:3] != ["3.0", "lists"] or parts[3] not in self.lists:
            return _problem(404, "Resource Not Found", "The requested resource could not be found.")
        list_id = parts[3]
        if method == "POST" and len(parts) == 4:
            return self._batch(list_id, body)
        if method == "GET" and len(parts) == 4:
            return Reply(200, {"id": list_id, "name": f"Audience {list_id}", "stats": {"member_count": len(self.lists[list_id])}})
        if method == "DELETE" and len(parts) == 6 and parts[4] == "members":
            member = self.lists[list_id].pop(parts[5], None)
            if member is None:
                return _problem(404, "Resource Not Found", "The requested resource could not be found.")
            self.archived[list_id][parts[5]] = {**member, "status": "archived"}
            return Reply(204)
        return _problem(405, "Method Not Allowed", f"{method} is not allowed on {path}")

    def _batch(self, list_id: str, body: Any) -> Reply:
        members = body.get("members") if isinstance(body, dict) else None
        if not isinstance(members, list):
            return _problem(400, "Invalid Resource", "The resource submitted could not be validated.",
                            errors=[{"field": "members", "message": "Required field missing"}])
        if len(members) > MAILCHIMP_MAX_MEMBERS:
            return _problem(400, "Invalid Resource", f"You can only add up to {MAILCHIMP_MAX_MEMBERS} members at a time.")
        schema_errors = [
            {"field": f"members.{i}.{name}", "message": "Schema describes enum or string, invalid value given"}
            for i, m in enumerate(members)
            for name, ok in (("email_address", isinstance(m, dict) and isinstance(m.get("email_address"), str)),
                             ("status", isinstance(m, dict) and m.get("status") in MAILCHIMP_STATUSES))
            if not ok
        ] + [
            {"field": f"members.{i}.merge_fields.{tag}", "message": "Schema describes string, array found instead"}
            for i, m in enumerate(members) if isinstance(m, dict)
            for tag, value in (m.get("merge_fields") or {}).items() if isinstance(value, list)
        ]
        if schema_errors:
            return _problem(400, "Invalid Resource", "The resource submitted could not be validated. For field-specific "
                            "details, see the 'errors' array.", errors=schema_errors)
        update_existing = bool(body.get("update_existing"))
        sync_tags = bool(body.get("sync_tags")) and update_existing
        new, updated, errors = [], [], []
        for member in members:
            email = member["email_address"].strip()
            error = self._member_error(list_id, member, update_existing)
            if error is not None:
                # lower-cased, as Mailchimp normalises addresses: the client must match them case-insensitively
                errors.append({"email_address": email.lower(), "error": error[0], "error_code": error[1], "field": "",
                               "field_message": ""})
                continue
            stored, created = self._apply(list_id, member, sync_tags)
            (new if created else updated).append(stored)
        return Reply(200, {"new_members": new, "updated_members": updated, "errors": errors, "total_created": len(new),
                           "total_updated": len(updated), "error_count": len(errors), "_links": []})

    def _member_error(self, list_id: str, member: Mapping[str, Any], update_existing: bool) -> tuple[str, str] | None:
        email = member["email_address"].strip()
        if "@" not in email or email.lower() in self.invalid:
            return f"{email} looks fake or invalid, please enter a real email address.", "ERROR_GENERIC"
        unknown = sorted(set(member.get("merge_fields") or {}) - self.merge_fields)
        if unknown:
            return f"Your merge fields were invalid: {', '.join(unknown)} does not exist.", "ERROR_GENERIC"
        if not update_existing and subscriber_hash(email) in self.lists[list_id]:
            return f"{email} is already a list member. Use PUT to insert or update list members.", "ERROR_CONTACT_EXISTS"
        return None

    def _apply(self, list_id: str, member: Mapping[str, Any], sync_tags: bool) -> tuple[dict[str, Any], bool]:
        email = member["email_address"].strip()
        key = subscriber_hash(email)
        existing = self.lists[list_id].get(key)
        tags = [str(t) for t in member.get("tags") or []]
        if existing is None:
            existing = {"id": key, "email_address": email, "list_id": list_id, "merge_fields": {}, "tags": []}
            self.lists[list_id][key] = existing
            self.archived[list_id].pop(key, None)
            created = True
        else:
            created = False
        existing["status"] = member["status"]
        existing["merge_fields"].update(member.get("merge_fields") or {})
        names = tags if sync_tags else list(dict.fromkeys([t["name"] for t in existing["tags"]] + tags))
        existing["tags"] = [{"id": i, "name": name} for i, name in enumerate(names, 1)]
        return json.loads(json.dumps(existing)), created
