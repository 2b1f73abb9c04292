"""The source freshness engine, against a manifest from real `dbt parse` and a real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from airflow_osds.dbt.artifacts import FreshnessThreshold, FreshnessTime, Manifest, SourceNode
from airflow_osds.dbt.freshness import (
    DbtFreshnessError,
    FreshnessCheck,
    check_freshness,
    format_age,
    freshness_checks,
)
from airflow_osds.exceptions import OsdsError

from .conftest import DATA

UTC = dt.timezone.utc

# The fixture project's sources, with freshness added the ways dbt allows: at source level,
# overridden per table (one threshold, the other inherited), opted out, and absent.
SOURCES_YML = """\
version: 2
sources:
  - name: snowplow
    schema: atomic
    config:
      loaded_at_field: collector_tstamp
      freshness:
        warn_after: {count: 12, period: hour}
        error_after: {count: 1, period: day}
    tables:
      - name: events
        identifier: events
      - name: pings
        config:
          freshness:
            error_after: {count: 30, period: minute}
            filter: "kind <> 'test'"
      - name: legacy
        identifier: Legacy_Events
        quoting: {identifier: false}
        config:
          loaded_at_field: "date_trunc('day', old_ts)"
      - name: opted_out
        config:
          freshness: null
  - name: crm
    schema: crm
    tables:
      - name: accounts
"""


# Overrides conftest's `manifest` (the committed fixture manifest, which has no freshness config).
@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    from airflow_osds.dbt.manifest_build import parse_project

    project = tmp_path_factory.mktemp("freshness") / "project"
    shutil.copytree(DATA / "project", project, ignore=shutil.ignore_patterns("target", "logs"))
    (project / "models" / "sources.yml").write_text(SOURCES_YML)
    return Manifest.from_path(parse_project(project))


def sql_text(check: FreshnessCheck) -> str:
    return check.query().as_string()


class TestManifestRecords:
    def test_real_manifest_carries_loaded_at_field_and_merged_thresholds(self, manifest: Manifest) -> None:
        events = manifest.sources["source.shop.snowplow.events"]
        assert events.loaded_at_field == "collector_tstamp"
        assert events.freshness == FreshnessThreshold(FreshnessTime(12, "hour"), FreshnessTime(1, "day"))
        # The table's error_after wins; its warn_after is the source's.
        pings = manifest.sources["source.shop.snowplow.pings"]
        assert pings.freshness == FreshnessThreshold(FreshnessTime(12, "hour"), FreshnessTime(30, "minute"), "kind <> 'test'")
        legacy = manifest.sources["source.shop.snowplow.legacy"]
        assert (legacy.loaded_at_field, legacy.identifier, legacy.quote_identifier) == (
            "date_trunc('day', old_ts)", "Legacy_Events", False
        )
        assert manifest.sources["source.shop.snowplow.opted_out"].freshness is None
        accounts = manifest.sources["source.shop.crm.accounts"]
        assert (accounts.loaded_at_field, accounts.freshness) == (None, None)  # dbt writes null thresholds

    @pytest.mark.parametrize("where", ["top", "config"])
    def test_plain_dicts_with_the_fields_at_top_level_or_in_config(self, where: str) -> None:
        fields = {"loaded_at_field": "ts", "freshness": {"warn_after": {"count": 2, "period": "day"}, "error_after": None}}
        d = {"unique_id": "source.p.s.t", "source_name": "s", "name": "t", "schema": "raw"}
        d.update(fields if where == "top" else {"config": fields})
        node = SourceNode.from_dict(d)
        assert (node.loaded_at_field, node.freshness) == ("ts", FreshnessThreshold(FreshnessTime(2, "day"), None))
        assert SourceNode.from_dict({"unique_id": "source.p.s.t", "source_name": "s", "name": "t"}).freshness is None


class TestChecksFromTheManifest:
    def test_a_table_by_name_selector_or_unique_id(self, manifest: Manifest) -> None:
        by_name = freshness_checks(manifest, ["snowplow.events"])
        assert by_name == freshness_checks(manifest, "source:snowplow.events")
        assert by_name == freshness_checks(manifest, ["source.shop.snowplow.events"])
        (check,) = by_name
        assert check.to_dict() == {
            "source": "snowplow.events", "unique_id": "source.shop.snowplow.events", "schema": "atomic",
            "table": "events", "loaded_at_field": "collector_tstamp", "loaded_at_column": "collector_tstamp",
            "filter": None, "warn_after": {"count": 12, "period": "hour"}, "error_after": {"count": 1, "period": "day"},
        }

    def test_a_whole_source_skips_tables_without_freshness_as_dbt_does(self, manifest: Manifest) -> None:
        checks = freshness_checks(manifest, "source:snowplow snowplow.events")  # duplicates collapse
        assert [c.source for c in checks] == ["snowplow.events", "snowplow.pings", "snowplow.legacy"]

    def test_named_tables_that_cannot_be_checked_are_errors_naming_each(self, manifest: Manifest) -> None:
        with pytest.raises(DbtFreshnessError) as info:
            freshness_checks(manifest, ["snowplow.events", "snowplow.opted_out", "crm.accounts"])
        assert isinstance(info.value, OsdsError)
        assert info.value.sources == ("snowplow.opted_out", "crm.accounts")
        assert "snowplow.opted_out: no freshness thresholds (set freshness.warn_after" in str(info.value)
        assert "crm.accounts: no loaded_at_field" in str(info.value)

    def test_a_source_with_nothing_to_check_is_an_error(self, manifest: Manifest) -> None:
        with pytest.raises(DbtFreshnessError, match="crm.accounts: no loaded_at_field") as info:
            freshness_checks(manifest, "source:crm")
        assert info.value.sources == ("crm.accounts",)

    @pytest.mark.parametrize(
        ("selector", "message"),
        [
            ("snowplow.event", "matches no source of the manifest; did you mean 'snowplow.events'"),
            ("source:snowplow+", "graph operators and other methods do not apply"),
            ("tag:daily", "graph operators and other methods do not apply"),
        ],
    )
    def test_bad_selectors(self, manifest: Manifest, selector: str, message: str) -> None:
        with pytest.raises(DbtFreshnessError, match=message) as info:
            freshness_checks(manifest, [selector])
        assert info.value.sources == (selector,)

    def test_nothing_selected(self, manifest: Manifest) -> None:
        with pytest.raises(DbtFreshnessError, match="no source given"):
            freshness_checks(manifest, [])

    def test_checks_survive_json(self, manifest: Manifest) -> None:
        checks = freshness_checks(manifest, "source:snowplow")
        assert tuple(FreshnessCheck.from_dict(json.loads(json.dumps(c.to_dict()))) for c in checks) == checks


class TestQuery:
    def test_identifiers_are_quoted(self, manifest: Manifest) -> None:
        (events,) = freshness_checks(manifest, "snowplow.events")
        assert sql_text(events) == (
            'SELECT max("collector_tstamp") AS max_loaded_at, now() AS snapshotted_at FROM "atomic"."events"'
        )

    def test_filter_and_expression_are_used_as_written_and_unquoted_names_folded(self, manifest: Manifest) -> None:
        pings, legacy = freshness_checks(manifest, "snowplow.pings snowplow.legacy")
        assert sql_text(pings).endswith('FROM "atomic"."pings" WHERE (kind <> \'test\')')
        # quoting.identifier: false -> PostgreSQL folds Legacy_Events; the expression is dbt's raw SQL.
        assert sql_text(legacy) == (
            "SELECT max(date_trunc('day', old_ts)) AS max_loaded_at, now() AS snapshotted_at FROM \"atomic\".\"legacy_events\""
        )

    def test_hostile_names_stay_identifiers(self) -> None:
        check = _check(schema='we"ird', table="t; drop table x", column='a"b')
        assert sql_text(check) == (
            'SELECT max("a""b") AS max_loaded_at, now() AS snapshotted_at FROM "we""ird"."t; drop table x"'
        )


def _check(*, schema: str = "raw", table: str = "t", column: str | None = "ts",
           warn: FreshnessTime | None = FreshnessTime(12, "hour"),
           error: FreshnessTime | None = FreshnessTime(1, "day")) -> FreshnessCheck:
    return FreshnessCheck(
        source="raw.t", unique_id="source.p.raw.t", schema=schema, table=table, loaded_at_field=column or "x",
        loaded_at_column=column, filter=None, warn_after=warn, error_after=error,
    )


NOW = dt.datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
HOUR = 3600


class TestDecision:
    @pytest.mark.parametrize(
        ("age_s", "status", "threshold"),
        [
            (0, "pass", None),
            (12 * HOUR, "pass", None),  # equal to the threshold passes, as in dbt
            (12 * HOUR + 1, "warn", "warn_after 12 hours"),
            (24 * HOUR + 1, "error", "error_after 1 day"),
            (-60, "pass", None),  # a load time in the future (clock skew) is fresh
        ],
    )
    def test_dbt_statuses(self, age_s: int, status: str, threshold: str | None) -> None:
        result = _check().evaluate(NOW - dt.timedelta(seconds=age_s), NOW)
        assert (result.status, result.threshold, result.fresh) == (status, threshold, status == "pass")
        assert result.age_seconds == age_s

    def test_allow_warn_makes_only_error_after_matter(self) -> None:
        assert _check().evaluate(NOW - dt.timedelta(hours=13), NOW, allow_warn=True).fresh
        assert not _check().evaluate(NOW - dt.timedelta(hours=25), NOW, allow_warn=True).fresh

    def test_a_single_threshold(self) -> None:
        only_warn = _check(error=None)
        assert only_warn.evaluate(NOW - dt.timedelta(days=30), NOW).status == "warn"

    def test_naive_timestamps_are_utc_and_dates_are_midnight(self) -> None:
        naive = _check().evaluate(dt.datetime(2026, 5, 1, 11, 0), NOW)
        assert (naive.age_seconds, naive.max_loaded_at) == (HOUR, "2026-05-01T11:00:00+00:00")
        other_zone = dt.datetime(2026, 5, 1, 13, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
        assert _check().evaluate(other_zone, NOW).age_seconds == HOUR
        assert _check().evaluate(dt.date(2026, 4, 30), NOW).age_seconds == 36 * HOUR

    def test_a_loaded_at_field_that_is_no_timestamp_names_the_source(self) -> None:
        with pytest.raises(DbtFreshnessError, match="returned int 1700000000, not a timestamp") as info:
            _check().evaluate(1_700_000_000, NOW)
        assert info.value.sources == ("raw.t",)

    def test_no_row_is_an_error_without_age(self) -> None:
        result = _check().evaluate(None, NOW)
        assert (result.status, result.fresh, result.age_seconds) == ("error", False, None)
        assert result.describe() == "raw.t: error, has no row with a load time"

    def test_describe(self) -> None:
        result = _check().evaluate(NOW - dt.timedelta(days=2, hours=3, minutes=4), NOW)
        assert result.describe() == "raw.t: error, 2 d 3 h old (over error_after 1 day)"

    @pytest.mark.parametrize(("seconds", "text"), [(45, "45 s"), (725, "12 min 5 s"), (3 * HOUR, "3 h"), (90061, "1 d 1 h")])
    def test_format_age(self, seconds: float, text: str) -> None:
        assert format_age(seconds) == text


class TestAgainstPostgres:
    def test_check_freshness(self, warehouse, manifest: Manifest) -> None:  # type: ignore[no-untyped-def]
        with warehouse.stack.postgres.connect(warehouse.dbname, autocommit=True) as conn:
            conn.execute(textwrap.dedent("""\
                CREATE SCHEMA atomic;
                CREATE TABLE atomic.events (collector_tstamp timestamp);
                INSERT INTO atomic.events VALUES (now() AT TIME ZONE 'UTC' - interval '2 hours');
                CREATE TABLE atomic.pings (collector_tstamp timestamptz, kind text);
                INSERT INTO atomic.pings VALUES (now(), 'test'), (now() - interval '45 minutes', 'real');
                CREATE TABLE atomic.legacy_events (old_ts timestamptz);
            """))
            results = check_freshness(conn, freshness_checks(manifest, "source:snowplow"))
        events, pings, legacy = results
        assert (events.status, events.fresh) == ("pass", True)
        assert 2 * HOUR - 60 < events.age_seconds < 2 * HOUR + 60  # naive timestamps are read as UTC
        # The filter drops the fresh 'test' row: 45 minutes is over the table's error_after.
        assert (pings.status, pings.threshold) == ("error", "error_after 30 minutes")
        assert (legacy.status, legacy.age_seconds) == ("error", None)

    def test_a_missing_table_names_the_source(self, warehouse, manifest: Manifest) -> None:  # type: ignore[no-untyped-def]
        with warehouse.stack.postgres.connect(warehouse.dbname, autocommit=True) as conn:
            with pytest.raises(DbtFreshnessError) as info:
                check_freshness(conn, [_check(schema="nowhere", table="t")])
        assert info.value.sources == ("raw.t",)
        assert 'the freshness query on nowhere.t failed: relation "nowhere.t" does not exist' in str(info.value)


def test_connect_kwargs_take_libpq_extras_only() -> None:
    from airflow_osds.dbt.freshness import APPLICATION_NAME
    from airflow_osds.postgres import connect_kwargs

    kwargs = connect_kwargs(
        host="/tmp/socket", port="5433", login="etl", password="", dbname="wh",
        extra={"sslmode": "require", "dbt_schema": "analytics", "connect_timeout": 3}, application_name=APPLICATION_NAME,
    )
    assert kwargs == {
        "host": "/tmp/socket", "port": 5433, "user": "etl", "dbname": "wh", "connect_timeout": 3,
        "application_name": "airflow-osds source freshness", "sslmode": "require",
    }


def test_engine_imports_without_airflow_or_dbt() -> None:
    code = textwrap.dedent("""\
        import sys
        class _Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("airflow", "dbt", "pydantic", "psycopg"):
                    raise ImportError(f"blocked: {name}")
        sys.meta_path.insert(0, _Block())
        import airflow_osds.dbt.freshness
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[3])
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
