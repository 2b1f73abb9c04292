"""Reverse-ETL diffing and runs (``diff``, ``sync.run_sync``) on the embedded PostgreSQL.

Every test gets its own source table and sync id in the module's warehouse; the destination is
:class:`FakeDestination`, an in-memory stand-in with fault injection.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest

from airflow_osds.reverse_etl import diff
from airflow_osds.reverse_etl.destinations.base import BatchResult, Change, Destination, DestinationError, Rejection
from airflow_osds.reverse_etl.spec import FieldSpec, SourceSpec, SyncSpec
from airflow_osds.reverse_etl.sync import NO_RESULT, RejectionThresholdExceeded, UnsupportedModeError, run_sync


class FakeDestination:
    """An in-memory destination for these tests, with fault injection.

    It holds records (key → (fields, groups)) as a real tool would and keeps every batch it accepted
    in :attr:`batches`. Faults, all off by default:

    * ``reject``: key → reason; those records are refused (a per-record rejection);
    * ``omit``: keys left out of the result altogether (neither acknowledged nor rejected);
    * ``fail_on_batch=n``: the n-th call of ``send`` (from 1) raises :class:`DestinationError`; that
      batch is not delivered;
    * ``strict``: updates and deletes of records it does not hold are rejected ("no such record"),
      as a tool that cannot upsert does;
    * ``tamper``: a function that may edit each :class:`BatchResult` before it is returned.
    """

    object_name = "fake/contacts"
    rate_limit = 0.0

    def __init__(self, *, batch_size: int = 100, operations: Sequence[str] = ("create", "update", "delete"),
                 reject: dict[str, str] | None = None, omit: Sequence[str] = (), fail_on_batch: int | None = None,
                 strict: bool = False, holds: Sequence[str] = (),
                 tamper: Callable[[BatchResult], None] | None = None,
                 on_send: Callable[[int, Sequence[Change]], None] | None = None) -> None:
        self.batch_size = batch_size
        self.operations = frozenset(operations)
        self.reject = dict(reject or {})
        self.omit = set(omit)
        self.fail_on_batch = fail_on_batch
        self.strict = strict
        self.tamper = tamper
        self.on_send = on_send
        self.records: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {k: ({}, ()) for k in holds}
        self.batches: list[list[Change]] = []
        self.calls = 0
        self.closed = 0

    def send(self, batch: Sequence[Change]) -> BatchResult:
        self.calls += 1
        assert 0 < len(batch) <= self.batch_size
        if self.on_send:
            self.on_send(self.calls, batch)
        if self.calls == self.fail_on_batch:
            raise DestinationError(f"injected failure on batch {self.calls}")
        self.batches.append(list(batch))
        result = BatchResult()
        for change in batch:
            if change.key in self.omit:
                continue
            if change.key in self.reject:
                result.rejected.append(Rejection(change.key, self.reject[change.key]))
                continue
            if self.strict and change.op != "create" and change.key not in self.records:
                result.rejected.append(Rejection(change.key, "no such record"))
                continue
            if change.op == "delete":
                self.records.pop(change.key, None)
            else:
                self.records[change.key] = (dict(change.fields), tuple(change.groups))
            result.acknowledged.append(change.key)
            result.counts[change.op] = result.counts.get(change.op, 0) + 1
        if self.tamper:
            self.tamper(result)
        return result

    def close(self) -> None:
        self.closed += 1

    # --- for the assertions ---
    @property
    def sent(self) -> set[tuple[str, str]]:
        return {(c.key, c.op) for batch in self.batches for c in batch}

    @property
    def changes(self) -> dict[str, Change]:
        return {c.key: c for batch in self.batches for c in batch}

    def forget_batches(self) -> None:
        self.batches.clear()
        self.calls = 0


_tables = itertools.count()


class Source:
    """A source table ``crm.contacts_<n>``: id, email, plan (pro when id is even), ltv (id × 100)."""

    def __init__(self, conn: Any, rows: int = 10) -> None:
        self.conn = conn
        self.name = f"contacts_{next(_tables)}"
        self.table = f"crm.{self.name}"
        conn.execute("CREATE SCHEMA IF NOT EXISTS crm")
        conn.execute(f"CREATE TABLE {self.table} (id int, email text, plan text, ltv numeric)")
        conn.execute(f"INSERT INTO {self.table} SELECT i, 'User' || i || '@Example.com', "
                     "CASE WHEN i %% 2 = 0 THEN 'pro' ELSE 'free' END, i * 100 FROM generate_series(1, %s) AS i",
                     (rows,))

    def sql(self, statement: str, params: Any = None) -> None:
        self.conn.execute(statement.format(t=self.table), params)

    def spec(self, mode: str = "upsert", **kwargs: Any) -> SyncSpec:
        kwargs.setdefault("fields", {"email": "email", "plan": "plan"})
        return SyncSpec(sync_id=kwargs.pop("sync_id", self.name), source=SourceSpec(table=self.table), key="id",
                        mode=mode, **kwargs)  # type: ignore[arg-type]


def row_fields(i: int, plan: str | None = None) -> dict[str, Any]:
    return {"email": f"User{i}@Example.com", "plan": plan or ("pro" if i % 2 == 0 else "free")}


def keys(*ids: int) -> set[str]:
    return {str(i) for i in ids}


def ops(op: str, *ids: int) -> set[tuple[str, str]]:
    return {(str(i), op) for i in ids}


_record_conn: list[Any] = [None]


@pytest.fixture(params=["recorded-on-conn", "recorded-on-a-second-conn"])
def recording(request: pytest.FixtureRequest, warehouse: Any) -> Iterator[None]:
    """The test's syncs run both ways: answers recorded on the main connection between batches, and on a
    second connection in the background (what the hook does)."""
    if request.param == "recorded-on-conn":
        yield
        return
    with warehouse.stack.postgres.connect(warehouse.dbname, autocommit=True) as record_conn:
        _record_conn[0] = record_conn
        try:
            yield
        finally:
            _record_conn[0] = None


def sync(conn: Any, spec: SyncSpec, dest: FakeDestination, **kwargs: Any) -> Any:
    lines: list[str] = []
    kwargs.setdefault("record_conn", _record_conn[0])
    report = run_sync(conn, spec, dest, say=lines.append, **kwargs)
    report.lines = lines  # type: ignore[attr-defined]
    return report


@pytest.fixture
def conn(warehouse: Any) -> Iterator[Any]:
    with warehouse.stack.postgres.connect(warehouse.dbname, autocommit=True) as connection:
        yield connection


def delivered(conn: Any, sync_id: str) -> dict[str, Any]:
    rows = conn.execute(f"SELECT key, payload FROM {diff.DELIVERED_TABLE} WHERE sync_id = %s", (sync_id,)).fetchall()
    return dict(rows)


def rejections(conn: Any, sync_id: str) -> dict[str, tuple[str, str, int]]:
    rows = conn.execute(f"SELECT key, op, reason, attempts FROM {diff.REJECTIONS_TABLE} WHERE sync_id = %s",
                        (sync_id,)).fetchall()
    return {key: (op, reason, attempts) for key, op, reason, attempts in rows}


# --- first and second run ---------------------------------------------------------------------------


@pytest.mark.usefixtures("recording")

def test_the_first_run_sends_everything_and_the_second_nothing(conn: Any) -> None:
    src = Source(conn, 25)
    spec = src.spec()
    dest = FakeDestination(batch_size=10)
    assert isinstance(dest, Destination)
    report = sync(conn, spec, dest)
    assert [len(b) for b in dest.batches] == [10, 10, 5]
    assert dest.sent == ops("create", *range(1, 26))
    assert dest.changes["7"] == Change("7", "create", row_fields(7), ())
    assert (report.created, report.updated, report.deleted, report.rejected, report.unchanged) == (25, 0, 0, 0, 0)
    assert report.batches == 3 and dest.closed == 1
    assert report.destination_counts == {"create": 25}
    assert report.lines[0] == ("sync {} (upsert → fake/contacts): 25 to create, 0 to update, 0 to delete; "
                               "batches of 10").format(src.name)
    assert report.lines[-1].startswith(f"sync {src.name} (upsert → fake/contacts): 25 created, 0 updated, 0 deleted, "
                                       "0 rejected, 0 unchanged; 3 batches in ")
    state = delivered(conn, spec.sync_id)
    assert state == {str(i): row_fields(i) for i in range(1, 26)}
    # one hash per record, distinct for distinct records
    assert conn.execute(f"SELECT count(DISTINCT hash) FROM {diff.DELIVERED_TABLE} WHERE sync_id = %s",
                        (spec.sync_id,)).fetchone()[0] == 25

    again = FakeDestination(batch_size=10)
    second = sync(conn, spec, again)
    assert again.batches == [] and again.closed == 1
    assert (second.created, second.updated, second.unchanged, second.batches) == (0, 0, 25, 0)


# --- what each mode sends ---------------------------------------------------------------------------

EXPECTED = {
    "upsert": ops("update", 2, 3, 4) | ops("create", 11, 12),
    "update": ops("update", 2, 3, 4, 11, 12),
    "insert": ops("create", 11, 12),
    "mirror": ops("update", 2, 3, 4) | ops("create", 11, 12) | ops("delete", 9),
}


@pytest.mark.usefixtures("recording")
@pytest.mark.parametrize("mode", ["upsert", "update", "insert", "mirror"])
def test_each_mode_sends_its_changes(conn: Any, mode: str) -> None:
    src = Source(conn, 10)
    spec = src.spec(mode)
    dest = FakeDestination(batch_size=4)
    first = sync(conn, spec, dest)
    assert dest.sent == ops("update" if mode == "update" else "create", *range(1, 11))
    assert first.created + first.updated == 10

    src.sql("UPDATE {t} SET plan = 'enterprise' WHERE id IN (2, 3, 4)")
    src.sql("INSERT INTO {t} VALUES (11, 'new11@x.io', 'free', 0), (12, 'new12@x.io', 'pro', 0)")
    src.sql("DELETE FROM {t} WHERE id = 9")
    src.sql("UPDATE {t} SET ltv = ltv + 1 WHERE id = 5")  # not mapped: not a change
    dest.forget_batches()
    report = sync(conn, spec, dest)
    assert dest.sent == EXPECTED[mode]
    changes = dest.changes
    if mode != "insert":
        assert changes["3"].fields == row_fields(3, "enterprise")
        assert changes["11"].fields == {"email": "new11@x.io", "plan": "free"}
    if mode == "mirror":
        assert changes["9"].fields == row_fields(9)  # the last delivered payload addresses the record
    assert report.unchanged == 6  # 1, 5, 6, 7, 8, 10
    assert report.skipped_updates == (3 if mode == "insert" else 0)
    assert report.skipped_deletes == (0 if mode == "mirror" else 1)
    assert (report.created, report.updated, report.deleted) == (
        sum(op == "create" for _, op in EXPECTED[mode]), sum(op == "update" for _, op in EXPECTED[mode]),
        sum(op == "delete" for _, op in EXPECTED[mode]))

    expected_state = {str(i): row_fields(i) for i in range(1, 11)}
    if mode != "insert":
        expected_state.update({str(i): row_fields(i, "enterprise") for i in (2, 3, 4)})
    expected_state.update({"11": {"email": "new11@x.io", "plan": "free"}, "12": {"email": "new12@x.io", "plan": "pro"}})
    if mode == "mirror":
        del expected_state["9"]
    assert delivered(conn, spec.sync_id) == expected_state
    assert {k: fields for k, (fields, _) in dest.records.items()} == expected_state

    dest.forget_batches()
    third = sync(conn, spec, dest)
    assert dest.batches == []
    assert (third.skipped_updates, third.skipped_deletes) == (report.skipped_updates, report.skipped_deletes)


def test_update_mode_sends_never_delivered_keys_as_updates_and_stores_the_misses(conn: Any) -> None:
    src = Source(conn, 5)
    spec = src.spec("update")
    dest = FakeDestination(strict=True, holds=["1", "2", "4"], operations=("update",))
    report = sync(conn, spec, dest)
    assert dest.sent == ops("update", 1, 2, 3, 4, 5)
    assert (report.updated, report.rejected) == (3, 2)
    assert set(delivered(conn, spec.sync_id)) == keys(1, 2, 4)
    assert rejections(conn, spec.sync_id) == {"3": ("update", "no such record", 1), "5": ("update", "no such record", 1)}
    dest.forget_batches()
    sync(conn, spec, dest)
    assert dest.sent == ops("update", 3, 5)  # retried: maybe the record exists by now
    assert rejections(conn, spec.sync_id)["3"] == ("update", "no such record", 2)


def test_a_mode_the_destination_cannot_do_is_refused_before_anything_is_read(conn: Any) -> None:
    spec = SyncSpec("no-deletes", SourceSpec(table="crm.does_not_exist"), "id", {"email": "email"}, mode="mirror")
    dest = FakeDestination(operations=("create", "update"))
    with pytest.raises(UnsupportedModeError, match="mode 'mirror' needs delete but destination 'fake/contacts'"):
        sync(conn, spec, dest)
    assert dest.calls == 0 and dest.closed == 1


# --- mapping and groups -----------------------------------------------------------------------------


def test_groups_are_part_of_the_record(conn: Any) -> None:
    src = Source(conn, 10)
    groups = {"vip": "ltv >= 800", "pro": "plan = 'pro'"}
    plain = src.spec(fields={"email": "email"}, groups=groups, sync_id=f"{src.name}-plain")
    listed = src.spec(fields={"email": "email"}, groups=groups, group_field="lists", sync_id=f"{src.name}-listed")
    dest_plain, dest_listed = FakeDestination(), FakeDestination()
    sync(conn, plain, dest_plain)
    sync(conn, listed, dest_listed)
    expected = {str(i): tuple(g for g, cond in (("pro", i % 2 == 0), ("vip", i >= 8)) if cond) for i in range(1, 11)}
    assert {k: c.groups for k, c in dest_plain.changes.items()} == expected
    assert {k: c.groups for k, c in dest_listed.changes.items()} == expected
    assert dest_plain.changes["8"].fields == {"email": "User8@Example.com"}
    assert dest_listed.changes["8"].fields == {"email": "User8@Example.com", "lists": ["pro", "vip"]}
    assert dest_listed.changes["3"].fields == {"email": "User3@Example.com", "lists": []}

    src.sql("UPDATE {t} SET ltv = NULL WHERE id = 10")  # NULL condition: not a member
    src.sql("UPDATE {t} SET plan = 'free' WHERE id = 2")  # only the groups change
    src.sql("UPDATE {t} SET ltv = 150 WHERE id = 1")  # still not vip: no change
    for spec, dest in ((plain, dest_plain), (listed, dest_listed)):
        dest.forget_batches()
        report = sync(conn, spec, dest)
        assert dest.sent == ops("update", 2, 10)
        assert dest.changes["10"].groups == ("pro",) and dest.changes["2"].groups == ()
        assert report.unchanged == 8
    assert dest_listed.changes["10"].fields["lists"] == ["pro"]
    assert conn.execute(f"SELECT groups FROM {diff.DELIVERED_TABLE} WHERE sync_id = %s AND key = '10'",
                        (plain.sync_id,)).fetchone()[0] == ["pro"]


def test_renames_constants_and_sql_expressions(conn: Any) -> None:
    conn.execute('CREATE SCHEMA IF NOT EXISTS "CRM Data"')
    conn.execute('CREATE TABLE "CRM Data"."Contacts" ("Id" int, "E-mail" text, signed_up date)')
    conn.execute("""INSERT INTO "CRM Data"."Contacts" VALUES (1, 'Ann@Example.com', '2024-02-29'),
                    (2, 'bob@other.org', NULL)""")
    fields = {
        "email": "E-mail",
        "email_lower": {"sql": "lower(\"E-mail\")"},
        "domain": {"sql": "split_part(\"E-mail\", '@', 2) -- after the @"},
        "origin": {"value": {"system": "warehouse", "tags": [1, None, "x"]}},
        "nothing": {"value": None},
        "signed_up": {"column": "signed_up"},
    }
    spec = SyncSpec("mapping", SourceSpec(table="CRM Data.Contacts"), "Id", fields)
    assert spec.fields["nothing"] == FieldSpec(value=None)
    dest = FakeDestination()
    sync(conn, spec, dest)
    assert dest.changes["1"].fields == {
        "email": "Ann@Example.com", "email_lower": "ann@example.com", "domain": "Example.com",
        "origin": {"system": "warehouse", "tags": [1, None, "x"]}, "nothing": None, "signed_up": "2024-02-29",
    }
    assert dest.changes["2"].fields["signed_up"] is None

    # a different constant changes every record
    changed = SyncSpec("mapping", SourceSpec(table="CRM Data.Contacts"), "Id",
                       {**fields, "origin": {"value": {"system": "warehouse", "tags": []}}})
    dest.forget_batches()
    sync(conn, changed, dest)
    assert dest.sent == ops("update", 1, 2)
    # the same mapping in another order is the same record (the hash takes the fields in name order)
    reordered = SyncSpec("mapping", SourceSpec(table="CRM Data.Contacts"), "Id",
                         dict(reversed(list(changed.fields.items()))))
    dest.forget_batches()
    assert sync(conn, reordered, dest).unchanged == 2 and dest.batches == []


def test_a_query_source_and_a_wide_mapping(conn: Any) -> None:
    src = Source(conn, 6)
    src.sql("UPDATE {t} SET email = 'someone@elsewhere.net' WHERE id = 6")
    query = (f"SELECT id, email, plan FROM {src.table}\n"
             "WHERE email LIKE '%@Example.com' -- only ours, a % in a comment\n;  ")
    fields: dict[str, Any] = {f"f{i:02d}": {"value": i} for i in range(60)}  # > 50: two jsonb_build_object calls
    fields["email"] = "email"
    spec = SyncSpec("query-source", SourceSpec(query=query), "id", fields)
    dest = FakeDestination()
    sync(conn, spec, dest)
    assert dest.sent == ops("create", 1, 2, 3, 4, 5)
    assert dest.changes["4"].fields == {**{f"f{i:02d}": i for i in range(60)}, "email": "User4@Example.com"}


# --- rejections -------------------------------------------------------------------------------------


@pytest.mark.usefixtures("recording")

def test_rejections_are_stored_retried_and_cleared_once_delivered(conn: Any) -> None:
    src = Source(conn, 10)
    spec = src.spec()
    dest = FakeDestination(reject={"3": "invalid email", "7": "over quota"})
    report = sync(conn, spec, dest)
    assert (report.created, report.rejected) == (8, 2)
    assert {(r.key, r.reason) for r in report.rejection_examples} == {("3", "invalid email"), ("7", "over quota")}
    assert set(delivered(conn, spec.sync_id)) == keys(1, 2, 4, 5, 6, 8, 9, 10)
    assert rejections(conn, spec.sync_id) == {"3": ("create", "invalid email", 1), "7": ("create", "over quota", 1)}
    stored = conn.execute(f"SELECT payload FROM {diff.REJECTIONS_TABLE} WHERE sync_id = %s AND key = '3'",
                          (spec.sync_id,)).fetchone()[0]
    assert stored == row_fields(3)

    dest.forget_batches()
    sync(conn, spec, dest)
    assert dest.sent == ops("create", 3, 7)
    assert rejections(conn, spec.sync_id) == {"3": ("create", "invalid email", 2), "7": ("create", "over quota", 2)}

    # a rejected update leaves the delivered payload as it was
    src.sql("UPDATE {t} SET plan = 'enterprise' WHERE id = 5")
    dest.reject = {"3": "invalid email", "5": "plan not allowed"}
    dest.forget_batches()
    sync(conn, spec, dest)
    assert dest.sent == ops("create", 3, 7) | ops("update", 5)
    assert rejections(conn, spec.sync_id) == {"3": ("create", "invalid email", 3), "5": ("update", "plan not allowed", 1)}
    assert delivered(conn, spec.sync_id)["5"] == row_fields(5)

    dest.reject = {}
    dest.forget_batches()
    report = sync(conn, spec, dest)
    assert dest.sent == ops("create", 3) | ops("update", 5)
    assert (report.created, report.updated, report.rejected) == (1, 1, 0)
    assert rejections(conn, spec.sync_id) == {}
    assert delivered(conn, spec.sync_id) == {**{str(i): row_fields(i) for i in range(1, 11)}, "5": row_fields(5, "enterprise")}
    dest.forget_batches()
    sync(conn, spec, dest)
    assert dest.batches == []


@pytest.mark.usefixtures("recording")

def test_a_rejection_the_source_no_longer_needs_is_cleared(conn: Any) -> None:
    src = Source(conn, 4)
    spec = src.spec()
    sync(conn, spec, FakeDestination())
    src.sql("UPDATE {t} SET plan = 'enterprise' WHERE id IN (1, 2)")
    src.sql("INSERT INTO {t} VALUES (5, 'five@x.io', 'free', 0)")
    sync(conn, spec, FakeDestination(reject={"1": "no", "2": "no", "5": "no"}))
    assert set(rejections(conn, spec.sync_id)) == keys(1, 2, 5)
    src.sql("UPDATE {t} SET plan = 'free' WHERE id = 1")  # back to what was delivered
    src.sql("DELETE FROM {t} WHERE id = 5")  # gone before it was ever delivered
    dest = FakeDestination(reject={"2": "still no"})
    report = sync(conn, spec, dest)
    assert dest.sent == ops("update", 2)
    assert report.stale_rejections_cleared == 2
    assert rejections(conn, spec.sync_id) == {"2": ("update", "still no", 2)}


@pytest.mark.usefixtures("recording")

def test_a_result_that_leaves_keys_out_or_names_others(conn: Any) -> None:
    src = Source(conn, 5)
    spec = src.spec()

    def tamper(result: BatchResult) -> None:
        result.acknowledged.append("999")  # not sent: ignored
        result.rejected.append(Rejection("2", "refused after all"))  # acknowledged and rejected: rejected

    report = sync(conn, spec, FakeDestination(omit=["4"], tamper=tamper))
    assert (report.created, report.rejected) == (3, 2)
    assert rejections(conn, spec.sync_id) == {"2": ("create", "refused after all", 1), "4": ("create", NO_RESULT, 1)}
    assert set(delivered(conn, spec.sync_id)) == keys(1, 3, 5)
    assert any("1 key(s) it was not sent (ignored), e.g. ['999']" in line for line in report.lines)


@pytest.mark.usefixtures("recording")

def test_the_rejection_thresholds(conn: Any) -> None:
    src = Source(conn, 10)
    reject = {"2": "bad", "4": "bad", "6": "bad"}
    for n, (kwargs, raises) in enumerate([
        ({"max_rejected": 2}, True), ({"max_rejected": 3}, False),
        ({"max_rejected_ratio": 0.25}, True), ({"max_rejected_ratio": 0.3}, False), ({}, False),
    ]):
        spec = src.spec(sync_id=f"{src.name}-{n}")
        dest = FakeDestination(reject=reject)
        if raises:
            with pytest.raises(RejectionThresholdExceeded, match=r"3 of 10 records rejected, more than max_rejected"
                               ) as caught:
                sync(conn, spec, dest, **kwargs)
            assert caught.value.report.rejected == 3 and "'2': bad" in str(caught.value)
        else:
            assert sync(conn, spec, dest, **kwargs).rejected == 3
        # recorded before raising
        assert set(delivered(conn, spec.sync_id)) == keys(1, 3, 5, 7, 8, 9, 10)
        assert set(rejections(conn, spec.sync_id)) == keys(2, 4, 6)


# --- crashes and full resyncs -----------------------------------------------------------------------


@pytest.mark.usefixtures("recording")

def test_a_crash_mid_sync_keeps_what_was_delivered_and_the_rerun_sends_the_rest(conn: Any) -> None:
    src = Source(conn, 50)
    src.sql("INSERT INTO {t} VALUES (51, 'gone@x.io', 'free', 0)")
    spec = src.spec("mirror")
    sync(conn, spec, FakeDestination())
    src.sql("DELETE FROM {t} WHERE id = 51")
    src.sql("UPDATE {t} SET plan = 'enterprise'")  # 50 updates and a delete
    crashing = FakeDestination(batch_size=10, fail_on_batch=3)
    with pytest.raises(DestinationError, match="injected failure on batch 3"):
        sync(conn, spec, crashing)
    assert crashing.closed == 1
    done = {c.key for batch in crashing.batches for c in batch}
    assert len(crashing.batches) == 2 and len(done) == 20
    state = delivered(conn, spec.sync_id)
    assert {k for k, payload in state.items() if payload["plan"] == "enterprise"} == done - {"51"}
    assert ("51" in state) == ("51" not in done)

    rerun = FakeDestination(batch_size=10)
    report = sync(conn, spec, rerun)
    everything = {str(i) for i in range(1, 52)}
    assert {k for k, _ in rerun.sent} == everything - done
    assert report.unchanged == len(done - {"51"})
    assert delivered(conn, spec.sync_id) == {str(i): row_fields(i, "enterprise") for i in range(1, 51)}


@pytest.mark.usefixtures("recording")

def test_full_resync_sends_every_row_and_still_deletes_only_what_it_delivered(conn: Any) -> None:
    src = Source(conn, 6)
    for mode in ("upsert", "mirror", "insert", "update"):
        sync(conn, src.spec(mode, sync_id=f"{src.name}-{mode}"), FakeDestination())
    src.sql("UPDATE {t} SET plan = 'enterprise' WHERE id = 1")
    src.sql("DELETE FROM {t} WHERE id = 6")
    src.sql("INSERT INTO {t} VALUES (7, 'seven@x.io', 'free', 0)")
    expected = {
        "upsert": ops("update", 1, 2, 3, 4, 5) | ops("create", 7),
        "mirror": ops("update", 1, 2, 3, 4, 5) | ops("create", 7) | ops("delete", 6),
        "insert": ops("create", 7),  # inserts are never resent
        "update": ops("update", 1, 2, 3, 4, 5, 7),
    }
    for mode, sent in expected.items():
        spec = src.spec(mode, sync_id=f"{src.name}-{mode}")
        dest = FakeDestination()
        report = sync(conn, spec, dest, full_resync=True)
        assert dest.sent == sent, mode
        assert report.unchanged == (4 if mode == "insert" else 0), mode
        assert report.full_resync and "full resync" in report.lines[-1]
        # afterwards the state is as after a normal run: nothing more to send
        dest.forget_batches()
        assert sync(conn, spec, dest).batches == 0
        assert dest.batches == []


# --- keys ---------------------------------------------------------------------------------------------


def test_null_and_duplicated_keys_stop_the_run_before_anything_is_sent(conn: Any) -> None:
    src = Source(conn, 8)
    src.sql("INSERT INTO {t} VALUES (NULL, 'a@x.io', 'free', 0), (NULL, 'b@x.io', 'free', 0), "
            "(5, 'dup@x.io', 'free', 0), (6, 'dup@x.io', 'free', 0), (6, 'dup2@x.io', 'free', 0)")
    spec = src.spec()
    dest = FakeDestination()
    with pytest.raises(diff.SourceKeyError) as caught:
        sync(conn, spec, dest)
    err = caught.value
    assert (err.null_rows, err.duplicated_keys, err.examples) == (2, 2, [("6", 3), ("5", 2)])
    assert str(err) == (f"sync {spec.sync_id!r}: the key column 'id' must be unique and non-null, but the source has "
                        "2 rows with a NULL key and 2 keys shared by several rows (e.g. '6' (3 rows), '5' (2 rows)); "
                        "nothing was sent. Filter or deduplicate the source, or key the sync on another column.")
    assert dest.calls == 0 and dest.closed == 1
    assert delivered(conn, spec.sync_id) == {}
    with pytest.raises(diff.SourceKeyError):
        diff.preview(conn, spec)

    src.sql("DELETE FROM {t} WHERE id IS NULL")
    with pytest.raises(diff.SourceKeyError, match=r"source has 2 keys shared by several rows \(e\.g\. '6'"):
        sync(conn, spec, dest)
    src.sql("DELETE FROM {t} WHERE email LIKE 'dup%'")
    src.sql("INSERT INTO {t} VALUES (NULL, 'a@x.io', 'free', 0)")
    with pytest.raises(diff.SourceKeyError, match=r"source has 1 row with a NULL key; nothing was sent"):
        sync(conn, spec, dest)

    # A unique index alone does not make the key safe: NULLs pass it. Only a unique, non-null key lets
    # the check be skipped (PostgreSQL then guarantees it), and the sync still runs.
    src.sql("DELETE FROM {t} WHERE id = 6")
    src.sql("CREATE UNIQUE INDEX ON {t} (id)")
    with pytest.raises(diff.SourceKeyError, match=r"source has 1 row with a NULL key"):
        sync(conn, spec, dest)
    src.sql("DELETE FROM {t} WHERE id IS NULL")
    src.sql("ALTER TABLE {t} ALTER COLUMN id SET NOT NULL")
    assert sync(conn, spec, dest).created == 7


# --- preview ------------------------------------------------------------------------------------------


def test_preview_sends_and_records_nothing(conn: Any) -> None:
    src = Source(conn, 10)
    spec = src.spec("mirror")
    first = diff.preview(conn, spec, limit=3)
    assert first.changes == [Change(str(i), "create", row_fields(i), ()) for i in (1, 10, 2)]  # by key, as text
    assert (first.counts.new, first.counts.creates, first.counts.to_send) == (10, 10, 10)
    assert delivered(conn, spec.sync_id) == {}
    sync(conn, spec, FakeDestination())
    src.sql("UPDATE {t} SET plan = 'x' WHERE id = 4")
    src.sql("DELETE FROM {t} WHERE id = 5")
    before = delivered(conn, spec.sync_id)
    shown = diff.preview(conn, spec, limit=50)
    assert shown.changes == [Change("4", "update", row_fields(4, "x"), ()), Change("5", "delete", row_fields(5), ())]
    assert (shown.counts.changed, shown.counts.gone, shown.counts.unchanged, shown.counts.new) == (1, 1, 8, 0)
    assert delivered(conn, spec.sync_id) == before
    assert len(diff.preview(conn, spec, limit=50, full_resync=True).changes) == 10


def test_preview_before_any_state_table_exists_creates_none(warehouse: Any) -> None:
    name = "wh_retl_fresh"
    warehouse.stack.postgres.create_database(name, exist_ok=False)
    try:
        with warehouse.stack.postgres.connect(name, autocommit=True) as fresh:
            fresh.execute("CREATE TABLE people (id text, email text)")
            fresh.execute("INSERT INTO people VALUES ('a', 'a@x.io'), ('b', NULL)")
            spec = SyncSpec("fresh", SourceSpec(table="people"), "id", {"email": "email"})
            shown = diff.preview(fresh, spec)
            assert shown.changes == [Change("a", "create", {"email": "a@x.io"}), Change("b", "create", {"email": None})]
            assert fresh.execute("SELECT to_regnamespace('osds_state')").fetchone()[0] is None
    finally:
        warehouse.stack.postgres.drop_database(name)


# --- volume -------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("recording")

def test_20k_rows_stream_in_batches_from_a_server_side_cursor(conn: Any) -> None:
    src = Source(conn, 20_000)
    seen_cursors: list[list[tuple[str, bool]]] = []

    def look(call: int, batch: Sequence[Change]) -> None:
        if call in (1, 40):  # the changes come from a holdable cursor on the sync's connection
            seen_cursors.append(conn.execute("SELECT name LIKE 'osds_retl_%', is_holdable FROM pg_cursors").fetchall())

    # An insert sync sends in the thread that holds the connection (others send from a worker thread while
    # it records), so the session's cursors can be looked at from inside a send.
    looked = FakeDestination(batch_size=500, on_send=look)
    assert sync(conn, src.spec("insert", sync_id=f"{src.name}-insert"), looked).created == 20_000
    assert seen_cursors == [[(True, True)], [(True, True)]]
    assert conn.execute("SELECT count(*) FROM pg_cursors").fetchone()[0] == 0  # closed after the run

    spec = src.spec()
    dest = FakeDestination(batch_size=500)
    started = time.monotonic()
    report = sync(conn, spec, dest)
    first_seconds = time.monotonic() - started
    assert [len(b) for b in dest.batches] == [500] * 40
    assert len({c.key for b in dest.batches for c in b}) == 20_000
    assert dest.sent == ops("create", *range(1, 20_001))
    assert conn.execute("SELECT count(*) FROM pg_cursors").fetchone()[0] == 0
    assert report.created == 20_000 and report.batches == 40

    dest.forget_batches()
    assert sync(conn, spec, dest).unchanged == 20_000 and dest.batches == []
    src.sql("UPDATE {t} SET plan = 'enterprise' WHERE id % 100 = 0")  # 1 %
    dest.forget_batches()
    report = sync(conn, spec, dest)
    assert dest.sent == ops("update", *range(100, 20_001, 100))
    assert (report.updated, report.unchanged, report.batches) == (200, 19_800, 1)
    assert first_seconds < 60, first_seconds


def test_a_large_diff_is_planned_across_parallel_workers(conn: Any) -> None:
    """The planner expects the diff to return every source row and, at its default cost per row passed
    from a worker, plans a large diff on one core; the run lowers that cost (the diff returns the changed
    rows only) so the join is split across workers. 200k rows: a 12 MB table, past the 8 MB at which
    PostgreSQL considers a parallel scan."""
    assert int(conn.execute("SHOW max_parallel_workers_per_gather").fetchone()[0]) > 0
    src = Source(conn, 200_000)
    conn.execute(f"ANALYZE {src.table}")
    spec = src.spec()
    diff.ensure_tables(conn)
    diff.ensure_tables(conn, spec.sync_id)
    conn.execute(f"INSERT INTO {diff.DELIVERED_TABLE} (sync_id, key, hash, payload) "
                 f"SELECT %s, id::text, 0, '{{}}' FROM {src.table}", (spec.sync_id,))
    conn.execute(f"ANALYZE {diff.DELIVERED_TABLE}")
    with conn.transaction():
        diff._in_snapshot(conn, read_only=True)
        types = diff.field_types(conn, spec)
        plan = "\n".join(row[0] for row in conn.execute(
            b"EXPLAIN " + diff._diff_sql(spec, types, full_resync=False, exists=True).as_bytes(conn)))
        changed = diff._checked_counts(conn, spec, types, full_resync=False, exists=True).changed
    assert "Gather" in plan and "Parallel Hash" in plan, plan
    assert changed == 200_000  # every stored hash (0) differs


@pytest.mark.parametrize(("mode", "pipelined"), [("upsert", True), ("mirror", True), ("insert", False)])
def test_sending_overlaps_recording_except_in_insert_mode(conn: Any, mode: str, pipelined: bool) -> None:
    """A crash while a pipelined batch is on its way leaves it unrecorded, and the next run sends it again:
    harmless for upserts, updates and deletes, a duplicate for inserts, so an insert sync sends in turn."""
    src = Source(conn, 12)
    threads: list[str] = []
    dest = FakeDestination(batch_size=5, on_send=lambda call, batch: threads.append(threading.current_thread().name))
    assert sync(conn, src.spec(mode), dest).created == 12
    assert len(threads) == 3
    if pipelined:
        assert all(name.startswith("osds-send") for name in threads), threads
    else:
        assert threads == [threading.main_thread().name] * 3


def test_each_sync_diffs_against_its_own_partition_of_the_state(conn: Any) -> None:
    a, b = Source(conn, 30), Source(conn, 30)
    for src in (a, b):
        assert sync(conn, src.spec(), FakeDestination()).created == 30
    partitions = dict(conn.execute(
        "SELECT pg_get_expr(c.relpartbound, c.oid), c.relname FROM pg_inherits AS i JOIN pg_class AS c "
        "ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass", (diff.DELIVERED_TABLE,)).fetchall())
    mine, theirs = partitions[f"FOR VALUES IN ('{a.name}')"], partitions[f"FOR VALUES IN ('{b.name}')"]
    with conn.transaction():
        diff._in_snapshot(conn, read_only=True)
        plan = "\n".join(row[0] for row in conn.execute(
            b"EXPLAIN " + diff._diff_sql(a.spec(), diff.field_types(conn, a.spec()), full_resync=False,
                                         exists=True).as_bytes(conn)))
    assert mine in plan and theirs not in plan, plan
    assert diff.forget(conn, a.name) == (30, 0)
    assert delivered(conn, a.name) == {} and len(delivered(conn, b.name)) == 30  # b's state is intact
    assert diff.forget(conn, "never-ran") == (0, 0)
    assert sync(conn, a.spec(), FakeDestination()).created == 30


def test_the_shared_state_table_from_before_partitions_is_moved_into_one_partition_per_sync(warehouse: Any) -> None:
    """A warehouse whose state was written by an airflow-osds with one plain table for every sync: the first
    connection that touches the state moves each sync's rows into its partition, and nothing is resent."""
    pg = warehouse.stack.postgres
    dbname = f"{warehouse.dbname}_legacy"
    pg.create_database(dbname, exist_ok=False)
    try:
        with pg.connect(dbname, autocommit=True) as conn:
            a, b = Source(conn, 12), Source(conn, 7)
            for src, rows in ((a, 12), (b, 7)):
                assert sync(conn, src.spec(), FakeDestination()).created == rows
            # The layout before partitions, holding the rows the runs above recorded.
            conn.execute(f"CREATE TABLE osds_state.old AS SELECT * FROM {diff.DELIVERED_TABLE}")
            conn.execute(f"DROP TABLE {diff.DELIVERED_TABLE}")
            conn.execute("ALTER TABLE osds_state.old RENAME TO reverse_etl_delivered")
            conn.execute(f"ALTER TABLE {diff.DELIVERED_TABLE} ADD CONSTRAINT reverse_etl_delivered_pkey "
                         "PRIMARY KEY (sync_id, key)")
        with pg.connect(dbname, autocommit=True) as conn:  # a new connection: it has not seen the tables yet
            for src, rows in ((a, 12), (b, 7)):
                report = sync(conn, src.spec(), FakeDestination())
                assert (report.sent, report.unchanged) == (0, rows)
            assert conn.execute("SELECT relkind FROM pg_class WHERE oid = %s::regclass",
                                (diff.DELIVERED_TABLE,)).fetchone()[0] == "p"
            bounds = conn.execute(
                "SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits AS i JOIN pg_class AS c"
                " ON c.oid = i.inhrelid"
                " WHERE i.inhparent = %s::regclass ORDER BY 1", (diff.DELIVERED_TABLE,)).fetchall()
            assert bounds == sorted([(f"FOR VALUES IN ('{a.name}')",), (f"FOR VALUES IN ('{b.name}')",)])
            assert dict(conn.execute(f"SELECT sync_id, count(*) FROM {diff.DELIVERED_TABLE} GROUP BY 1").fetchall()) \
                == {a.name: 12, b.name: 7}
            assert conn.execute("SELECT to_regclass('osds_state.reverse_etl_delivered_unpartitioned')").fetchone()[0] \
                is None
    finally:
        pg.drop_database(dbname)


def test_a_run_that_wrote_much_of_its_state_vacuums_and_analyzes_it(conn: Any) -> None:
    """A new partition has no statistics until autovacuum gets to it (a minute or more), and the next diff
    would be planned blind (a merge join of two sorts, ~3× slower on 1M rows), over pages not marked
    all-visible (every row's visibility checked): the run vacuums and analyzes it."""
    src = Source(conn, 1500)
    partition = diff._partition(src.name).as_string(conn)

    def pages() -> tuple[float, int, int]:
        return conn.execute("SELECT reltuples, relpages, relallvisible FROM pg_class WHERE oid = %s::regclass",
                            (partition,)).fetchone()

    assert sync(conn, src.spec(), FakeDestination()).created == 1500
    tuples, relpages, all_visible = pages()
    assert tuples == 1500 and relpages > 1 and all_visible == relpages  # vacuumed and analyzed by the run
    assert not diff.vacuum_state(conn, src.name, delivered_before=1500, written=10)
    assert not diff.vacuum_state(conn, src.name, delivered_before=20_000, written=1999)
    assert diff.vacuum_state(conn, src.name, delivered_before=20_000, written=2000)
    assert not diff.vacuum_state(conn, "no-such-sync", delivered_before=0, written=10**6)


@pytest.mark.usefixtures("recording")
@pytest.mark.parametrize(("mode", "records_per_transaction"), [("upsert", [1000, 1000, 500]), ("insert", [100] * 25)])
def test_answers_are_recorded_a_thousand_at_a_time_except_in_insert_mode(
        conn: Any, monkeypatch: pytest.MonkeyPatch, mode: str, records_per_transaction: list[int]) -> None:
    src = Source(conn, 2500)
    written: list[int] = []
    real_record = diff.record

    def counting(conn: Any, sync_id: str, acknowledged: Any, rejected: Any, **kwargs: Any) -> None:
        written.append(len(acknowledged) + len(rejected))
        real_record(conn, sync_id, acknowledged, rejected, **kwargs)

    monkeypatch.setattr(diff, "record", counting)
    assert sync(conn, src.spec(mode), FakeDestination()).created == 2500
    assert written == records_per_transaction
    assert len(delivered(conn, src.name)) == 2500


def test_answers_are_recorded_on_the_second_connection_in_the_background(conn: Any, warehouse: Any,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each group of answers is written by the recorder thread on the second connection, in order; an insert
    sync never touches it (a closed one is not an error there)."""
    src = Source(conn, 2500)
    writers: list[tuple[str, int]] = []
    real_record = diff.record

    def watched(record_conn: Any, sync_id: str, acknowledged: Any, rejected: Any, **kwargs: Any) -> None:
        writers.append((threading.current_thread().name, record_conn.info.backend_pid))
        real_record(record_conn, sync_id, acknowledged, rejected, **kwargs)

    monkeypatch.setattr(diff, "record", watched)
    with warehouse.stack.postgres.connect(warehouse.dbname, autocommit=True) as record_conn:
        assert sync(conn, src.spec(), FakeDestination(), record_conn=record_conn).created == 2500
        assert [pid for _, pid in writers] == [record_conn.info.backend_pid] * 3
    assert all(name.startswith("osds-record") for name, _ in writers), writers
    assert delivered(conn, src.name) == {str(i): row_fields(i) for i in range(1, 2501)}
    record_conn.close()
    other = Source(conn, 30)
    assert sync(conn, other.spec("insert"), FakeDestination(), record_conn=record_conn).created == 30
    assert len(delivered(conn, other.name)) == 30


def test_counts_taken_on_the_second_connection_are_those_of_the_diffs_snapshot(conn: Any, warehouse: Any) -> None:
    """The unchanged and gone rows are counted on ``count_conn`` after the diff's transaction committed, in its
    snapshot: rows the source gained meanwhile are not counted. Counts never read end that transaction."""
    from psycopg.pq import TransactionStatus

    src = Source(conn, 40)
    spec = src.spec()
    assert sync(conn, spec, FakeDestination()).created == 40
    src.sql("UPDATE {t} SET plan = 'enterprise' WHERE id <= 5")
    with warehouse.stack.postgres.connect(warehouse.dbname, autocommit=True) as count_conn:
        with diff.changes(conn, spec, batch_size=10, count_conn=count_conn) as stream:
            assert stream.sending == {"create": 0, "update": 5, "delete": 0} and not stream.counted
            src.sql("INSERT INTO {t} SELECT i, 'late@x.io', 'free', 0 FROM generate_series(41, 60) AS i")
            assert stream.counts == diff.DiffCounts("upsert", False, new=0, changed=5, unchanged=35, gone=0)
            assert count_conn.info.transaction_status == TransactionStatus.IDLE
        with diff.changes(conn, spec, batch_size=10, count_conn=count_conn) as unread:
            assert count_conn.info.transaction_status == TransactionStatus.INTRANS
        assert not unread.counted and count_conn.info.transaction_status == TransactionStatus.IDLE
        assert count_conn.execute("SELECT 1").fetchone() == (1,)


def test_a_recording_connection_that_dies_fails_the_run_and_the_rerun_sends_what_was_not_recorded(
        conn: Any, warehouse: Any) -> None:
    """The recorder's server process is terminated in the middle of a run (a real fault: what a restarted or
    failed-over warehouse does): the run fails with that error, nothing recorded is lost, and the next run
    sends exactly what was not recorded."""
    import psycopg

    src = Source(conn, 2500)
    with warehouse.stack.postgres.connect(warehouse.dbname, autocommit=True) as record_conn, \
            warehouse.stack.postgres.connect(warehouse.dbname, autocommit=True) as killer:
        pid = record_conn.info.backend_pid

        def kill(call: int, batch: Sequence[Change]) -> None:
            if call == 12:  # after the first thousand answers went to the recorder
                killer.execute("SELECT pg_terminate_backend(%s)", (pid,))

        first = FakeDestination(on_send=kill)
        with pytest.raises(psycopg.OperationalError):
            sync(conn, src.spec(), first, record_conn=record_conn)
    recorded = set(delivered(conn, src.name))
    assert len(recorded) in (0, 1000) and first.closed == 1
    rerun = FakeDestination()
    assert sync(conn, src.spec(), rerun, record_conn=None).created == 2500 - len(recorded)
    assert {k for k, _ in rerun.sent} == {str(i) for i in range(1, 2501)} - recorded
    assert delivered(conn, src.name) == {str(i): row_fields(i) for i in range(1, 2501)}


def test_answers_older_than_a_second_are_recorded_with_the_next_one(conn: Any) -> None:
    """The clock is the one stand-in: a second cannot be made to pass on demand. The records are real."""
    from airflow_osds.reverse_etl.sync import _Outcomes

    class Clock:
        now = 0.0

        def __call__(self) -> float:
            return self.now

    clock, keys = Clock(), itertools.count()
    spec = SyncSpec(sync_id=f"outcomes_{next(_tables)}", source=SourceSpec(table="t"), key="id",
                    fields={"email": "email"})
    outcomes = _Outcomes(conn, spec, clock=clock)

    def answer() -> list[diff.Pending]:
        return [diff.Pending(Change(str(next(keys)), "create", {"email": "e"}), 1, '{"email": "e"}', "[]")
                for _ in range(10)]

    outcomes.add(answer(), [])
    clock.now = 0.9
    outcomes.add(answer(), [])
    assert delivered(conn, spec.sync_id) == {}  # 20 records, under a second old: not yet
    clock.now = 1.0
    outcomes.add(answer(), [])
    assert len(delivered(conn, spec.sync_id)) == 30
    outcomes.add(answer(), [])
    outcomes.flush()  # the end of a run records what is left
    assert len(delivered(conn, spec.sync_id)) == 40


def test_payloads_round_trip_through_the_fast_json_codec(conn: Any) -> None:
    """Payloads come back from jsonb as text, are decoded with msgspec (the stdlib for a number beyond a
    double, which jsonb's numeric can hold) and stored again as the same JSON."""
    src = Source(conn, 3)
    src.sql("ALTER TABLE {t} ADD COLUMN huge numeric, ADD COLUMN note text")
    src.sql("UPDATE {t} SET huge = CASE WHEN id = 1 THEN 1e400 + 0.5 ELSE 123456789012345678901234567890 END, "
            "note = 'naïve \"quoted\" \\ line' || chr(10) || 'two'")
    spec = src.spec(fields={"huge": "huge", "note": "note"})
    dest = FakeDestination()
    assert sync(conn, spec, dest).created == 3
    fields = {c.key: c.fields for b in dest.batches for c in b}
    assert fields["1"]["huge"] == float("inf") and fields["2"]["huge"] == 123456789012345678901234567890
    assert fields["2"]["note"] == 'naïve "quoted" \\ line\ntwo'
    stored = conn.execute(f"SELECT key, payload->>'note', (payload->>'huge')::numeric = 123456789012345678901234567890 "
                          f"FROM {diff.DELIVERED_TABLE} WHERE sync_id = %s ORDER BY key", (src.name,)).fetchall()
    assert stored[1] == ("2", 'naïve "quoted" \\ line\ntwo', True)
    assert sync(conn, spec, dest).unchanged == 3


@pytest.mark.parametrize(("rows", "batch_size", "sizes"), [
    (4500, 300, [300] * 15),  # read 1,800 at a time (six batches), sent as whole batches
    (3000, 2500, [2500, 500]),  # a batch larger than a read: read a batch at a time
    (7, 3, [3, 3, 1]),
])
def test_changes_are_read_in_chunks_and_sent_in_whole_batches(conn: Any, rows: int, batch_size: int,
                                                              sizes: list[int]) -> None:
    src = Source(conn, rows)
    dest = FakeDestination(batch_size=batch_size)
    assert sync(conn, src.spec(), dest).created == rows
    assert [len(b) for b in dest.batches] == sizes
    assert len({c.key for b in dest.batches for c in b}) == rows


# --- the record hash ----------------------------------------------------------------------------------

def _folded_pair(type_: str) -> tuple[str, str]:
    """Two timestamps whose 64-bit microsecond counts fold to one 32-bit value (high word xor low word), the
    hash PostgreSQL's own timestamp hash starts from: 2³² µs (71 minutes) apart, the low word adjusted."""
    high, low = 200_000, 12_345  # the two words of a count of µs since 2000-01-01, PostgreSQL's epoch: in 2027
    moved = ((high + 1) << 32) | (low ^ high ^ (high + 1))
    epoch = datetime(2000, 1, 1)
    zone = "+00" if type_ == "timestamptz" else ""
    return tuple(f"'{epoch + timedelta(microseconds=us)}{zone}'" for us in ((high << 32) | low, moved))


@pytest.mark.parametrize(("column", "before", "after"), [
    ("bigint", "0", "4294967297"),  # bigint's own hash: 0 and 2³² + 1 collide
    ("timestamp", *_folded_pair("timestamp")),
    ("timestamptz", *_folded_pair("timestamptz")),
    ("numeric", "1.5", "-1.5"),  # a numeric's own hash has no sign
    ("numeric", "1.0", "1.00"),  # equal numerics, and one hash: only the scale tells them apart
    ("numeric", "NULL", "0"),
    ("numeric", "'NaN'", "'Infinity'"),  # no scale, and one hash for NaN and both infinities
    ("numeric", "'Infinity'", "'-Infinity'"),
    ("numeric(12, 2)", "10.25", "-10.25"),
    # A nondeterministic (ICU) collation's 'Ada' = 'ADA' is the same case for text (hashed as bytes), but
    # the embedded PostgreSQL is built without ICU, so it cannot be created here.
    ("jsonb", """'{"a": 1.0}'""", """'{"a": 1.00}'"""),  # equal jsonb
    ("json", """'{"a":1}'""", """'{"a": 1}'"""),  # json has no hash function at all
    ("float8", "0", "'-0'"),  # 0 = -0
    ("text", "NULL", "''"),
    ("int", "NULL", "0"),
    ("bigint", "9007199254740993", "9007199254740992"),
    ("boolean", "true", "false"),
    ("varchar(5)", "'abc'", "'abd'"),
    ("uuid", "'00000000-0000-0000-0000-000000000001'", "'00000000-0000-0000-0000-000000000002'"),
    ("timestamptz", "'2026-01-01 00:00:00.000001+00'", "'2026-01-01 00:00:00.000002+00'"),
    ("date", "'2026-01-01'", "'2026-01-02'"),
    ("text[]", "'{a,b}'", "'{a,B}'"),
])
def test_every_change_of_a_value_is_sent_whatever_its_type(conn: Any, column: str, before: str, after: str) -> None:
    """Some types are hashed as they are and the rest by their text form (see diff's docstring): a change
    that a type's own equality cannot see must still be sent, once."""
    src = Source(conn, 3)
    src.sql(f"ALTER TABLE {{t}} ADD COLUMN v {column}")
    conn.execute(f"UPDATE {src.table} SET v = {before}")  # not src.sql: the values hold braces
    spec = src.spec(fields={"email": "email", "v": "v"})
    dest = FakeDestination()
    assert sync(conn, spec, dest).created == 3
    assert sync(conn, spec, dest).unchanged == 3
    conn.execute(f"UPDATE {src.table} SET v = {after} WHERE id = 2")
    dest.forget_batches()
    report = sync(conn, spec, dest)
    assert dest.sent == ops("update", 2) and report.unchanged == 2
    expected = conn.execute(f"SELECT to_jsonb(v) FROM {src.table} WHERE id = 2").fetchone()[0]
    assert dest.changes["2"].fields["v"] == expected
    assert sync(conn, spec, dest).unchanged == 3


def test_values_trading_places_and_renamed_null_fields_are_changes(conn: Any) -> None:
    src = Source(conn, 2)
    src.sql("ALTER TABLE {t} ADD COLUMN a text, ADD COLUMN b text, ADD COLUMN n int, ADD COLUMN x numeric")
    src.sql("UPDATE {t} SET a = 'x', b = '', x = 1")
    spec = src.spec(fields={"a": "a", "b": "b", "x": "x"})
    assert sync(conn, spec, FakeDestination()).created == 2
    src.sql("UPDATE {t} SET a = '', b = 'x' WHERE id = 1")
    dest = FakeDestination()
    assert sync(conn, spec, dest).updated == 1 and dest.sent == ops("update", 1)
    # Every value NULL: the field names alone tell the records apart.
    only_null = src.spec(fields={"n": "n"}, sync_id=f"{src.name}_null")
    assert sync(conn, only_null, FakeDestination()).created == 2
    renamed = src.spec(fields={"m": "n"}, sync_id=f"{src.name}_null")
    assert sync(conn, renamed, FakeDestination()).updated == 2


def _write_legacy_hashes(conn: Any, src: Source) -> None:
    """What an airflow-osds before 2026-12-05 stored for ``fields={"email", "plan"}`` without groups: the hash
    of the whole mapped row's text form (written out here as that release computed it)."""
    conn.execute(
        f"UPDATE {diff.DELIVERED_TABLE} AS d SET hash = hashtextextended(ROW('[[\"email\",\"plan\"],null]', "
        f"s.email, s.plan, '{{}}'::text[])::text, 0) FROM {src.table} AS s WHERE d.sync_id = %s AND d.key = s.id::text",
        (src.name,))


def test_state_hashed_before_the_current_scheme_is_rehashed_and_nothing_unchanged_is_resent(conn: Any) -> None:
    src = Source(conn, 12)
    spec = src.spec()
    assert sync(conn, spec, FakeDestination()).created == 12
    current = dict(conn.execute(f"SELECT key, hash FROM {diff.DELIVERED_TABLE} WHERE sync_id = %s", (src.name,)))
    _write_legacy_hashes(conn, src)
    assert not set(conn.execute(f"SELECT key, hash FROM {diff.DELIVERED_TABLE} WHERE sync_id = %s",
                                (src.name,)).fetchall()) & set(current.items())
    src.sql("UPDATE {t} SET plan = 'enterprise' WHERE id = 5")
    assert diff.summary(conn, spec).changed == 1  # a dry count rewrites nothing

    dest = FakeDestination()
    report = sync(conn, spec, dest)
    assert dest.sent == ops("update", 5) and (report.updated, report.unchanged) == (1, 11)
    assert any("11 unchanged records had their delivered hash rewritten" in line for line in report.lines), report.lines
    after = dict(conn.execute(f"SELECT key, hash FROM {diff.DELIVERED_TABLE} WHERE sync_id = %s", (src.name,)))
    assert {k: h for k, h in after.items() if k != "5"} == {k: h for k, h in current.items() if k != "5"}
    again = sync(conn, spec, dest)
    assert again.sent == 0 and not any("rewritten" in line for line in again.lines)


def test_a_full_resync_of_state_hashed_before_the_current_scheme_sends_and_rehashes_everything(conn: Any) -> None:
    src = Source(conn, 6)
    spec = src.spec()
    assert sync(conn, spec, FakeDestination()).created == 6
    _write_legacy_hashes(conn, src)
    dest = FakeDestination()
    report = sync(conn, spec, dest, full_resync=True)
    assert dest.sent == ops("update", *range(1, 7)) and not any("rewritten" in line for line in report.lines)
    assert sync(conn, spec, FakeDestination()).unchanged == 6
