"""Send batches of changes to a destination: retries with backoff, the destination's rate limit, one answer
per batch (no Airflow imports).

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
  nothing that was delivered. ``pipelined=True`` overlaps the two: the next batch is read and sent (in one
  worker thread: one batch in flight at a time, in order, still spaced by the rate limit) while
  ``on_result`` records the last answer: batch n's answer is recorded while batch n+1 is on its way, and
  before batch n+2 is sent. What a failure can add is one batch that was on its way and is not recorded, so
  the next run sends it again. That is harmless where a record sent twice is applied once (upserts,
  updates, deletes), and why an insert-only sync does not pipeline. Matching the result to the batch (a key left out, a stranger) is the
  caller's job (:func:`airflow_osds.reverse_etl.sync.run_sync` rejects what a result leaves out).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field

from airflow_osds.reverse_etl.destinations.base import (
    BatchResult,
    Change,
    Destination,
    DestinationError,
    RetryableError,
)

__all__ = ["DeliveryReport", "RetriesExhausted", "RetryPolicy", "deliver"]


class RetriesExhausted(RetryableError):
    """One batch still failed with a :class:`RetryableError` after ``attempts`` sends (``last`` is the final error)."""

    def __init__(self, message: str, *, attempts: int, last: RetryableError, batch_index: int) -> None:
        super().__init__(message, retry_after=last.retry_after)
        self.attempts = attempts
        self.last = last
        self.batch_index = batch_index


@dataclass(frozen=True)
class RetryPolicy:
    """How a batch that failed as a whole with a :class:`RetryableError` is retried.

    :param max_attempts: sends of one batch before giving up (1: no retry).
    :param base_delay: the first backoff, doubled at each further attempt, capped at ``max_delay``.
    :param max_retry_after: the longest ``Retry-After`` honoured (a longer one is cut to it, and said).
    :param jitter: spread the backoff between half and all of it, so parallel syncs do not retry in step.
    """

    max_attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 60.0
    max_retry_after: float = 300.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {self.max_attempts}")
        if self.base_delay < 0 or self.max_delay < 0 or self.max_retry_after < 0:
            raise ValueError("retry delays cannot be negative")

    def delay(self, attempt: int, retry_after: float | None) -> tuple[float, str | None]:
        """The wait before sending again after failed attempt ``attempt`` (from 1), and a remark to log."""
        if retry_after is not None and retry_after >= 0:
            if retry_after > self.max_retry_after:
                return self.max_retry_after, (f"the server asks to wait {retry_after:.0f} s (Retry-After); waiting "
                                              f"{self.max_retry_after:.0f} s, the most allowed")
            if retry_after > self.max_delay:
                return float(retry_after), (f"the server asks to wait {retry_after:.0f} s (Retry-After), more than "
                                            f"the {self.max_delay:.0f} s backoff cap: honouring it")
            return float(retry_after), None
        delay = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        if self.jitter:
            delay = delay / 2 + random.random() * delay / 2
        return delay, None


@dataclass
class DeliveryReport:
    """What :func:`deliver` did."""

    batches: int = 0  # batches the destination answered
    attempts: int = 0  # sends, retries included
    retries: int = 0
    delays: list[float] = field(default_factory=list)  # the waits before each retry, in seconds


class _Sender:
    """Sends one batch at a time, in the calling thread or in one worker thread, spaced by the rate limit."""

    def __init__(self, destination: Destination, pool: ThreadPoolExecutor | None, report: DeliveryReport,
                 sleep: Callable[[float], None], clock: Callable[[], float]) -> None:
        self.destination = destination
        self.pool = pool
        self.report = report
        self.sleep = sleep
        self.clock = clock
        self.last_send: float | None = None

    def start(self, batch: Sequence[Change]) -> Future[BatchResult]:
        rate = float(self.destination.rate_limit or 0)
        if rate > 0 and self.last_send is not None:
            wait = self.last_send + 1.0 / rate - self.clock()
            if wait > 0:
                self.sleep(wait)
        self.last_send = self.clock()
        self.report.attempts += 1
        if self.pool is not None:
            return self.pool.submit(self.destination.send, batch)
        future: Future[BatchResult] = Future()
        try:
            future.set_result(self.destination.send(batch))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller through the future, as the pool does
            future.set_exception(exc)
        return future


@dataclass
class _InFlight:
    index: int
    batch: Sequence[Change]
    future: Future[BatchResult]


def deliver(
    destination: Destination,
    batches: Iterable[Sequence[Change]],
    *,
    on_result: Callable[[Sequence[Change], BatchResult], None],
    retry: RetryPolicy = RetryPolicy(),
    say: Callable[[str], object] = lambda line: None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    pipelined: bool = False,
) -> DeliveryReport:
    """Send every batch to ``destination`` (see the module docstring); returns what was done.

    :param on_result: called with each batch and its result as soon as the destination answered it.
    :param sleep: how to wait (tests pass a recorder); ``clock`` is the monotonic clock the rate limit uses.
    :param pipelined: send the next batch (in a worker thread) while ``on_result`` handles the last answer
        and the next batch is read from ``batches``.
    :raises RetriesExhausted: a batch failed ``retry.max_attempts`` times with a :class:`RetryableError`.
    :raises DestinationError: a batch failed for good; the batches before it were reported through ``on_result``.
    """
    name = destination.object_name
    report = DeliveryReport()

    def answer(sent: _InFlight) -> BatchResult:
        attempt = 1
        while True:
            try:
                result = sent.future.result()
            except RetryableError as exc:
                if attempt >= retry.max_attempts:
                    raise RetriesExhausted(
                        f"{name}: batch {sent.index} ({len(sent.batch)} records) failed {attempt} times, "
                        f"giving up: {exc}",
                        attempts=attempt, last=exc, batch_index=sent.index,
                    ) from exc
                delay, remark = retry.delay(attempt, exc.retry_after)
                if remark:
                    say(f"{name}: {remark}")
                report.retries += 1
                report.delays.append(delay)
                say(f"{name}: batch {sent.index} ({len(sent.batch)} records), attempt {attempt}/{retry.max_attempts} "
                    f"failed: {exc}; retrying in {delay:.1f} s")
                sleep(delay)
                attempt += 1
                sent.future = sender.start(sent.batch)
                continue
            report.batches += 1
            return result

    with ThreadPoolExecutor(1, thread_name_prefix="osds-send") if pipelined else nullcontext() as pool:
        sender = _Sender(destination, pool, report, sleep, clock)
        in_flight: _InFlight | None = None
        try:
            for index, batch in enumerate(batches):
                if not batch:
                    continue
                if len(batch) > destination.batch_size:
                    raise DestinationError(f"{name}: batch {index} has {len(batch)} records, more than the "
                                           f"destination takes ({destination.batch_size})")
                if not pipelined:
                    on_result(batch, answer(_InFlight(index, batch, sender.start(batch))))
                    continue
                previous, in_flight = in_flight, None
                if previous is None:
                    in_flight = _InFlight(index, batch, sender.start(batch))
                    continue
                result = answer(previous)
                in_flight = _InFlight(index, batch, sender.start(batch))
                on_result(previous.batch, result)  # while this batch is on its way
            if in_flight:
                last, in_flight = in_flight, None
                on_result(last.batch, answer(last))
        except BaseException:
            if in_flight is not None:
                # The run fails anyway: the batch on its way is not recorded, so the next run sends it again.
                say(f"{name}: batch {in_flight.index} ({len(in_flight.batch)} records) was on its way when the run "
                    "failed; its answer is not recorded, so the next run sends it again")
            raise
    return report
