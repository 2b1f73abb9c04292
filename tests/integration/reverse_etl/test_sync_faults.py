"""``run_sync`` end to end against the real servers (and PostgreSQL) with faults, then a re-run.

Each scenario syncs a 12-row source in batches of 5 while the server misbehaves on the second request:
429 with ``Retry-After``, 500s, a reply after the client's timeout (the request applied), a connection
dropped mid-request (applied or not), per-record errors, and retries exhausted. Then the source changes
(mirror: updates, a delete, an insert; insert mode: inserts) and it syncs again under the same fault.
After every run the evidence is what the server holds, compared with the source: nothing lost, and the
generic sink in insert mode (not idempotent by itself; it honours ``Idempotency-Key``) applied nothing twice.
A last run must then send nothing at all.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from airflow_osds.reverse_etl.destinations.http import HttpDestinationConfig
from airflow_osds.reverse_etl import diff
from airflow_osds.reverse_etl.delivery import RetriesExhausted, RetryPolicy
from airflow_osds.reverse_etl.destinations.base import Destination
from airflow_osds.reverse_etl.destinations.http import HttpDestination
from airflow_osds.reverse_etl.destinations.hubspot import HubSpotDestination
from airflow_osds.reverse_etl.destinations.mailchimp import MailchimpDestination
from airflow_osds.reverse_etl.destinations.postgres import PostgresDestination
from airflow_osds.reverse_etl.spec import SourceSpec, SyncSpec
from airflow_osds.reverse_etl.sync import SyncReport, run_sync
from tests.integration.reverse_etl.test_destination_postgres import kill_backend_once
from tests.reverse_etl_servers import FaultyServer, HubSpotServer, JsonSink, MailchimpServer

RETRY = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.02, jitter=False)
BATCH = 5
FAULTS = ["429", "500", "timeout", "drop", "drop+store", "records", "exhausted"]
_names = itertools.count()


@pytest.fixture
def conn(warehouse: Any) -> Iterator[Any]:
    with warehouse.stack.postgres.connect(warehouse.dbname, autocommit=True) as connection:
        diff.ensure_tables(connection)  # the state is read before the first run writes it
        yield connection


class Source:
    """``crm.faults_<n>``: id, email (``user<i>@example.com``), plan."""

    def __init__(self, conn: Any, rows: int = 12) -> None:
        self.conn = conn
        self.name = f"faults_{next(_names)}"
        self.table = f"crm.{self.name}"
        conn.execute("CREATE SCHEMA IF NOT EXISTS crm")
        conn.execute(f"CREATE TABLE {self.table} (id int, email text, plan text)")
        conn.execute(f"INSERT INTO {self.table} SELECT i, 'user' || i || '@example.com', 'p' || i "
                     "FROM generate_series(1, %s) AS i", (rows,))

    def sql(self, statement: str) -> None:
        self.conn.execute(statement.format(t=self.table))

    def spec(self, mode: str) -> SyncSpec:
        return SyncSpec(sync_id=self.name, source=SourceSpec(table=self.table), key="id",
                        fields={"email": "email", "plan": "plan"}, mode=mode)  # type: ignore[arg-type]

    def expected(self) -> dict[str, str]:
        """email → plan, as every destination must end up holding it."""
        return dict(self.conn.execute(f"SELECT email, plan FROM {self.table}").fetchall())

    def keys(self) -> set[str]:
        return {str(k) for (k,) in self.conn.execute(f"SELECT id FROM {self.table}").fetchall()}


def delivered_keys(conn: Any, sync_id: str) -> set[str]:
    return {k for (k,) in conn.execute(f"SELECT key FROM {diff.DELIVERED_TABLE} WHERE sync_id = %s", (sync_id,))}


def rejected_keys(conn: Any, sync_id: str) -> set[str]:
    return {k for (k,) in conn.execute(f"SELECT key FROM {diff.REJECTIONS_TABLE} WHERE sync_id = %s", (sync_id,))}


@dataclass
class Target:
    """One destination under test: its server, how to build it, what the server holds (email → plan)."""

    server: FaultyServer
    make: Callable[[], Destination]
    holds: Callable[[], dict[str, str]]
    invalid: Callable[[set[str]], None]  # make the server refuse these addresses (empty set: accept all)
    mode: str


def _config(server: FaultyServer, secret: str, **kwargs: Any) -> HttpDestinationConfig:
    # A timeout short enough for the timeout fault; no pacing (the servers do not limit here).
    return HttpDestinationConfig(server.base_url, secret=secret, timeout=0.3, max_requests_per_second=1000, **kwargs)


@pytest.fixture
def sink() -> Iterator[Target]:
    with JsonSink(path="/hooks/records", token="sink-token-0123", dedupe=True) as server:
        def invalid(emails: set[str]) -> None:
            server.reject = {e.split("@")[0].removeprefix("user"): "refused by the sink" for e in emails}

        yield Target(server, lambda: HttpDestination(_config(server, "sink-token-0123"), "/hooks/records",
                                                     batch_size=BATCH, object_name="sink/contacts"),
                     lambda: {r["fields"]["email"]: r["fields"]["plan"] for r in server.records.values()},
                     invalid, "insert")


@pytest.fixture
def hubspot() -> Iterator[Target]:
    with HubSpotServer(token="pat-na1-hubspot-token") as server:
        def invalid(emails: set[str]) -> None:
            server.invalid = set(emails)

        yield Target(server, lambda: HubSpotDestination(_config(server, "pat-na1-hubspot-token"), batch_size=BATCH),
                     lambda: {email: props["plan"] for email, props in server.contacts.items()}, invalid, "mirror")


@pytest.fixture
def mailchimp() -> Iterator[Target]:
    key = "0123456789abcdef0123456789abcdef-us1"
    with MailchimpServer(api_key=key, lists=("a1b2c3",)) as server:
        def invalid(emails: set[str]) -> None:
            server.invalid = set(emails)

        yield Target(server, lambda: MailchimpDestination(_config(server, key, auth_type="basic"), "a1b2c3",
                                                          batch_size=BATCH),
                     lambda: {email: m["merge_fields"]["PLAN"] for email, m in server.members().items()}, invalid,
                     "mirror")


def inject(server: FaultyServer, fault: str, *, after: int) -> None:
    if fault == "429":
        server.inject_status(429, retry_after=0.2, after=after)
    elif fault == "500":
        server.inject_status(500, times=2, after=after)
    elif fault == "timeout":
        server.inject_timeout(seconds=1.0, store=True, after=after)
    elif fault in ("drop", "drop+store"):
        server.inject_drop(store=fault == "drop+store", after=after)
    elif fault == "exhausted":
        server.inject_status(503, times=RETRY.max_attempts, after=after)


def sync(conn: Any, spec: SyncSpec, target: Target) -> SyncReport:
    return run_sync(conn, spec, target.make(), retry=RETRY, say=lambda line: None)


def run_with(conn: Any, src: Source, target: Target, fault: str, bad: set[str], *, after: int) -> None:
    """One run under ``fault`` and what must follow from it, up to everything delivered."""
    spec = src.spec(target.mode)
    before = set(delivered_keys(conn, spec.sync_id))
    inject(target.server, fault, after=after)
    if fault == "records":
        target.invalid(bad)
        report = sync(conn, spec, target)
        bad_keys = {e.split("@")[0].removeprefix("user") for e in bad}
        refused = rejected_keys(conn, spec.sync_id)
        assert bad_keys <= refused and report.rejected == len(refused)
        assert not set(target.holds()) & bad  # a refused record is not at the server
        target.invalid(set())
        report = sync(conn, spec, target)  # the re-run sends the rejected records again
        assert report.rejected == 0 and report.created + report.updated == len(refused)
    elif fault == "exhausted":
        with pytest.raises(RetriesExhausted) as excinfo:
            sync(conn, spec, target)
        assert excinfo.value.attempts == RETRY.max_attempts
        # What the destination acknowledged before the failing batch is recorded, and only that.
        partial = delivered_keys(conn, spec.sync_id)
        assert before <= partial < src.keys() | before
        held = set(target.holds())
        assert {f"user{k}@example.com" for k in partial & src.keys()} <= held  # what the state says is there, is
        if not before:  # a first run: the server holds exactly the batches acknowledged before the failure
            assert held == {f"user{k}@example.com" for k in partial} and partial
        report = sync(conn, spec, target)
        assert report.retries == 0
    else:
        report = sync(conn, spec, target)
        assert report.retries >= 1 and report.rejected == 0
    assert target.server.pending_faults == 0


def check(conn: Any, src: Source, target: Target) -> None:
    """The server holds exactly the source; the state says so; the sink applied nothing twice; a re-run sends nothing."""
    assert target.holds() == src.expected()
    spec = src.spec(target.mode)
    assert delivered_keys(conn, spec.sync_id) == src.keys() and rejected_keys(conn, spec.sync_id) == set()
    if isinstance(target.server, JsonSink):
        applied = Counter(key for key, _ in target.server.applied)
        assert set(applied.values()) == {1}, applied  # no record applied twice, even when a reply was lost
    requests = len(target.server.received)
    report = sync(conn, spec, target)
    assert report.sent == 0 and report.unchanged == len(src.keys())
    assert len(target.server.received) == requests


def scenario(conn: Any, target: Target, fault: str) -> None:
    src = Source(conn)
    run_with(conn, src, target, fault, {"user3@example.com", "user8@example.com"}, after=1)
    check(conn, src, target)
    if target.mode == "mirror":
        src.sql("UPDATE {t} SET plan = 'changed' WHERE id IN (2, 4)")
        src.sql("DELETE FROM {t} WHERE id = 5")
    src.sql("INSERT INTO {t} VALUES (13, 'user13@example.com', 'p13'), (14, 'user14@example.com', 'p14')")
    run_with(conn, src, target, fault, {"user13@example.com"}, after=0)
    check(conn, src, target)


@pytest.mark.parametrize("fault", FAULTS)
def test_the_generic_sink_in_insert_mode(conn: Any, sink: Target, fault: str) -> None:
    scenario(conn, sink, fault)
    faulted = [r for r in sink.server.received if r.fault in ("drop+store", "timeout+store")]
    if faulted:  # the replays of a lost reply came back with the same key and were not applied again
        assert sink.server.replays == len(faulted)  # type: ignore[attr-defined]


@pytest.mark.parametrize("fault", FAULTS)
def test_hubspot_in_mirror_mode(conn: Any, hubspot: Target, fault: str) -> None:
    scenario(conn, hubspot, fault)
    assert sum(not o["archived"] for o in hubspot.server.objects.values()) == 13  # type: ignore[attr-defined]


@pytest.mark.parametrize("fault", FAULTS)
def test_mailchimp_in_mirror_mode(conn: Any, mailchimp: Target, fault: str) -> None:
    scenario(conn, mailchimp, fault)
    assert list(mailchimp.server.archived["a1b2c3"].values())[0]["email_address"] == "user5@example.com"  # type: ignore[attr-defined]


def test_without_the_idempotency_key_a_lost_reply_is_applied_twice(conn: Any) -> None:
    """The limit of at-least-once delivery, shown: a sink that ignores ``Idempotency-Key`` stores a batch twice
    when the reply to it was lost (the records by key are still right: an upsert by key absorbs it)."""
    with JsonSink(path="/hooks/records", token="sink-token-0123", dedupe=False) as server:
        target = Target(server, lambda: HttpDestination(_config(server, "sink-token-0123"), "/hooks/records",
                                                        batch_size=BATCH, object_name="sink/contacts"),
                        lambda: {r["fields"]["email"]: r["fields"]["plan"] for r in server.records.values()},
                        lambda emails: None, "insert")
        src = Source(conn)
        server.inject_drop(store=True, after=1)
        sync(conn, src.spec("insert"), target)
        assert target.holds() == src.expected()
        applied = Counter(key for key, _ in server.applied)
        second_batch = [key for key, _ in server.applied[BATCH:2 * BATCH]]
        assert len(set(second_batch)) == BATCH
        assert {k for k, n in applied.items() if n == 2} == set(second_batch)  # batch 2, twice


# --- PostgreSQL -------------------------------------------------------------------------------------------


@pytest.fixture
def target_db(warehouse: Any) -> Iterator[Callable[..., Any]]:
    dbname = f"retl_faults_target_{next(_names)}"
    pg = warehouse.stack.postgres
    pg.create_database(dbname, exist_ok=False)
    yield lambda **kwargs: pg.connect(dbname, **kwargs)
    pg.drop_database(dbname)


def test_postgres_a_connection_killed_mid_batch_is_retried_and_rejected_rows_are_sent_again(
        conn: Any, target_db: Callable[..., Any]) -> None:
    with target_db(autocommit=True) as admin:
        admin.execute("CREATE TABLE people (id int PRIMARY KEY, email text NOT NULL, plan varchar(5))")
        # Kills its own backend at the 8th row written (batch 2), once: the batch's transaction dies with it.
        for statement in kill_backend_once("people", "NEW.id = 8"):
            admin.execute(statement)
    src = Source(conn)
    src.sql("UPDATE {t} SET plan = 'too-long' WHERE id = 11")  # varchar(5): a rejection
    spec = src.spec("mirror")

    def run() -> SyncReport:
        return run_sync(conn, spec, PostgresDestination(lambda: target_db(), "people", "id", batch_size=BATCH),
                        retry=RETRY, say=lambda line: None)

    def holds() -> dict[str, str]:
        with target_db() as c:
            return dict(c.execute("SELECT email, plan FROM people").fetchall())

    report = run()
    assert report.retries == 1 and report.created == 11 and report.rejected == 1
    (reason,) = conn.execute(f"SELECT reason FROM {diff.REJECTIONS_TABLE} WHERE sync_id = %s", (spec.sync_id,)).fetchone()
    assert reason == "22001: value too long for type character varying(5)"
    assert holds() == {e: p for e, p in src.expected().items() if e != "user11@example.com"}

    src.sql("UPDATE {t} SET plan = 'p11' WHERE id = 11")
    src.sql("DELETE FROM {t} WHERE id IN (1, 2)")
    report = run()
    assert (report.created, report.deleted, report.rejected) == (1, 2, 0)
    assert holds() == src.expected()
    assert delivered_keys(conn, spec.sync_id) == src.keys() and rejected_keys(conn, spec.sync_id) == set()
    assert run().sent == 0
