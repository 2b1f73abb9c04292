"""The one interface every reverse-ETL destination implements (no Airflow imports).

A destination receives batches of :class:`Change` (at most its ``batch_size``) and says, per record,
what happened: acknowledged (it holds the record now: the sync marks it delivered) or rejected (a
per-record 4xx or an error inside a 200/207 body: stored with the reason, retried next run). A
failure of the whole batch that a retry may cure (429, 5xx, a timeout, a dropped connection) is
raised as :class:`RetryableError` (with the server's ``Retry-After`` when it gave one); one that no
retry cures (bad credentials, a missing list, a 400 for the whole request) as :class:`DestinationError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from airflow_osds.exceptions import OsdsError

__all__ = ["BatchResult", "Change", "Destination", "DestinationError", "Op", "Rejection", "RetryableError"]

Op = Literal["create", "update", "delete"]


@dataclass(frozen=True)
class Change:
    """One record to send: its key (the source's unique key, as text), what to do, and its mapped fields.

    ``fields`` is the record as mapped (destination field name → JSON value); for a delete it is the
    last payload delivered, so the destination can still address the record.
    """

    key: str
    op: Op
    fields: Mapping[str, Any]
    groups: tuple[str, ...] = ()  # the named groups (lists / tags) the record belongs to


@dataclass(frozen=True)
class Rejection:
    key: str
    reason: str  # the destination's own message (no credentials in it)


@dataclass
class BatchResult:
    """What the destination did with one batch: every key of the batch is in exactly one of the lists."""

    acknowledged: list[str] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    # Counts by what the destination reports it did, e.g. {"created": 3, "updated": 5} (for the summary).
    counts: dict[str, int] = field(default_factory=dict)


class DestinationError(OsdsError):
    """The whole batch failed and retrying will not help (auth, configuration, a request the API refuses)."""


class RetryableError(DestinationError):
    """The whole batch failed and a later retry may succeed (429, 5xx, timeout, dropped connection)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@runtime_checkable
class Destination(Protocol):
    """An operational tool that receives records."""

    #: What the sync's outputs call it (``destination:<conn>/<object>``), e.g. ``hubspot/contacts``.
    object_name: str
    #: Records per request (the API's documented limit, or lower).
    batch_size: int
    #: Requests per second the destination allows (0: no limit).
    rate_limit: float
    #: The operations it can carry out (a mode needing another one is refused before sending).
    operations: frozenset[Op]

    def send(self, batch: Sequence[Change]) -> BatchResult:
        """Deliver one batch (all changes share nothing but the destination).

        :raises RetryableError: the whole batch failed; a retry may succeed.
        :raises DestinationError: the whole batch failed for good.
        """
        ...

    def close(self) -> None:
        """Release connections (called once per sync)."""
        ...
