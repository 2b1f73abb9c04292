"""HubSpot CRM v3 objects (contacts by default) through the batch endpoints (no Airflow imports).

Per operation:

* **create / update** → ``POST /crm/v3/objects/{objectType}/batch/upsert`` with
  ``{"inputs": [{"idProperty", "id", "properties", "objectWriteTraceId"}]}``: ``id`` is the record's
  ``fields[id_property]`` (else its key), ``properties`` its fields (``None`` sent as ``""``, which clears the
  property). Each input carries its position as ``objectWriteTraceId``: HubSpot documents that a unique
  trace id per input turns on multi-status replies (207) with per-record errors.
* **delete** → ``POST …/batch/read`` with ``idProperty`` to find the records' HubSpot ids (archive takes
  only those), then ``POST …/batch/archive`` with ``{"inputs": [{"id"}]}`` (204, whatever the state). A
  record HubSpot does not have (``OBJECT_NOT_FOUND``, or absent from the results) is acknowledged: it is
  gone, which is what a delete wants (counted as ``absent``).

Per reply:

* 200 / 201: every input acknowledged; ``results[].new`` counts ``created`` / ``updated`` (``upserted``
  when a result does not say);
* 207: an error naming records rejects them with its ``category: message``. A record is named by the
  error's ``context.objectWriteTraceId`` (our positions), ``context.ids`` or ``id`` (id property values).
  The others are acknowledged, **except** when an error names no record: then every record the reply does
  not confirm in ``results[]`` (by trace id or id property value) is rejected with that error, since it
  may be the one that failed; an upsert retried next run is harmless;
* 400 naming a property that does not exist (``PROPERTY_DOESNT_EXIST``) which every record of the batch
  has: :class:`DestinationError` naming it (the mapping is wrong: every record of every batch would fail);
* another 400 for a batch of several records (HubSpot refuses a whole batch for one bad input): the batch is
  split in halves and each half sent again, down to single records, so only the bad records are rejected
  (at most 2n - 1 requests for n records);
* 429: :class:`RetryableError` after ``Retry-After``, else ``X-HubSpot-RateLimit-*``: 1 s when the
  secondly budget is spent, the interval (``…-Interval-Milliseconds``, 10 s) when the rolling one is; the
  **daily** limit spent (``policyName`` ``DAILY`` or ``…-Daily-Remaining: 0``) is a :class:`DestinationError`
  (it resets at midnight, no retry within a task helps);
* 401 / 403: :class:`DestinationError`; 404 (an unknown object type): :class:`DestinationError`;
  5xx, timeouts, dropped connections: :class:`RetryableError`; another 4xx rejects the request's records.

Two changes of one batch with the same id property value are refused by HubSpot ("duplicate IDs"), so the
later one is rejected before sending. Groups are not sent (HubSpot objects have no tags: map them to a
property with the sync's ``group_field``). Default rate limit: 10 requests/s (100 per 10 s, the lowest tier's
burst limit), unless the connection sets ``max_requests_per_second``. Batches of at most 100 inputs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

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

__all__ = ["HubSpotDestination"]

MAX_BATCH = 100
DEFAULT_RATE = 10.0


def _error_reason(error: dict[str, Any]) -> str:
    message = str(error.get("message") or "").strip() or "no message"
    category = error.get("category")
    return f"{category}: {message}" if category else message


class HubSpotDestination(HttpBacked):
    """HubSpot CRM objects, upserted by a unique property (see the module docstring).

    :param config: the ``reverse_etl_http`` connection: base URL ``https://api.hubapi.com``, ``bearer`` auth
        with a private app's access token.
    :param object_type: ``contacts``, ``companies``, ``deals``, a custom object's type id…
    :param id_property: the unique property records are matched by (``email`` for contacts).
    """

    operations: frozenset[Op] = frozenset({"create", "update", "delete"})

    def __init__(self, config: HttpDestinationConfig, object_type: str = "contacts", id_property: str = "email",
                 batch_size: int = MAX_BATCH) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH}, not {batch_size}")
        if id_property == "hs_object_id":
            raise ValueError("id_property hs_object_id cannot be upserted by (HubSpot wants a unique property, e.g. email)")
        self.object_type = object_type
        self.id_property = id_property
        self.batch_size = batch_size
        self.object_name = f"hubspot/{object_type}"
        self._base = f"/crm/v3/objects/{object_type}/batch"
        self._http = HttpTransport(config, name=self.object_name,
                                   rate_limit=config.max_requests_per_second or DEFAULT_RATE,
                                   headers={"Content-Type": "application/json"})

    # -- addressing --------------------------------------------------------------------
    def _norm(self, value: Any) -> str:
        text = "" if value is None else str(value).strip()
        return text.lower() if self.id_property == "email" else text

    def _id_value(self, change: Change) -> str:
        value = change.fields.get(self.id_property)
        return str(value).strip() if value not in (None, "") else change.key

    def _address(self, change: Change) -> str:
        return self._norm(self._id_value(change))

    # -- send --------------------------------------------------------------------------
    def send(self, batch: Sequence[Change]) -> BatchResult:
        result = BatchResult()
        upserts = [c for c in batch if c.op != "delete"]
        deletes = [c for c in batch if c.op == "delete"]
        if upserts:
            kept, refused = reject_duplicates(upserts, self._address, self.id_property)
            result.rejected.extend(refused)
            if kept:
                self._upsert(kept, result)
        if deletes:
            self._delete(deletes, result)
        return result

    def _post(self, endpoint: str, body: dict[str, Any]) -> httpx.Response:
        response = self._http.request("POST", f"{self._base}/{endpoint}", json=body)
        if response.status_code == 429:
            raise_for_batch(response, name=self.object_name, secret=self._http.secrets, retry_after=self._rate_limit_wait(response))
        raise_for_batch(response, name=self.object_name, secret=self._http.secrets)
        if response.status_code == 404:
            raise DestinationError(f"{self.object_name}: POST {self._base}/{endpoint} answered HTTP 404 (is "
                                   f"{self.object_type!r} an object type of this portal?): {self._text(response)}")
        return response

    def _text(self, response: httpx.Response) -> str:
        return excerpt(response.text, self._http.secrets)

    def _rate_limit_wait(self, response: httpx.Response) -> float | None:
        headers = response.headers
        try:
            body = response.json()
        except ValueError:
            body = None
        policy = str(body.get("policyName", "")) if isinstance(body, dict) else ""
        if policy.upper() == "DAILY" or headers.get("X-HubSpot-RateLimit-Daily-Remaining") == "0":
            raise DestinationError(f"{self.object_name}: HubSpot's daily API limit is spent (it resets at midnight in "
                                   f"the portal's time zone): {self._text(response)}")
        if headers.get("X-HubSpot-RateLimit-Secondly-Remaining") == "0":
            return 1.0
        if headers.get("X-HubSpot-RateLimit-Remaining") == "0":
            try:
                return float(headers.get("X-HubSpot-RateLimit-Interval-Milliseconds", "10000")) / 1000.0
            except ValueError:
                return 10.0
        return None

    # -- create / update ---------------------------------------------------------------------
    def _upsert(self, changes: list[Change], result: BatchResult, *, whole_batch: bool = True) -> None:
        inputs = [
            {"idProperty": self.id_property, "id": self._id_value(c), "objectWriteTraceId": str(i),
             "properties": {k: ("" if v is None else v) for k, v in c.fields.items()}}
            for i, c in enumerate(changes)
        ]
        response = self._post("upsert", {"inputs": inputs})
        status = response.status_code
        if status in (200, 201):
            self._count_upserts(self._json(response).get("results") or [], len(changes), result)
            result.acknowledged.extend(c.key for c in changes)
        elif status == 207:
            self._multi_status(changes, self._json(response), result)
        elif status == 400 and whole_batch and (unknown := self._unknown_in_every_input(response, changes)):
            raise DestinationError(f"{self.object_name}: HubSpot has no {self.object_type} property "
                                   f"{', '.join(map(repr, unknown))}: create it in HubSpot or change the sync's field "
                                   f"mapping ({self._describe(response)})")
        elif status == 400 and len(changes) > 1:
            half = len(changes) // 2
            self._upsert(changes[:half], result, whole_batch=False)
            self._upsert(changes[half:], result, whole_batch=False)
        else:
            reason = f"HTTP {status}: {self._describe(response)}"
            result.rejected.extend(Rejection(c.key, reason) for c in changes)

    def _unknown_in_every_input(self, response: httpx.Response, changes: list[Change]) -> list[str]:
        """The properties a 400 says do not exist and that every input of the request has: a mapping error, which
        bisecting would only turn into 2n - 1 requests rejecting every record of every batch."""
        try:
            body = response.json()
        except ValueError:
            return []
        message = str(body.get("message") or "") if isinstance(body, dict) else ""
        _, found, listed = message.partition("Property values were not valid: ")
        try:
            details = json.loads(listed) if found else []
        except ValueError:
            return []
        if not isinstance(details, list):
            return []
        names = [str(d["name"]) for d in details
                 if isinstance(d, dict) and d.get("error") == "PROPERTY_DOESNT_EXIST" and d.get("name")]
        return [n for n in dict.fromkeys(names) if all(n in c.fields for c in changes)]

    def _describe(self, response: httpx.Response) -> str:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("message"):
            return excerpt(_error_reason(body), self._http.secrets)
        return self._text(response)

    @staticmethod
    def _count_upserts(results: list[Any], n: int, result: BatchResult) -> None:
        counted = 0
        for item in results:
            if not isinstance(item, dict):
                continue
            name = {True: "created", False: "updated"}.get(item.get("new"), "upserted")  # type: ignore[arg-type]
            result.counts[name] = result.counts.get(name, 0) + 1
            counted += 1
        if counted < n:
            result.counts["upserted"] = result.counts.get("upserted", 0) + n - counted

    def _named(self, error: dict[str, Any], by_trace: dict[str, Change], by_id: dict[str, Change]) -> list[Change]:
        context = error.get("context") if isinstance(error.get("context"), dict) else {}
        named: list[Change] = []
        for trace in context.get("objectWriteTraceId") or []:
            if str(trace) in by_trace:
                named.append(by_trace[str(trace)])
        for value in list(context.get("ids") or []) + ([error["id"]] if error.get("id") is not None else []):
            change = by_id.get(self._norm(value))
            if change is not None:
                named.append(change)
        return named

    def _multi_status(self, changes: list[Change], body: dict[str, Any], result: BatchResult) -> None:
        by_trace = {str(i): c for i, c in enumerate(changes)}
        by_id = {self._address(c): c for c in changes}
        reasons: dict[str, str] = {}
        unattributed: list[str] = []
        for error in body.get("errors") or []:
            if not isinstance(error, dict):
                continue
            named = self._named(error, by_trace, by_id)
            if not named:
                unattributed.append(_error_reason(error))
            for change in named:
                reasons.setdefault(change.key, _error_reason(error))
        confirmed: set[str] = set()
        results: list[tuple[dict[str, Any], Change | None]] = []
        for item in body.get("results") or []:
            if not isinstance(item, dict):
                continue
            change = by_trace.get(str(item.get("objectWriteTraceId")))
            if change is None:
                props = item.get("properties") if isinstance(item.get("properties"), dict) else {}
                change = by_id.get(self._norm(props.get(self.id_property)))
            if change is not None:
                confirmed.add(change.key)
            results.append((item, change))
        acknowledged: set[str] = set()
        for change in changes:
            if change.key in reasons:
                result.rejected.append(Rejection(change.key, excerpt(reasons[change.key], self._http.secrets)))
            elif change.key in confirmed or not unattributed:
                result.acknowledged.append(change.key)
                acknowledged.add(change.key)
            else:
                reason = "; ".join(unattributed) + " (the error names no record; this one was not confirmed)"
                result.rejected.append(Rejection(change.key, excerpt(reason, self._http.secrets)))
        # counts only for what is acknowledged (a result we cannot place counts while there is room)
        kept = [item for item, change in results if change is None or change.key in acknowledged]
        self._count_upserts(kept[:len(acknowledged)], len(acknowledged), result)

    # -- delete ------------------------------------------------------------------------------
    def _delete(self, changes: list[Change], result: BatchResult) -> None:
        addressed: dict[str, list[Change]] = {}
        for change in changes:
            address = self._address(change)
            if not address:
                result.rejected.append(Rejection(change.key, f"no {self.id_property} to address the record by"))
            else:
                addressed.setdefault(address, []).append(change)
        if not addressed:
            return
        values = {address: self._id_value(group[0]) for address, group in addressed.items()}
        response = self._post("read", {"idProperty": self.id_property, "properties": [self.id_property],
                                       "inputs": [{"id": v} for v in values.values()]})
        if response.status_code not in (200, 207):
            reason = f"HTTP {response.status_code} looking the records up: {self._describe(response)}"
            result.rejected.extend(Rejection(c.key, reason) for group in addressed.values() for c in group)
            return
        body = self._json(response)
        found: dict[str, str] = {}  # address -> HubSpot object id
        for item in body.get("results") or []:
            if isinstance(item, dict) and item.get("id") is not None:
                props = item.get("properties") if isinstance(item.get("properties"), dict) else {}
                address = self._norm(props.get(self.id_property))
                if address in addressed:
                    found[address] = str(item["id"])
        failed: dict[str, str] = {}
        unattributed: list[str] = []
        for error in body.get("errors") or []:
            if not isinstance(error, dict) or str(error.get("category")) == "OBJECT_NOT_FOUND":
                continue  # not there: nothing to delete
            context = error.get("context") if isinstance(error.get("context"), dict) else {}
            named = [self._norm(v) for v in context.get("ids") or [] if self._norm(v) in addressed]
            if not named:
                unattributed.append(_error_reason(error))
            for address in named:
                failed.setdefault(address, _error_reason(error))
        to_archive: list[str] = []
        for address, group in addressed.items():
            if address in failed or (unattributed and address not in found):
                reason = failed.get(address) or "; ".join(unattributed)
                result.rejected.extend(Rejection(c.key, excerpt(reason, self._http.secrets)) for c in group)
            elif address in found:
                to_archive.append(address)
            else:
                result.acknowledged.extend(c.key for c in group)
                result.counts["absent"] = result.counts.get("absent", 0) + len(group)
        if not to_archive:
            return
        response = self._post("archive", {"inputs": [{"id": found[a]} for a in to_archive]})
        keys = [c for a in to_archive for c in addressed[a]]
        if 200 <= response.status_code < 300:
            result.acknowledged.extend(c.key for c in keys)
            result.counts["archived"] = result.counts.get("archived", 0) + len(keys)
        else:
            reason = f"HTTP {response.status_code} archiving: {self._describe(response)}"
            result.rejected.extend(Rejection(c.key, reason) for c in keys)
