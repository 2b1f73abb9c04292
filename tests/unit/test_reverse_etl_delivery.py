"""``reverse_etl.delivery.deliver``: retries, Retry-After, backoff, rate limit and one answer per batch.

The destination is a scripted object (the real HTTP destinations and their fault servers are tested in
tests/integration/reverse_etl/); waits go to a recorder instead of ``time.sleep`` so the retry schedule
itself is what is asserted, without waiting it out.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from airflow_osds.reverse_etl.delivery import RetriesExhausted, RetryPolicy, deliver
from airflow_osds.reverse_etl.destinations.base import BatchResult, Change, DestinationError, RetryableError


class Scripted:
    """Answers each send with the next scripted outcome: an exception to raise, or None to acknowledge all."""

    object_name = "scripted/records"
    operations = frozenset({"create", "update", "delete"})

    def __init__(self, outcomes: Sequence[BaseException | None], *, batch_size: int = 2, rate_limit: float = 0) -> None:
        self.outcomes = list(outcomes)
        self.batch_size = batch_size
        self.rate_limit = rate_limit
        self.sent: list[list[str]] = []

    def send(self, batch: Sequence[Change]) -> BatchResult:
        self.sent.append([c.key for c in batch])
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome is not None:
            raise outcome
        return BatchResult(acknowledged=[c.key for c in batch])

    def close(self) -> None:
        pass


def changes(*keys: str) -> list[Change]:
    return [Change(k, "create", {"k": k}) for k in keys]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.waits: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.waits.append(round(seconds, 3))
        self.now += seconds

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=[0, 1, 3], ids=["in-turn", "one-ahead", "three-ahead"])
def ahead(request: pytest.FixtureRequest) -> int:
    """Every schedule below holds whether the next batches are sent after or while the last answer is handled."""
    return int(request.param)


def run(dest: Scripted, batches: list[list[Change]], retry: RetryPolicy, clock: Clock | None = None, *,
        ahead: int = 0) -> tuple[list, list]:
    clock = clock or Clock()
    answered: list[list[str]] = []
    lines: list[str] = []
    deliver(dest, batches, on_result=lambda b, r: answered.append(list(r.acknowledged)), retry=retry,
            say=lines.append, sleep=clock.sleep, clock=clock, ahead=ahead)
    return answered, lines


def test_retry_after_is_honoured_and_backoff_doubles_without_it(ahead: int) -> None:
    dest = Scripted([RetryableError("429", retry_after=7), RetryableError("500"), RetryableError("500"), None])
    clock = Clock()
    answered, lines = run(dest, [changes("a", "b")], RetryPolicy(base_delay=1, max_delay=60, jitter=False), clock,
                          ahead=ahead)
    assert clock.waits == [7, 2, 4]  # Retry-After, then base * 2**(n-1) for attempts 2 and 3
    assert answered == [["a", "b"]] and dest.sent == [["a", "b"]] * 4
    assert "attempt 1/6 failed: 429; retrying in 7.0 s" in lines[0]


def test_a_retry_after_beyond_the_cap_is_honoured_up_to_max_retry_after() -> None:
    dest = Scripted([RetryableError("429", retry_after=90), RetryableError("429", retry_after=10_000), None])
    clock = Clock()
    _, lines = run(dest, [changes("a")], RetryPolicy(max_delay=60, max_retry_after=300, jitter=False), clock)
    assert clock.waits == [90, 300]
    assert any("more than the 60 s backoff cap: honouring it" in line for line in lines)
    assert any("waiting 300 s, the most allowed" in line for line in lines)


def test_jitter_stays_between_half_and_all_of_the_backoff() -> None:
    policy = RetryPolicy(base_delay=4, max_delay=60)
    delays = [policy.delay(2, None)[0] for _ in range(200)]
    assert all(4 <= d <= 8 for d in delays) and len(set(delays)) > 1


def test_retries_exhausted_names_the_batch_and_keeps_the_answered_ones(ahead: int) -> None:
    dest = Scripted([None] + [RetryableError("HTTP 503", retry_after=1)] * 3)
    answered: list[list[str]] = []
    clock = Clock()
    with pytest.raises(RetriesExhausted, match=r"batch 1 \(1 records\) failed 3 times, giving up: HTTP 503") as err:
        deliver(dest, [changes("a", "b"), changes("c")], on_result=lambda b, r: answered.append(r.acknowledged),
                retry=RetryPolicy(max_attempts=3), sleep=clock.sleep, clock=clock, ahead=ahead)
    assert isinstance(err.value, RetryableError) and err.value.attempts == 3
    assert answered == [["a", "b"]]  # the first batch was handed over before the second failed


def test_a_final_error_is_not_retried(ahead: int) -> None:
    dest = Scripted([DestinationError("HTTP 401: credentials refused")])
    with pytest.raises(DestinationError, match="401"):
        run(dest, [changes("a")], RetryPolicy(), ahead=ahead)
    assert dest.sent == [["a"]]


def test_sends_are_spaced_by_the_rate_limit_and_oversized_batches_refused(ahead: int) -> None:
    dest = Scripted([], rate_limit=4)
    clock = Clock()
    run(dest, [changes("a"), changes("b"), changes("c")], RetryPolicy(), clock, ahead=ahead)
    assert clock.waits == [0.25, 0.25]
    with pytest.raises(DestinationError, match="batch 0 has 3 records, more than the destination takes \\(2\\)"):
        run(Scripted([]), [changes("a", "b", "c")], RetryPolicy(), ahead=ahead)


def test_a_policy_that_cannot_send_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RetryPolicy(max_attempts=0)


class Journal(Scripted):
    """One record a batch; logs each send and each recorded answer, and flags each send as it starts."""

    def __init__(self) -> None:
        super().__init__([], batch_size=1)
        self.events: list[str] = []
        self.started = [threading.Event() for _ in range(10)]
        self.lock = threading.Lock()

    def log(self, event: str) -> None:
        with self.lock:
            self.events.append(event)

    def send(self, batch: Sequence[Change]) -> BatchResult:
        index = len(self.sent)
        self.log(f"send {index}")
        self.started[index].set()
        return super().send(batch)


def test_one_ahead_sends_the_next_batch_while_the_last_answer_is_handled() -> None:
    dest = Journal()

    def on_result(batch: Sequence[Change], result: BatchResult) -> None:
        n = "abcd".index(batch[0].key)
        if n < 3:  # in turn, the next send would only start after this returns: the wait would time out
            assert dest.started[n + 1].wait(5), f"batch {n + 1} was not on its way while batch {n}'s answer was handled"
        dest.log(f"record {batch[0].key}")

    report = deliver(dest, [changes(k) for k in "abcd"], on_result=on_result, retry=RetryPolicy(), ahead=1)
    assert report.batches == 4 and dest.sent == [["a"], ["b"], ["c"], ["d"]]
    events = dest.events
    assert [e for e in events if e.startswith("record")] == ["record a", "record b", "record c", "record d"]
    for n, key in enumerate("ab"):  # each answer is recorded before the batch after next is sent
        assert events.index(f"record {key}") < events.index(f"send {n + 2}"), events


def test_in_turn_a_batch_is_sent_only_after_the_last_answer_was_handled() -> None:
    dest = Journal()
    deliver(dest, [changes(k) for k in "abc"], on_result=lambda b, r: dest.log(f"record {b[0].key}"),
            retry=RetryPolicy())
    assert dest.events == ["send 0", "record a", "send 1", "record b", "send 2", "record c"]


def test_a_failure_while_recording_says_which_batch_was_on_its_way_and_sends_no_more() -> None:
    dest = Journal()
    lines: list[str] = []

    def on_result(batch: Sequence[Change], result: BatchResult) -> None:
        if batch[0].key == "b":
            raise RuntimeError("the state database went away")

    with pytest.raises(RuntimeError, match="went away"):
        deliver(dest, [changes(k) for k in "abcde"], on_result=on_result, retry=RetryPolicy(), say=lines.append,
                ahead=1)
    assert dest.sent == [["a"], ["b"], ["c"]]  # c was on its way while b's answer was recorded; d never left
    assert lines == ["scripted/records: batch 2 (1 records) was on its way when the run failed; its answer is not "
                     "recorded, so the next run sends it again"]


def test_three_ahead_keeps_sending_while_an_answer_is_recorded_and_no_further() -> None:
    dest = Journal()

    def on_result(batch: Sequence[Change], result: BatchResult) -> None:
        n = "abcdef".index(batch[0].key)
        if n == 0:  # a slow transaction: the three batches after it all leave meanwhile
            assert dest.started[3].wait(5), "batches 1-3 were not sent while batch 0's answer was recorded"
        dest.log(f"record {batch[0].key}")

    report = deliver(dest, [changes(k) for k in "abcdef"], on_result=on_result, retry=RetryPolicy(), ahead=3)
    assert report.batches == 6 and dest.sent == [[k] for k in "abcdef"]
    events = dest.events
    assert [e for e in events if e.startswith("record")] == [f"record {k}" for k in "abcdef"]
    for n, key in enumerate("ab"):  # never more than three batches ahead of the answer being recorded
        assert events.index(f"record {key}") < events.index(f"send {n + 4}"), events


def test_ahead_a_retry_is_waited_out_before_the_batches_queued_behind_it_leave() -> None:
    """A 429 with Retry-After holds back the batches already queued: the retry goes first, after the wait."""
    dest = Scripted([None, RetryableError("429", retry_after=7), None, None], batch_size=1)
    clock = Clock()
    answered, _ = run(dest, [changes(k) for k in "abc"], RetryPolicy(jitter=False), clock, ahead=3)
    assert dest.sent == [["a"], ["b"], ["b"], ["c"]] and clock.waits == [7]
    assert answered == [["a"], ["b"], ["c"]]


def test_ahead_nothing_queued_after_a_batch_that_failed_for_good_is_sent() -> None:
    dest = Scripted([None, DestinationError("HTTP 400: malformed body")], batch_size=1)
    answered: list[list[str]] = []
    lines: list[str] = []
    with pytest.raises(DestinationError, match="400"):
        deliver(dest, [changes(k) for k in "abcdef"], on_result=lambda b, r: answered.append(list(r.acknowledged)),
                retry=RetryPolicy(), say=lines.append, ahead=3)
    assert dest.sent == [["a"], ["b"]] and answered == [["a"]] and lines == []


def test_ahead_a_failure_while_recording_names_every_batch_that_was_on_its_way() -> None:
    dest = Journal()
    lines: list[str] = []

    def on_result(batch: Sequence[Change], result: BatchResult) -> None:
        assert dest.started[3].wait(5)
        raise RuntimeError("the state database went away")

    with pytest.raises(RuntimeError, match="went away"):
        deliver(dest, [changes(k) for k in "abcdef"], on_result=on_result, retry=RetryPolicy(), say=lines.append,
                ahead=3)
    assert dest.sent == [["a"], ["b"], ["c"], ["d"]]  # e was never read: the window was full
    assert lines == ["scripted/records: batches 1, 2, 3 (3 records) were on their way when the run failed; their "
                     "answers are not recorded, so the next run sends them again"]
