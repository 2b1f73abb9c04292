"""Mailchimp Marketing audience (list) members, through the batch endpoint (no Airflow imports).

The connection: base URL ``https://<dc>.api.mailchimp.com`` (``<dc>`` is the API key's suffix, e.g. ``us21``;
with or without ``/3.0``), the API key as the password and any login (Mailchimp's basic auth ignores the user
name; ``airflow-osds`` is sent when the connection has none). The key is never in a message.

A record becomes a member:

* **address**: ``fields["email_address"]``, else ``fields["email"]`` (trimmed). Mailchimp identifies a member
  by the MD5 of its lower-cased address, so a second change of one batch with the same address (case aside)
  is rejected before sending, and so is a change without one;
* **status**: ``fields["status"]`` when the record has one (``subscribed``, ``unsubscribed``, ``cleaned``,
  ``pending`` or ``transactional``; another value is rejected before sending), else ``status``;
* **merge fields**: every other field, its name upper-cased, because Mailchimp's merge tags are upper case
  (``fname`` → ``FNAME``). ``None`` is sent as ``""`` (which clears the merge field). Two fields with the
  same upper-cased name reject the record;
* **tags**: the change's ``groups``. Mailchimp adds them to the member's tags; with ``sync_tags`` (and
  ``update_existing``) they *replace* the member's tags, so leaving a group removes its tag (and so are tags
  set outside the sync removed: hence off by default).

**create / update** → ``POST /3.0/lists/{list_id}`` with ``{"members": […], "update_existing", "sync_tags"}``,
at most 500 members. Mailchimp answers 200 even when some members failed:

* an ``errors[]`` entry rejects the change with that address (compared lower-cased) with
  ``"{error_code}: {error}"``; an entry naming no address of the request rejects every change that
  ``new_members`` / ``updated_members`` do not confirm (it may be the one that failed; re-sending is harmless);
* ``ERROR_CONTACT_EXISTS`` (only with ``update_existing=False``) acknowledges the change, counted
  ``existing``: the member is there and a create-only sync must not touch it. It also makes a retry after a
  lost reply harmless;
* every other change is acknowledged, counted ``created`` / ``updated`` as the reply places it;
* 400 (the request refused whole, e.g. a member Mailchimp's schema refuses): the batch is split in halves
  and each half sent again, down to single members, so only the bad ones are rejected;
* 404: :class:`DestinationError` (no such list: check ``list_id`` and the data center of the base URL);
  401 / 403: :class:`DestinationError`; 429, 5xx, a timeout or a dropped connection: :class:`RetryableError`.

**delete** → ``DELETE /3.0/lists/{list_id}/members/{subscriber_hash}``, one request per record: 204 archives
the member (Mailchimp's delete: the member keeps its history and can come back); 404 is acknowledged, counted
``absent`` (already gone, which is what a delete wants); another 4xx rejects the record. Since a missing list
answers 404 too, the list is looked up once (``GET /3.0/lists/{list_id}``) before the first delete of a
destination that has not written to it yet.

With ``update_existing=False`` Mailchimp cannot update a member, so ``operations`` is create and delete only:
a mode needing updates is refused before anything is sent.

Caution: with ``update_existing`` Mailchimp applies the status to existing members as well, so
``status="subscribed"`` re-subscribes a member who unsubscribed. Map a ``status`` field from the warehouse
(where unsubscribes are known) to avoid that.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_osds.reverse_etl.destinations._http import (
    HttpBacked,
    HttpTransport,
    excerpt,
    raise_for_batch,
    reject_duplicates,
)
from airflow_osds.reverse_etl.destinations.base import BatchResult, Change, DestinationError, Op, Rejection

if TYPE_CHECKING:
    import httpx

    from airflow_osds.reverse_etl.destinations._http import HttpDestinationConfig

__all__ = ["MailchimpDestination", "subscriber_hash"]

MAX_BATCH = 500
STATUSES = frozenset({"subscribed", "unsubscribed", "cleaned", "pending", "transactional"})
ADDRESS_FIELDS = ("email_address", "email")
EXISTS = "ERROR_CONTACT_EXISTS"


def subscriber_hash(email: str) -> str:
    """Mailchimp's id of a member: the MD5 of the lower-cased address."""
    return hashlib.md5(email.strip().lower().encode(), usedforsecurity=False).hexdigest()


def _address(change: Change) -> str:
    for name in ADDRESS_FIELDS:
        value = change.fields.get(name)
        if value not in (None, ""):
            return str(value).strip()
    return ""


class MailchimpDestination(HttpBacked):
    """The members of one Mailchimp audience (see the module docstring).

    :param config: the ``reverse_etl_http`` connection: base URL ``https://<dc>.api.mailchimp.com``, the API key
        as the password.
    :param list_id: the audience's id (Audience → Settings → "Audience name and defaults").
    :param status: the status of a member whose record has no ``status`` field.
    :param update_existing: update members already on the list (else only new addresses are added).
    :param sync_tags: replace each member's tags by the record's groups (else the groups are only added).
    :param batch_size: members per request, at most 500 (Mailchimp's limit).
    """

    def __init__(self, config: HttpDestinationConfig, list_id: str, *, status: str = "subscribed",
                 update_existing: bool = True, sync_tags: bool = False, batch_size: int = MAX_BATCH) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH}, not {batch_size}")
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(sorted(STATUSES))}, not {status!r}")
        if not list_id or "/" in list_id:
            raise ValueError(f"list_id {list_id!r} is not a Mailchimp audience id")
        self.list_id = list_id
        self.status = status
        self.update_existing = update_existing
        self.sync_tags = sync_tags
        self.batch_size = batch_size
        self.object_name = f"mailchimp/{list_id}"
        self.operations: frozenset[Op] = frozenset({"create", "update", "delete"} if update_existing else {"create", "delete"})
        # A base URL that already ends in /3.0 (as Mailchimp's docs write it) must not get a second one.
        prefix = "" if urlsplit(config.base_url).path.rstrip("/").endswith("/3.0") else "/3.0"
        self._list_path = f"{prefix}/lists/{list_id}"
        self._http = HttpTransport(config, name=self.object_name, rate_limit=config.max_requests_per_second,
                                   basic_auth=(config.login or "airflow-osds", config.secret))
        self._list_seen = False  # the list answered once (a 404 on a member's DELETE then means the member)

    def send(self, batch: Sequence[Change]) -> BatchResult:
        result = BatchResult()
        upserts = [c for c in batch if c.op != "delete"]
        deletes = [c for c in batch if c.op == "delete"]
        if upserts:
            kept, refused = reject_duplicates(upserts, lambda c: _address(c).lower(), "email address")
            result.rejected.extend(refused)
            members: list[tuple[Change, dict[str, Any]]] = []
            for change in kept:
                member = self._member(change)
                if isinstance(member, str):
                    result.rejected.append(Rejection(change.key, member))
                else:
                    members.append((change, member))
            if members:
                self._subscribe(members, result)
        if deletes and not self._list_seen:
            # A member's DELETE answers 404 for a missing list too: without this, deletes sent to a wrong list id
            # would all pass for "already gone".
            self._request("GET", f"{self._list_path}?fields=id", None)
            self._list_seen = True
        for change in deletes:
            self._archive(change, result)
        return result

    # -- create / update ---------------------------------------------------------------------
    def _member(self, change: Change) -> dict[str, Any] | str:
        """The member for ``change``, or why it cannot be sent."""
        status = change.fields.get("status")
        status = self.status if status in (None, "") else str(status)
        if status not in STATUSES:
            return f"status {status!r} is not one of {', '.join(sorted(STATUSES))}"
        merge_fields: dict[str, Any] = {}
        for name, value in change.fields.items():
            if name in ADDRESS_FIELDS or name == "status":
                continue
            tag = name.upper()
            if tag in merge_fields:
                return f"two fields become merge field {tag}; rename one of them"
            merge_fields[tag] = "" if value is None else value
        member: dict[str, Any] = {"email_address": _address(change), "status": status, "merge_fields": merge_fields}
        if change.groups or self.sync_tags:
            member["tags"] = list(change.groups)
        return member

    def _subscribe(self, members: list[tuple[Change, dict[str, Any]]], result: BatchResult) -> None:
        body = {"members": [m for _, m in members], "update_existing": self.update_existing,
                "sync_tags": self.sync_tags and self.update_existing}
        response = self._request("POST", self._list_path, body)
        status = response.status_code
        if status == 200:
            self._list_seen = True
            self._outcomes(members, self._json(response), result)
        elif status == 400 and len(members) > 1:
            half = len(members) // 2
            self._subscribe(members[:half], result)
            self._subscribe(members[half:], result)
        else:
            reason = f"HTTP {status}: {self._describe(response)}"
            result.rejected.extend(Rejection(c.key, reason) for c, _ in members)

    def _outcomes(self, members: list[tuple[Change, dict[str, Any]]], body: dict[str, Any], result: BatchResult) -> None:
        by_address = {m["email_address"].lower(): c for c, m in members}
        placed: dict[str, str] = {}  # key -> created / updated / existing
        for name, outcome in (("new_members", "created"), ("updated_members", "updated")):
            for item in body.get(name) or []:
                change = by_address.get(str(item.get("email_address", "")).strip().lower()) if isinstance(item, dict) else None
                if change is not None:
                    placed[change.key] = outcome
        reasons: dict[str, str] = {}
        unattributed: list[str] = []
        for error in body.get("errors") or []:
            if not isinstance(error, dict):
                continue
            change = by_address.get(str(error.get("email_address", "")).strip().lower())
            code = str(error.get("error_code") or "").strip()
            reason = f"{code}: {error.get('error') or 'no message'}" if code else str(error.get("error") or "no message")
            if change is None:
                unattributed.append(reason)
            elif code == EXISTS and not self.update_existing:
                placed[change.key] = "existing"
            else:
                reasons.setdefault(change.key, reason)
        for change, _ in members:
            if change.key in reasons:
                result.rejected.append(Rejection(change.key, excerpt(reasons[change.key], self._http.secrets)))
            elif change.key in placed or not unattributed:
                result.acknowledged.append(change.key)
                outcome = placed.get(change.key, "upserted")
                result.counts[outcome] = result.counts.get(outcome, 0) + 1
            else:
                reason = "; ".join(unattributed) + " (the error names no member of the request; this one was not confirmed)"
                result.rejected.append(Rejection(change.key, excerpt(reason, self._http.secrets)))

    # -- delete ------------------------------------------------------------------------------
    def _archive(self, change: Change, result: BatchResult) -> None:
        address = _address(change)
        if not address:
            result.rejected.append(Rejection(change.key, "no email address to address the record by"))
            return
        response = self._request("DELETE", f"{self._list_path}/members/{subscriber_hash(address)}", None,
                                 missing_list_is_fatal=False)
        status = response.status_code
        if 200 <= status < 300 or status == 404:
            outcome = "absent" if status == 404 else "archived"
            result.acknowledged.append(change.key)
            result.counts[outcome] = result.counts.get(outcome, 0) + 1
        else:
            result.rejected.append(Rejection(change.key, f"HTTP {status} archiving: {self._describe(response)}"))

    # -- replies -----------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: Any, *, missing_list_is_fatal: bool = True) -> httpx.Response:
        response = self._http.request(method, path, json=body)
        raise_for_batch(response, name=self.object_name, secret=self._http.secrets)
        if response.status_code == 404 and missing_list_is_fatal:
            raise DestinationError(f"{self.object_name}: {method} {path} answered HTTP 404 (is {self.list_id!r} an "
                                   f"audience of this account, in this data center?): {self._describe(response)}")
        return response

    def _describe(self, response: httpx.Response) -> str:
        """Mailchimp's problem document as ``title: detail`` (with the fields it names), else the body's text."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and (body.get("title") or body.get("detail")):
            text = ": ".join(str(body[k]) for k in ("title", "detail") if body.get(k))
            fields = [f"{e.get('field')}: {e.get('message')}" for e in body.get("errors") or [] if isinstance(e, dict)]
            if fields:
                text += f" ({'; '.join(fields)})"
            return excerpt(text, self._http.secrets)
        return excerpt(response.text, self._http.secrets)
