"""One reverse-ETL run: diff → batches → destination → each batch's outcome recorded (no Airflow imports).

:func:`run_sync` refuses a mode the destination cannot carry out before reading anything, streams
the changes (:func:`.diff.changes`) in batches of the destination's ``batch_size``, and records each
batch's acknowledgements and rejections as the destination answers (while the next batches are on their
way, and a thousand records or a second's worth of answers per transaction; in ``insert`` mode each
answer at once, before the next batch): a failure mid-sync records what was answered before it, and
the next run sends only what was not recorded. Rejected records are stored with the destination's
reason and sent again next run. After a complete run the
rejection thresholds are checked: past them :class:`RejectionThresholdExceeded` is raised (after
everything was recorded). The destination is closed when the run ends, however it ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from airflow_osds.exceptions import OsdsError
from airflow_osds.reverse_etl import diff
from airflow_osds.reverse_etl.delivery import RetryPolicy, deliver
from airflow_osds.reverse_etl.destinations.base import BatchResult, Change, Destination, Rejection
from airflow_osds.reverse_etl.spec import SyncSpec

__all__ = ["RejectionThresholdExceeded", "SyncReport", "UnsupportedModeError", "run_sync"]

#: About how many records may be on their way while earlier answers are recorded: a transaction recording a
#: thousand answers takes ~20 ms, in which one batch in flight (~2 ms to a local sink) left sending idle.
SEND_AHEAD_RECORDS = 2000

#: The reason stored for a record the destination's result left out (it is neither acknowledged nor rejected).
NO_RESULT = "the destination returned no result for this record"


class UnsupportedModeError(OsdsError):
    """The sync's mode needs operations the destination does not offer."""

    def __init__(self, sync_id: str, mode: str, destination: str, missing: Iterable[str]) -> None:
        self.sync_id = sync_id
        self.mode = mode
        self.destination = destination
        self.missing = sorted(missing)
        super().__init__(f"sync {sync_id!r}: mode {mode!r} needs {', '.join(self.missing)} but destination "
                         f"{destination!r} cannot do that; choose another mode or destination")


@dataclass
class SyncReport:
    """What one run did. ``created`` / ``updated`` / ``deleted`` count acknowledged records."""

    sync_id: str
    mode: str
    destination: str
    full_resync: bool = False
    created: int = 0
    updated: int = 0
    deleted: int = 0
    rejected: int = 0
    unchanged: int = 0  # not sent: same hash as delivered
    skipped_updates: int = 0  # not sent: changed, but an insert-only sync does not update
    skipped_deletes: int = 0  # not sent: gone from the source, but only mirror deletes
    batches: int = 0
    retries: int = 0  # sends of a batch again after a retryable failure
    seconds: float = 0.0
    diff_seconds: float = 0.0  # of which: the key check and the diff (the counts too without record_conn)
    stale_rejections_cleared: int = 0
    #: What the destination said it did, summed over batches (its ``BatchResult.counts``).
    destination_counts: dict[str, int] = field(default_factory=dict)
    #: The first rejections of the run (all of them are in the rejections table).
    rejection_examples: list[Rejection] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return self.created + self.updated + self.deleted + self.rejected

    @property
    def skipped(self) -> int:
        return self.skipped_updates + self.skipped_deletes

    def counts(self) -> dict[str, Any]:
        """The run's numbers (the Asset event's extra and the task's return value)."""
        return {"created": self.created, "updated": self.updated, "deleted": self.deleted, "rejected": self.rejected,
                "unchanged": self.unchanged, "skipped": self.skipped, "batches": self.batches,
                "retries": self.retries, "seconds": round(self.seconds, 3)}

    def summary(self) -> str:
        line = (f"sync {self.sync_id} ({self.mode} → {self.destination}{', full resync' if self.full_resync else ''}): "
                f"{self.created} created, {self.updated} updated, {self.deleted} deleted, {self.rejected} rejected, "
                f"{self.unchanged} unchanged")
        if self.skipped_updates:
            line += f", {self.skipped_updates} changed but not updated (insert mode)"
        if self.skipped_deletes:
            line += f", {self.skipped_deletes} gone from the source but not deleted ({self.mode} mode)"
        return line + (f"; {self.batches} batch{'es' if self.batches != 1 else ''} in {self.seconds:.1f} s "
                       f"(the diff {self.diff_seconds:.1f} s)")


class RejectionThresholdExceeded(OsdsError):
    """More records were rejected than the sync allows (everything was recorded before this was raised)."""

    def __init__(self, report: SyncReport, limit: str) -> None:
        self.report = report
        examples = "; ".join(f"{r.key!r}: {r.reason}" for r in report.rejection_examples[:5])
        super().__init__(f"sync {report.sync_id!r}: {report.rejected} of {report.sent} records rejected, "
                         f"more than {limit}. First: {examples}. They are stored in {diff.REJECTIONS_TABLE} "
                         "and sent again next run.")


def _check_thresholds(report: SyncReport, max_rejected: int | None, max_rejected_ratio: float | None) -> None:
    if max_rejected is not None and report.rejected > max_rejected:
        raise RejectionThresholdExceeded(report, f"max_rejected={max_rejected}")
    if max_rejected_ratio is not None and report.sent and report.rejected / report.sent > max_rejected_ratio:
        raise RejectionThresholdExceeded(report, f"max_rejected_ratio={max_rejected_ratio:g}")


class _Outcomes:
    """The destination's answers, recorded together once they hold ``RECORD_ROWS`` records or the oldest is
    ``RECORD_SECONDS`` old (checked as each answer arrives), and when the run ends however it ends.

    One transaction per batch of 100 costs ~2–5 ms: a first sync of 1M rows spent half its time recording.
    With ``record_conn`` (a second connection to the warehouse) each group is recorded on it in a
    background thread, one at a time and in order, while the main thread goes on matching answers to
    batches; the next group waits for the last one, so recording never falls more than one group behind.
    A crash (the process killed: an orderly failure records first) can then lose the last second or two of
    answers, whose records the next run sends again: harmless where a record sent twice is applied once.
    An ``insert`` sync records every answer at once, on ``conn``, before the next batch is sent.
    """

    RECORD_ROWS = 1000
    RECORD_SECONDS = 1.0

    def __init__(self, conn: Any, spec: SyncSpec, clock: Callable[[], float] = time.monotonic,
                 record_conn: Any | None = None) -> None:
        self.conn = conn
        self.spec = spec
        self.clock = clock
        self.insert_only = spec.mode == "insert"
        self.rows = 1 if self.insert_only else self.RECORD_ROWS
        self.acknowledged: list[diff.Pending] = []
        self.rejected: list[tuple[diff.Pending, str]] = []
        self.since = 0.0
        self.record_conn = None if self.insert_only else record_conn
        self.recorder = ThreadPoolExecutor(1, thread_name_prefix="osds-record") if self.record_conn is not None \
            else None
        self.recording: Future[None] | None = None
        self.failed = False  # a recording failed: the run is failing, what is left goes unrecorded

    def add(self, acknowledged: list[diff.Pending], rejected: list[tuple[diff.Pending, str]]) -> None:
        if not (self.acknowledged or self.rejected):
            self.since = self.clock()
        self.acknowledged += acknowledged
        self.rejected += rejected
        if len(self.acknowledged) + len(self.rejected) >= self.rows or self.clock() - self.since >= self.RECORD_SECONDS:
            self.flush()

    def flush(self) -> None:
        if (self.acknowledged or self.rejected) and not self.failed:
            acknowledged, rejected = self.acknowledged, self.rejected
            self.acknowledged, self.rejected = [], []
            if self.recorder is None:
                diff.record(self.conn, self.spec.sync_id, acknowledged, rejected, insert_only=self.insert_only)
                return
            self._wait()
            self.recording = self.recorder.submit(diff.record, self.record_conn, self.spec.sync_id, acknowledged,
                                                  rejected, insert_only=False)

    def _wait(self) -> None:
        """Wait for the group being recorded; its error, if it failed, is raised here."""
        if self.recording is not None:
            recording, self.recording = self.recording, None
            try:
                recording.result()
            except BaseException:
                self.failed = True
                raise

    def first(self, work: Callable[[], Any]) -> Future[Any]:
        """``work``'s result, done before anything is recorded: on the recorder thread, or here without one."""
        if self.recorder is not None:
            return self.recorder.submit(work)
        done: Future[Any] = Future()
        try:
            done.set_result(work())
        except Exception as exc:  # noqa: BLE001 - handed to the caller through the future, as the thread does
            done.set_exception(exc)
        return done

    def close(self) -> None:
        """Record what is left and wait until everything is recorded."""
        try:
            self.flush()
            self._wait()
        finally:
            if self.recorder is not None:
                self.recorder.shutdown(wait=True)


def run_sync(
    conn: Any,
    spec: SyncSpec,
    destination: Destination,
    *,
    full_resync: bool = False,
    max_rejected: int | None = None,
    max_rejected_ratio: float | None = None,
    retry: RetryPolicy = RetryPolicy(),
    say: Callable[[str], Any] = print,
    record_conn: Any | None = None,
) -> SyncReport:
    """Send what changed since the last run to ``destination`` and record what it acknowledged.

    :param conn: a psycopg 3 connection in autocommit mode, to the warehouse holding the source and the state.
    :param record_conn: a second such connection to the same database: the answers are recorded on it in a
        background thread while ``conn`` streams the changes (``None``: recorded on ``conn`` between batches;
        an ``insert`` sync always records on ``conn``). The caller closes it.
    :param full_resync: send every source row, changed or not (see :mod:`.diff`).
    :param max_rejected: raise when more records than this were rejected in the run (``None``: no limit).
    :param max_rejected_ratio: raise when rejected / sent exceeds this (``None``: no limit).
    :param retry: how often and how long a batch that failed as a whole (429, 5xx, timeout) is retried.
    :raises UnsupportedModeError: before reading anything.
    :raises diff.SourceKeyError: NULL or duplicated keys, before sending anything.
    :raises RejectionThresholdExceeded: after the run, everything recorded.
    :raises DestinationError: a batch failed as a whole; the batches before it are recorded.
    """
    started = time.monotonic()
    report = SyncReport(spec.sync_id, spec.mode, getattr(destination, "object_name", type(destination).__name__),
                        full_resync=full_resync)
    outcomes = _Outcomes(conn, spec, record_conn=record_conn)
    try:
        missing = spec.operations - frozenset(destination.operations)
        if missing:
            raise UnsupportedModeError(spec.sync_id, spec.mode, report.destination, missing)
        with diff.changes(conn, spec, batch_size=destination.batch_size, full_resync=full_resync,
                          count_conn=outcomes.record_conn) as stream:
            report.diff_seconds = time.monotonic() - started
            # The unchanged and gone rows are counted first thing on the recorder's connection (in the diff's
            # snapshot), while the first batches are on their way.
            counted = outcomes.first(lambda: stream.counts)
            try:
                sending = stream.sending
                say(f"sync {spec.sync_id} ({spec.mode} → {report.destination}): {sending['create']} to create, "
                    f"{sending['update']} to update, {sending['delete']} to delete; "
                    f"batches of {destination.batch_size}")
                if stream.rehashed:
                    say(f"sync {spec.sync_id}: {stream.rehashed} unchanged records had their delivered hash "
                        "rewritten to the current scheme (once, after upgrading airflow-osds; nothing is resent "
                        "for them)")
                outstanding: dict[str, diff.Pending] = {}

                def batches() -> Iterator[list[Change]]:
                    for pending in stream:
                        outstanding.update((p.change.key, p) for p in pending)
                        yield [p.change for p in pending]

                def on_result(batch: Sequence[Change], result: BatchResult) -> None:
                    _match_answer(spec, [outstanding.pop(c.key) for c in batch], result, report, outcomes, say)

                # Recording overlaps sending the next batches, except where a record sent twice would be stored
                # twice: a failure leaves those on their way unrecorded, and a killed process the answers not
                # recorded yet (see _Outcomes); the next run sends them again.
                ahead = 0 if spec.mode == "insert" else max(1, SEND_AHEAD_RECORDS // destination.batch_size)
                delivery = deliver(destination, batches(), on_result=on_result, retry=retry, say=say, ahead=ahead)
            finally:
                outcomes.close()  # what the destination answered is recorded, however delivery ended
            report.retries = delivery.retries
            counts = counted.result()
            report.unchanged = counts.not_sent_unchanged
            report.skipped_updates = counts.skipped_updates
            report.skipped_deletes = counts.skipped_deletes
        report.stale_rejections_cleared = diff.clear_stale_rejections(conn, spec.sync_id, stream.started_at)
        diff.vacuum_state(conn, spec.sync_id, delivered_before=counts.changed + counts.unchanged + counts.gone,
                          written=report.created + report.updated + report.deleted + stream.rehashed)
    finally:
        report.seconds = time.monotonic() - started
        outcomes.close()  # a no-op unless the run failed before delivering
        destination.close()
    say(report.summary())
    _check_thresholds(report, max_rejected, max_rejected_ratio)
    return report


def _match_answer(spec: SyncSpec, batch: list[diff.Pending], result: BatchResult, report: SyncReport,
                  outcomes: _Outcomes, say: Callable[[str], Any]) -> None:
    """Match the result to the batch and hand it to ``outcomes``. A key the result leaves out is rejected (never
    dropped); one it both acknowledges and rejects counts as rejected; keys not in the batch are reported and
    ignored."""
    keys = {p.change.key for p in batch}
    reasons: dict[str, str] = {}
    for rejection in result.rejected:
        if rejection.key in keys:
            reasons.setdefault(rejection.key, rejection.reason)
    acked_keys = set(result.acknowledged) & keys
    strangers = (set(result.acknowledged) | {r.key for r in result.rejected}) - keys
    if strangers:
        say(f"sync {spec.sync_id}: the destination answered for {len(strangers)} key(s) it was not sent "
            f"(ignored), e.g. {sorted(strangers)[:3]}")
    acknowledged: list[diff.Pending] = []
    rejected: list[tuple[diff.Pending, str]] = []
    for p in batch:
        key = p.change.key
        if key in reasons:
            rejected.append((p, reasons[key]))
        elif key in acked_keys:
            acknowledged.append(p)
        else:
            rejected.append((p, NO_RESULT))
    outcomes.add(acknowledged, rejected)
    report.batches += 1
    for p in acknowledged:
        if p.change.op == "create":
            report.created += 1
        elif p.change.op == "update":
            report.updated += 1
        else:
            report.deleted += 1
    report.rejected += len(rejected)
    room = 10 - len(report.rejection_examples)
    report.rejection_examples.extend(Rejection(p.change.key, reason) for p, reason in rejected[:max(room, 0)])
    for name, n in (result.counts or {}).items():
        report.destination_counts[name] = report.destination_counts.get(name, 0) + n

