"""The SQL scanner finds the tables a script reads and writes, and nothing else."""

from __future__ import annotations

import pytest

from airflow_osds.factory.sqlscan import scan_sql, split_statements

CASES = [
    ("INSERT INTO raw.orders SELECT * FROM staging.orders", {"staging.orders"}, {"raw.orders"}),
    ("insert into Analytics.Daily (d, n) select d, count(*) from raw.orders o join raw.customers c on c.id = o.cid group by d",
     {"raw.orders", "raw.customers"}, {"analytics.daily"}),
    ("CREATE TABLE IF NOT EXISTS a.b AS SELECT 1 FROM c.d, e.f AS ff, g", {"c.d", "e.f", "g"}, {"a.b"}),
    ("CREATE OR REPLACE VIEW marts.v AS SELECT * FROM marts.t", {"marts.t"}, {"marts.v"}),
    ("CREATE MATERIALIZED VIEW IF NOT EXISTS m.v AS SELECT 1 FROM x.y", {"x.y"}, {"m.v"}),
    ("REFRESH MATERIALIZED VIEW m.v", set(), {"m.v"}),
    ("UPDATE s.t SET a = u.a FROM s.u u WHERE u.id = s.t.id", {"s.u"}, {"s.t"}),
    ("DELETE FROM s.t USING s.gone g WHERE g.id = s.t.id", {"s.gone"}, {"s.t"}),
    ("TRUNCATE TABLE s.t", set(), {"s.t"}),
    ("MERGE INTO s.t USING s.src ON s.t.id = s.src.id WHEN MATCHED THEN UPDATE SET a = 1", {"s.src"}, {"s.t"}),
    ("COPY s.t FROM STDIN WITH (FORMAT csv)", set(), {"s.t"}),
    ("WITH recent AS (SELECT * FROM raw.orders WHERE ts > now()), big AS (SELECT * FROM recent) "
     "INSERT INTO marts.big SELECT * FROM big", {"raw.orders"}, {"marts.big"}),
    ("SELECT extract(day FROM ordered_at), substring(name FROM 2 FOR 3), trim(both FROM x) FROM raw.orders",
     {"raw.orders"}, set()),
    ("SELECT * FROM generate_series(1, 10) g", set(), set()),
    ("SELECT * FROM (SELECT * FROM inner_t) sub JOIN LATERAL (SELECT 1) l ON true", {"inner_t"}, set()),
    ("SELECT array(SELECT id FROM s.ids)", {"s.ids"}, set()),
    ("SELECT * FROM a WHERE x IS DISTINCT FROM y AND z IN (SELECT z FROM b)", {"a", "b"}, set()),
    ('INSERT INTO "Raw"."Orders" SELECT 1', set(), {"Raw.Orders"}),
    ("CREATE TEMP TABLE tmp AS SELECT * FROM raw.a; INSERT INTO raw.b SELECT * FROM tmp", {"raw.a"}, {"raw.b"}),
    ("-- FROM commented.out\nSELECT 'FROM not.a_table' FROM real.t /* JOIN no.t */", {"real.t"}, set()),
    ("CREATE FUNCTION f() RETURNS int AS $$ SELECT 1 FROM hidden.t $$ LANGUAGE sql", set(), set()),
    ("CREATE SCHEMA IF NOT EXISTS raw; CREATE INDEX i ON raw.t (a)", set(), set()),
    ("INSERT INTO {{ params.target }} SELECT * FROM raw.src WHERE d = '{{ ds }}'", {"raw.src"}, set()),
    ("SELECT * FROM db.schema.table_x", {"schema.table_x"}, set()),
    ("INSERT INTO t SELECT * FROM t", {"t"}, {"t"}),
]


@pytest.mark.parametrize(("sql", "reads", "writes"), CASES, ids=[c[0][:40] for c in CASES])
def test_scan(sql: str, reads: set[str], writes: set[str]) -> None:
    io = scan_sql(sql)
    assert (io.reads, io.writes) == (reads, writes)


def test_demo_sql_files() -> None:
    from pathlib import Path

    sql_dir = Path(__file__).resolve().parents[3] / "include" / "pipelines" / "sql"
    load = scan_sql((sql_dir / "load_orders.sql").read_text())
    assert (load.reads, load.writes) == (set(), {"raw.orders"})
    daily = scan_sql((sql_dir / "orders_daily.sql").read_text())
    assert (daily.reads, daily.writes) == ({"raw.orders"}, {"analytics.orders_daily"})


def test_split_statements_respects_strings_comments_and_dollar_quotes() -> None:
    sql = "SELECT ';'; -- a ; comment\nCREATE FUNCTION f() AS $body$ SELECT 1; $body$;\n\n;  "
    assert split_statements(sql) == ["SELECT ';'", "-- a ; comment\nCREATE FUNCTION f() AS $body$ SELECT 1; $body$"]
