"""DbtSourceFreshnessTrigger against the embedded PostgreSQL, and the sensor's side of its contract.

The trigger runs here in the test's own event loop (the triggerer runs it the same way); its
connection comes from ``AIRFLOW_CONN_WAREHOUSE``, set by the ``warehouse`` fixture.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_osds.dbt.freshness import FreshnessCheck, FreshnessResult
from airflow_osds.triggers.dbt import TRIGGER_STATUSES, DbtSourceFreshnessTrigger, freshness_event

CLASSPATH = "airflow_osds.triggers.dbt.DbtSourceFreshnessTrigger"

ORDERS = FreshnessCheck(
    source="shop_raw.orders", unique_id="source.shop.shop_raw.orders", schema="shop_raw", table="orders",
    loaded_at_field="loaded_at", loaded_at_column="loaded_at", filter=None,
    warn_after=None, error_after=None,
)


def _checks(**thresholds: Any) -> list[dict[str, Any]]:
    d = ORDERS.to_dict()
    d.update(error_after={"count": 1, "period": "hour"}, **thresholds)
    return [d]


def _trigger(**kwargs: Any) -> DbtSourceFreshnessTrigger:
    defaults: dict[str, Any] = {"conn_id": "warehouse", "checks": _checks(), "end_time": time.time() + 30, "poke_interval": 0.2}
    return DbtSourceFreshnessTrigger(**{**defaults, **kwargs})


async def _events(trigger: DbtSourceFreshnessTrigger) -> list[Any]:
    return [event async for event in trigger.run()]


def test_serialization() -> None:
    from airflow.sdk.serde import deserialize, serialize

    trigger = _trigger(end_time=1_800_000_000.5, allow_warn=True)
    classpath, kwargs = trigger.serialize()
    assert classpath == CLASSPATH
    assert kwargs == {
        "conn_id": "warehouse", "checks": _checks(), "end_time": 1_800_000_000.5, "poke_interval": 0.2, "allow_warn": True,
    }
    # What the task runner does with them (serde), then what the triggerer does (import + call).
    assert json.loads(json.dumps(kwargs)) == kwargs
    module, _, name = classpath.rpartition(".")
    cls = getattr(__import__(module, fromlist=[name]), name)
    assert cls(**deserialize(serialize(kwargs))).serialize() == (classpath, kwargs)


def test_the_event_helper_accepts_only_the_closed_set() -> None:
    assert freshness_event("timeout", "m").payload == {"status": "timeout", "message": "m", "results": []}
    with pytest.raises(ValueError, match="'stale' is not one of"):
        freshness_event("stale", "m")


# -- run() against the real PostgreSQL ---------------------------------------------------------


@pytest.fixture
def orders(warehouse):  # type: ignore[no-untyped-def]
    """An empty ``shop_raw.orders`` with a ``loaded_at`` column."""
    with warehouse.stack.postgres.connect(warehouse.dbname, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS shop_raw CASCADE; CREATE SCHEMA shop_raw;"
                     "CREATE TABLE shop_raw.orders (id int, loaded_at timestamptz)")
    return warehouse


def _insert(warehouse, age: str) -> None:  # type: ignore[no-untyped-def]
    with warehouse.stack.postgres.connect(warehouse.dbname, autocommit=True) as conn:
        conn.execute(f"INSERT INTO shop_raw.orders VALUES (1, now() - interval '{age}')")


def test_a_stale_table_times_out_with_its_age(orders) -> None:  # type: ignore[no-untyped-def]
    _insert(orders, "3 days")
    started = time.monotonic()
    events = asyncio.run(_events(_trigger(end_time=time.time() + 1.0)))
    assert 0.9 < time.monotonic() - started < 10
    (event,) = events  # exactly one event
    assert event.payload["status"] == "timeout"
    (result,) = [FreshnessResult.from_dict(r) for r in event.payload["results"]]
    assert (result.source, result.status, result.fresh, result.threshold) == (
        "shop_raw.orders", "error", False, "error_after 1 hour"
    )
    assert 3 * 86400 - 60 < result.age_seconds < 3 * 86400 + 60


def test_a_table_that_becomes_fresh_while_polled_fires_fresh(orders) -> None:  # type: ignore[no-untyped-def]
    _insert(orders, "2 hours")
    trigger = _trigger()
    polls: list[list[FreshnessResult]] = []
    poll = trigger._poll

    async def counting_poll(checks: list[FreshnessCheck]) -> list[FreshnessResult]:
        polls.append(await poll(checks))
        return polls[-1]

    trigger._poll = counting_poll  # type: ignore[method-assign]

    async def scenario() -> list[Any]:
        running = asyncio.create_task(_events(trigger))
        while len(polls) < 2:  # seen stale at least twice
            await asyncio.sleep(0.05)
        await asyncio.to_thread(_insert, orders, "1 second")
        return await asyncio.wait_for(running, timeout=10)

    (event,) = asyncio.run(scenario())
    assert event.payload["status"] == "fresh", event.payload
    assert [r.fresh for r in polls[0]] == [False]
    (result,) = event.payload["results"]
    assert result["status"] == "pass" and result["age_seconds"] < 60


def test_a_missing_table_is_an_error_event(warehouse) -> None:  # type: ignore[no-untyped-def]
    check = {**_checks()[0], "schema": "nowhere", "source": "nowhere.orders"}
    (event,) = asyncio.run(_events(_trigger(checks=[check])))
    assert event.payload["status"] == "error"
    assert "nowhere.orders" in event.payload["message"] and "does not exist" in event.payload["message"]


def test_an_unknown_connection_is_an_error_event(warehouse) -> None:  # type: ignore[no-untyped-def]
    (event,) = asyncio.run(_events(_trigger(conn_id="no_such_conn")))
    assert event.payload["status"] == "error"
    assert "no_such_conn" in event.payload["message"]


# -- the sensor's side: defer at once, validate the event ------------------------------------


MANIFEST = {
    "metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json"},
    "nodes": {},
    "sources": {
        "source.shop.shop_raw.orders": {
            "unique_id": "source.shop.shop_raw.orders", "resource_type": "source", "source_name": "shop_raw",
            "name": "orders", "package_name": "shop", "schema": "shop_raw", "identifier": "orders",
            "loaded_at_field": "loaded_at",
            "freshness": {"warn_after": {"count": None, "period": None}, "error_after": {"count": 1, "period": "hour"}},
        }
    },
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "manifest.json").write_text(json.dumps(MANIFEST))
    return tmp_path


def _sensor(project: Path, **kwargs: Any) -> Any:
    from airflow_osds.sensors.dbt import DbtSourceFreshnessSensor

    return DbtSourceFreshnessSensor(task_id="wait", project_dir=str(project), sources=["shop_raw.orders"], **kwargs)


def test_the_constructor_reads_nothing(tmp_path: Path) -> None:
    sensor = _sensor(tmp_path / "missing", deferrable=True)
    assert sensor.deferrable is True and sensor.project_dir.endswith("missing")


def test_deferrable_sensor_defers_at_once_without_secrets(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.exceptions import TaskDeferred

    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", json.dumps({"conn_type": "postgres", "host": "h", "password": "s3cret-pw"}))
    sensor = _sensor(project, deferrable=True, poke_interval=5, timeout=120)
    before = time.time()
    with pytest.raises(TaskDeferred) as info:
        sensor.execute(context={})
    deferred = info.value
    assert deferred.method_name == "execute_complete"
    assert deferred.timeout.total_seconds() > 120  # a backstop behind the trigger's own deadline
    classpath, kwargs = deferred.trigger.serialize()
    assert classpath == CLASSPATH
    assert kwargs["checks"] == _checks() and kwargs["poke_interval"] == 5 and kwargs["conn_id"] == "warehouse"
    assert before + 120 <= kwargs["end_time"] <= time.time() + 120
    assert "s3cret-pw" not in json.dumps(kwargs)


def test_a_missing_manifest_fails_without_retry(tmp_path: Path) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match="manifest not found"):
        _sensor(tmp_path, deferrable=True).execute(context={})


STALE = FreshnessResult("shop_raw.orders", "error", False, 7500.0, "2026-05-01T10:00:00+00:00", "error_after 1 hour")
FRESH = FreshnessResult("shop_raw.orders", "pass", True, 5.0, "2026-05-01T12:00:00+00:00", None)


def test_execute_complete_returns_the_results_when_fresh(project: Path) -> None:
    event = freshness_event("fresh", "1 source(s) fresh", [FRESH]).payload
    assert _sensor(project).execute_complete({}, event) == [FRESH.to_dict()]


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        ("timeout", "1 of 1 source(s) still stale",
         "dbt sources still not fresh after 60 s: shop_raw.orders: error, 2 h 5 min old (over error_after 1 hour)"),
        ("error", "OperationalError: connection refused", "dbt source freshness check failed: OperationalError: connection refused"),
    ],
)
def test_execute_complete_fails_naming_each_stale_source(project: Path, status: str, message: str, expected: str) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_osds.sensors.dbt import DbtSourcesNotFreshError

    results = [STALE] if status == "timeout" else []
    with pytest.raises(DbtSourcesNotFreshError) as info:
        _sensor(project, timeout=60).execute_complete({}, freshness_event(status, message, results).payload)
    assert isinstance(info.value, AirflowFailException)  # no retry
    assert str(info.value) == expected
    assert (info.value.status, info.value.stale) == (status, tuple(results))


@pytest.mark.parametrize("event", [None, {}, {"status": "stale"}, ["fresh"]])
def test_execute_complete_rejects_events_outside_the_closed_set(project: Path, event: Any) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match="unexpected trigger event"):
        _sensor(project).execute_complete({}, event)
    assert "fresh" in TRIGGER_STATUSES


def test_poke_mode_uses_the_same_checks(orders, project: Path) -> None:  # type: ignore[no-untyped-def]
    sensor = _sensor(project, deferrable=False)
    _insert(orders, "2 hours")
    stale = sensor.poke(context={})
    assert stale.is_done is False and stale.xcom_value[0]["threshold"] == "error_after 1 hour"
    _insert(orders, "1 minute")
    fresh = sensor.poke(context={})
    assert fresh.is_done is True and fresh.xcom_value[0]["status"] == "pass"
