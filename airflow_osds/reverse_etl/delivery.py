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
* ``on_result(batch, result)`` is called with each batch the destination answered, in order: the caller
  records the acknowledged keys and the rejections then, so a failure later loses nothing that was
  delivered. With ``ahead=0`` the next batch is sent only after that returned. ``ahead=n`` overlaps the
  two: up to n later batches are read and sent (in one worker thread, in order, spaced by the rate limit,
  each retried before the next is sent) while ``on_result`` records an earlier answer, so sending does not
  stop while the caller writes to its database. Once a batch fails for good, nothing after it is sent.
  What a failure can add is the batches that were on their way and are not recorded (up to n, named in
  the log), so the next run sends them again. That is harmless where a record sent twice is applied once
  (upserts, updates, deletes), and why an insert-only sync sends with ``ahead=0``. Matching the result to
  the batch (a key left out, a stranger) is the caller's job
  (:func:`airflow_osds.reverse_etl.sync.run_sync` rejects what a result leaves out).
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
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


class _Stopped(Exception):
    """A queued batch that was not sent because the run had already failed."""


class _Sender:
    """Sends batches in order, each retried per the policy and spaced by the rate limit: in the calling thread,
    or queued to one worker thread. Once a batch fails for good (or :meth:`stop` is called), the batches queued
    after it are not sent."""

    def __init__(self, destination: Destination, retry: RetryPolicy, pool: ThreadPoolExecutor | None,
                 report: DeliveryReport, say: Callable[[str], object], sleep: Callable[[float], None],
                 clock: Callable[[], float]) -> None:
        self.destination = destination
        self.retry = retry
        self.pool = pool
        self.report = report
        self.say = say
        self.sleep = sleep
        self.clock = clock
        self.last_send: float | None = None
        self.stopped = threading.Event()

    def start(self, index: int, batch: Sequence[Change]) -> _InFlight:
        sent = _InFlight(index, batch)
        if self.pool is not None:
            sent.future = self.pool.submit(self._send, sent)
            return sent
        sent.future = Future()
        try:
            sent.future.set_result(self._send(sent))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller through the future, as the pool does
            sent.future.set_exception(exc)
        return sent

    def stop(self) -> None:
        self.stopped.set()

    def _send(self, sent: _InFlight) -> BatchResult:
        name = self.destination.object_name
        attempt = 1
        try:
            while True:
                if self.stopped.is_set():
                    raise _Stopped
                rate = float(self.destination.rate_limit or 0)
                if rate > 0 and self.last_send is not None:
                    wait = self.last_send + 1.0 / rate - self.clock()
                    if wait > 0:
                        self.sleep(wait)
                self.last_send = self.clock()
                self.report.attempts += 1
                sent.left = True
                try:
                    result = self.destination.send(sent.batch)
                except RetryableError as exc:
                    if attempt >= self.retry.max_attempts:
                        raise RetriesExhausted(
                            f"{name}: batch {sent.index} ({len(sent.batch)} records) failed {attempt} times, "
                            f"giving up: {exc}",
                            attempts=attempt, last=exc, batch_index=sent.index,
                        ) from exc
                    # Waited out here, in the sending thread, so the batches queued behind it wait too.
                    delay, remark = self.retry.delay(attempt, exc.retry_after)
                    if remark:
                        self.say(f"{name}: {remark}")
                    self.report.retries += 1
                    self.report.delays.append(delay)
                    self.say(f"{name}: batch {sent.index} ({len(sent.batch)} records), attempt {attempt}/"
                             f"{self.retry.max_attempts} failed: {exc}; retrying in {delay:.1f} s")
                    self.sleep(delay)
                    attempt += 1
                    continue
                self.report.batches += 1
                return result
        except BaseException:
            self.stopped.set()
            raise


@dataclass
class _InFlight:
    index: int
    batch: Sequence[Change]
    future: Future[BatchResult] = field(init=False)
    left: bool = False  # the batch was sent at least once


def deliver(
    destination: Destination,
    batches: Iterable[Sequence[Change]],
    *,
    on_result: Callable[[Sequence[Change], BatchResult], None],
    retry: RetryPolicy = RetryPolicy(),
    say: Callable[[str], object] = lambda line: None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    ahead: int = 0,
) -> DeliveryReport:
    """Send every batch to ``destination`` (see the module docstring); returns what was done.

    :param on_result: called with each batch and its result, in order, once the destination answered it.
    :param sleep: how to wait (tests pass a recorder); ``clock`` is the monotonic clock the rate limit uses.
    :param ahead: how many later batches may be read and sent (in one worker thread) while ``on_result``
        handles an answer; 0 sends each batch only after the last answer was handled.
    :raises RetriesExhausted: a batch failed ``retry.max_attempts`` times with a :class:`RetryableError`.
    :raises DestinationError: a batch failed for good; the batches before it were reported through ``on_result``.
    """
    if ahead < 0:
        raise ValueError(f"ahead must be 0 or more, not {ahead}")
    name = destination.object_name
    report = DeliveryReport()
    in_flight: deque[_InFlight] = deque()
    with ThreadPoolExecutor(1, thread_name_prefix="osds-send") if ahead else nullcontext() as pool:
        sender = _Sender(destination, retry, pool, report, say, sleep, clock)
        try:
            for index, batch in enumerate(batches):
                if not batch:
                    continue
                if len(batch) > destination.batch_size:
                    raise DestinationError(f"{name}: batch {index} has {len(batch)} records, more than the "
                                           f"destination takes ({destination.batch_size})")
                in_flight.append(sender.start(index, batch))
                while len(in_flight) > ahead:
                    _answer(in_flight, on_result)
            while in_flight:
                _answer(in_flight, on_result)
        except BaseException:
            sender.stop()
            for sent in in_flight:
                sent.future.cancel()
            if pool is not None:
                pool.shutdown(wait=True)
            # The run fails anyway: what was sent and not recorded is sent again by the next run.
            unrecorded = [sent for sent in in_flight if sent.left and not sent.future.cancelled()
                          and sent.future.exception() is None]
            if unrecorded:
                say(_unrecorded_message(name, unrecorded))
            raise
    return report


def _answer(in_flight: deque[_InFlight], on_result: Callable[[Sequence[Change], BatchResult], None]) -> None:
    sent = in_flight[0]
    result = sent.future.result()
    in_flight.popleft()
    on_result(sent.batch, result)


def _unrecorded_message(name: str, unrecorded: Sequence[_InFlight]) -> str:
    records = sum(len(sent.batch) for sent in unrecorded)
    if len(unrecorded) == 1:
        return (f"{name}: batch {unrecorded[0].index} ({records} records) was on its way when the run failed; "
                "its answer is not recorded, so the next run sends it again")
    return (f"{name}: batches {', '.join(str(sent.index) for sent in unrecorded)} ({records} records) were on their "
            "way when the run failed; their answers are not recorded, so the next run sends them again")
