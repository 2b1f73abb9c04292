"""Send batches of changes to a destination: retries with backoff, the destination's rate limit, one ack per batch
(no Airflow imports).

:func:`deliver` sends each batch with :meth:`Destination.send`:

* a :class:`RetryableError` (429, 5xx, timeout, dropped connection) is retried after an exponential backoff
  (``base_delay * 2**(n-1)``, capped at ``max_delay``, with jitter), or after the server's ``Retry-After``
  when it gave one; a ``Retry-After`` beyond ``max_delay`` is still honoured, up to ``max_retry_after``,
  and said. After ``max_attempts`` sends of one batch it raises :class:`RetriesExhausted` (a
  :class:`RetryableError`: a later task retry may succeed) naming the attempts;
* a :class:`DestinationError` propagates at once (no retry cures it);
* sends are at least ``1 / destination.rate_limit`` seconds apart (``rate_limit`` 0: no spacing);
* ``on_result(batch, result)`` is called after *each* batch the destination answered, before the next one
  is sent: the caller records the acknowledged keys and the rejections then, so a failure later loses
  nothing that was delivered.

A result that does not account for every key of its batch exactly once is a bug in the destination: it is
raised as a :class:`DestinationError` before ``on_result`` sees it (a wrong ack would mark a record
delivered that was not).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from airflow_osds.reverse_etl.destinations.base import (
    BatchResult,
    Change,
    Destination,
    DestinationError,
    RetryableError,
)

__all__ = ["DeliveryReport", "RetriesExhausted", "deliver"]


class RetriesExhausted(RetryableError):
    """One batch still failed with a :class:`RetryableError` after ``attempts`` sends (``last`` is the final error)."""

    def __init__(self, message: str, *, attempts: int, last: RetryableError, batch_index: int) -> None:
        super().__init__(message, retry_after=last.retry_after)
        self.attempts = attempts
        self.last = last
        self.batch_index = batch_index


@dataclass
class DeliveryReport:
    """What :func:`deliver` did (also complete for the batches sent before an error, via ``on_result``)."""

    batches: int = 0  # batches the destination answered
    attempts: int = 0  # sends, retries included
    retries: int = 0
    acknowledged: int = 0
    rejected: int = 0
    counts: dict[str, int] = field(default_factory=dict)  # the destinations' counts, summed
    delays: list[float] = field(default_factory=list)  # the waits before each retry, in seconds

    def merge(self, result: BatchResult) -> None:
        self.batches += 1
        self.acknowledged += len(result.acknowledged)
        self.rejected += len(result.rejected)
        for name, n in result.counts.items():
            self.counts[name] = self.counts.get(name, 0) + n


def _check_result(batch: Sequence[Change], result: BatchResult, object_name: str) -> None:
    keys = [c.key for c in batch]
    answered = list(result.acknowledged) + [r.key for r in result.rejected]
    if len(answered) != len(set(answered)) or set(answered) != set(keys):
        missing = sorted(set(keys) - set(answered))[:5]
        extra = sorted(set(answered) - set(keys))[:5]
        dupes = sorted({k for k in answered if answered.count(k) > 1})[:5]
        raise DestinationError(
            f"{object_name}: the destination's result does not account for each key of the batch exactly once "
            f"(missing {missing}, not in the batch {extra}, twice {dupes}): a bug in the destination"
        )


def deliver(
    destination: Destination,
    batches: Iterable[Sequence[Change]],
    *,
    on_result: Callable[[Sequence[Change], BatchResult], None],
    max_attempts: int = 6,
    base_delay: float = 1.0,
    max_delay: float = 60.0,
    max_retry_after: float = 300.0,
    jitter: bool = True,
    say: Callable[[str], None] = lambda line: None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> DeliveryReport:
    """Send every batch to ``destination`` (see the module docstring); returns what was done.

    :param on_result: called with each batch and its result as soon as the destination answered it.
    :param max_attempts: sends of one batch before giving up (1: no retry).
    :param sleep: how to wait (tests pass a recorder); ``clock`` is the monotonic clock the rate limit uses.
    :raises RetriesExhausted: a batch failed ``max_attempts`` times with a :class:`RetryableError`.
    :raises DestinationError: a batch failed for good; the batches before it were reported through ``on_result``.
    """
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, not {max_attempts}")
    name = destination.object_name
    report = DeliveryReport()
    last_send: float | None = None

    for index, batch in enumerate(batches):
        if not batch:
            continue
        if len(batch) > destination.batch_size:
            raise DestinationError(
                f"{name}: batch {index} has {len(batch)} records, more than the destination takes ({destination.batch_size})"
            )
        attempt = 0
        while True:
            attempt += 1
            rate = float(destination.rate_limit or 0)
            if rate > 0 and last_send is not None:
                wait = last_send + 1.0 / rate - clock()
                if wait > 0:
                    sleep(wait)
            last_send = clock()
            report.attempts += 1
            try:
                result = destination.send(batch)
            except RetryableError as exc:
                if attempt >= max_attempts:
                    raise RetriesExhausted(
                        f"{name}: batch {index} ({len(batch)} records) failed {attempt} times, giving up: {exc}",
                        attempts=attempt, last=exc, batch_index=index,
                    ) from exc
                delay = _delay(exc.retry_after, attempt, base_delay, max_delay, max_retry_after, jitter, say, name)
                report.retries += 1
                report.delays.append(delay)
                say(f"{name}: batch {index} ({len(batch)} records), attempt {attempt}/{max_attempts} failed: {exc}; "
                    f"retrying in {delay:.1f} s")
                sleep(delay)
                continue
            _check_result(batch, result, name)
            report.merge(result)
            on_result(batch, result)
            break
    return report


def _delay(retry_after: float | None, attempt: int, base: float, cap: float, max_retry_after: float, jitter: bool,
           say: Callable[[str], None], name: str) -> float:
    if retry_after is not None and retry_after >= 0:
        if retry_after > max_retry_after:
            say(f"{name}: the server asks to wait {retry_after:.0f} s (Retry-After); waiting {max_retry_after:.0f} s, the most allowed")
            return max_retry_after
        if retry_after > cap:
            say(f"{name}: the server asks to wait {retry_after:.0f} s (Retry-After), more than the {cap:.0f} s backoff cap: honouring it")
        return float(retry_after)
    delay = min(cap, base * 2 ** (attempt - 1))
    if jitter:  # "equal jitter": between half the delay and the delay, so parallel syncs spread out
        delay = delay / 2 + random.random() * delay / 2
    return delay
