"""A generic JSON batch endpoint or webhook (no Airflow imports).

Each batch is one request (``POST`` by default) to ``path`` under the connection's base URL with the body
``{"records": [{"key", "op", "fields", "groups"}, …]}``, or ``body_template`` with ``"$records"``
replaced by that list and ``"$op"`` by the batch's operation. A template that names ``$op`` gets one
request per operation when a batch mixes them.

The reply, per request:

* 2xx: every record acknowledged;
* 429, 408, 5xx, a timeout, a refused or dropped connection: :class:`RetryableError` (``Retry-After`` honoured);
* 401 / 403: :class:`DestinationError` (the credentials; the secret is never in the message);
* 404 / 405 and 3xx: :class:`DestinationError` (the URL or method is wrong: no record is to blame);
* any other 4xx: every record of the request rejected with the status and the reply's text (truncated).

Every request carries ``Idempotency-Key``: the sha256 of the object name and, per record, its key, operation
and a hash of its fields and groups. It is the same on a retry and on a later run that sends the same batch,
so an endpoint that stores what it receives can drop a batch it already has (the connection dropped after it
stored the batch, before the reply arrived). A batch sent as one request per operation is retried whole when a later
request fails: the parts already delivered go again with their same keys.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from airflow_osds.reverse_etl.destinations._http import (
    HttpBacked,
    HttpDestinationConfig,
    HttpTransport,
    canonical_json,
    excerpt,
    fields_digest,
    raise_for_batch,
    scrub,
)
from airflow_osds.reverse_etl.destinations.base import BatchResult, Change, DestinationError, Op, Rejection

__all__ = ["HttpDestination", "HttpDestinationConfig", "idempotency_key"]

# Not Jinja's braces: Airflow renders the destination's settings before the sync sees them.
RECORDS = "$records"
OP = "$op"
_PAST = {"create": "created", "update": "updated", "delete": "deleted"}


def idempotency_key(object_name: str, batch: Sequence[Change]) -> str:
    """The batch's ``Idempotency-Key``: stable across retries and runs for the same records, ops and payloads."""
    parts = [object_name, [[c.key, c.op, fields_digest(c)] for c in batch]]
    return hashlib.sha256(canonical_json(parts).encode()).hexdigest()


def _mentions(template: Any, marker: str) -> bool:
    if isinstance(template, str):
        return marker in template
    if isinstance(template, dict):
        return any(_mentions(k, marker) or _mentions(v, marker) for k, v in template.items())
    if isinstance(template, (list, tuple)):
        return any(_mentions(v, marker) for v in template)
    return False


def _render(template: Any, records: list[dict[str, Any]], op: str | None) -> Any:
    if isinstance(template, str):
        if template == RECORDS:
            return records
        if op is not None and OP in template:
            return template.replace(OP, op)
        return template
    if isinstance(template, dict):
        return {_render(k, records, op): _render(v, records, op) for k, v in template.items()}
    if isinstance(template, (list, tuple)):
        return [_render(v, records, op) for v in template]
    return template


class HttpDestination(HttpBacked):
    """A JSON endpoint taking a batch of records per request (see the module docstring).

    :param config: the ``reverse_etl_http`` connection (base URL, auth, timeout, rate limit, TLS).
    :param path: the endpoint under the base URL, e.g. ``/hooks/customers``.
    :param body_template: a JSON-able envelope; the string ``"$records"`` (a whole value) becomes the
        records, ``"$op"`` (in any string) the batch's operation.
    :param object_name: what the sync's outputs call it, e.g. ``crm-webhook/customers``.
    """

    operations: frozenset[Op] = frozenset({"create", "update", "delete"})

    def __init__(
        self,
        config: HttpDestinationConfig,
        path: str,
        *,
        method: str = "POST",
        batch_size: int = 100,
        body_template: Any = None,
        object_name: str,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        if body_template is not None and not _mentions(body_template, RECORDS):
            raise ValueError(f"body_template must contain the value {RECORDS!r} somewhere (where the records go)")
        self.object_name = object_name
        self.batch_size = batch_size
        self.path = path
        self.method = method.upper()
        self.body_template = body_template
        self._split_by_op = body_template is not None and _mentions(body_template, OP)
        self._http = HttpTransport(config, name=object_name, rate_limit=config.max_requests_per_second)

    def body(self, batch: Sequence[Change]) -> Any:
        records = [{"key": c.key, "op": c.op, "fields": dict(c.fields), "groups": list(c.groups)} for c in batch]
        if self.body_template is None:
            return {"records": records}
        ops = {c.op for c in batch}
        return _render(self.body_template, records, ops.pop() if len(ops) == 1 else None)

    def send(self, batch: Sequence[Change]) -> BatchResult:
        result = BatchResult()
        if self._split_by_op:
            parts = [[c for c in batch if c.op == op] for op in ("create", "update", "delete")]
        else:
            parts = [list(batch)]
        for part in parts:
            if part:
                self._send_part(part, result)
        return result

    def _send_part(self, part: list[Change], result: BatchResult) -> None:
        response = self._http.request(
            self.method, self.path, json=self.body(part), headers={"Idempotency-Key": idempotency_key(self.object_name, part)}
        )
        raise_for_batch(response, name=self.object_name, secret=self._http.secrets)
        status = response.status_code
        if 200 <= status < 300:
            result.acknowledged.extend(c.key for c in part)
            for c in part:
                result.counts[_PAST[c.op]] = result.counts.get(_PAST[c.op], 0) + 1
            return
        text = excerpt(response.text, self._http.secrets)
        if status in (404, 405) or 300 <= status < 400 or status < 200:
            raise DestinationError(scrub(f"{self.object_name}: {self.method} {self.path} answered HTTP {status} "
                                         f"(check the URL and method): {text}", self._http.secrets))
        reason = f"HTTP {status}: {text}"
        result.rejected.extend(Rejection(c.key, reason) for c in part)
