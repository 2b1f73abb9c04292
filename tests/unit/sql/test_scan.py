"""The SQL scanner finds the tables a script reads and writes, and nothing else."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import airflow_osds.sql
from airflow_osds.sql import SqlIO, TableName, scan_sql, split_statements

SQL_DIR = Path(__file__).resolve().parents[3] / "include" / "pipelines" / "sql"


def t(name: str) -> TableName:
    """``"s.t"`` → ``TableName("s", "t")`` and ``"t"`` → ``TableName(None, "t")`` (no quoting)."""
    schema, _, table = name.rpartition(".")
    return TableName(schema or None, table)


def case(sql: str, reads: tuple[str, ...] = (), writes: tuple[str, ...] = (), unparsed: tuple[str, ...] = ()) -> Any:
    expected = SqlIO(frozenset(map(t, reads)), frozenset(map(t, writes)), unparsed)
    return pytest.param(sql, expected, id=" ".join(sql.split())[:60])


CASES = [
    # Ported from tests/unit/factory/test_sqlscan.py (the hand-written tokenizer's cases).
    case("INSERT INTO raw.orders SELECT * FROM staging.orders", ("staging.orders",), ("raw.orders",)),
    case(
        "insert into Analytics.Daily (d, n) select d, count(*) from raw.orders o "
        "join raw.customers c on c.id = o.cid group by d",
        ("raw.orders", "raw.customers"),
        ("analytics.daily",),
    ),
    case("CREATE TABLE IF NOT EXISTS a.b AS SELECT 1 FROM c.d, e.f AS ff, g", ("c.d", "e.f", "g"), ("a.b",)),
    case("CREATE OR REPLACE VIEW marts.v AS SELECT * FROM marts.t", ("marts.t",), ("marts.v",)),
    case("CREATE MATERIALIZED VIEW IF NOT EXISTS m.v AS SELECT 1 FROM x.y", ("x.y",), ("m.v",)),
    case("REFRESH MATERIALIZED VIEW m.v", (), ("m.v",)),
    case("UPDATE s.t SET a = u.a FROM s.u u WHERE u.id = s.t.id", ("s.u",), ("s.t",)),
    case("DELETE FROM s.t USING s.gone g WHERE g.id = s.t.id", ("s.gone",), ("s.t",)),
    case("TRUNCATE TABLE s.t", (), ("s.t",)),
    case("MERGE INTO s.t USING s.src ON s.t.id = s.src.id WHEN MATCHED THEN UPDATE SET a = 1", ("s.src",), ("s.t",)),
    case("COPY s.t FROM STDIN WITH (FORMAT csv)", (), ("s.t",)),
    case(
        "WITH recent AS (SELECT * FROM raw.orders WHERE ts > now()), big AS (SELECT * FROM recent) "
        "INSERT INTO marts.big SELECT * FROM big",
        ("raw.orders",),
        ("marts.big",),
    ),
    case(
        "SELECT extract(day FROM ordered_at), substring(name FROM 2 FOR 3), trim(both FROM x) FROM raw.orders",
        ("raw.orders",),
    ),
    case("SELECT * FROM generate_series(1, 10) g"),
    case("SELECT * FROM (SELECT * FROM inner_t) sub JOIN LATERAL (SELECT 1) l ON true", ("inner_t",)),
    case("SELECT array(SELECT id FROM s.ids)", ("s.ids",)),
    case("SELECT * FROM a WHERE x IS DISTINCT FROM y AND z IN (SELECT z FROM b)", ("a", "b")),
    case('INSERT INTO "Raw"."Orders" SELECT 1', (), ("Raw.Orders",)),
    case("CREATE TEMP TABLE tmp AS SELECT * FROM raw.a; INSERT INTO raw.b SELECT * FROM tmp", ("raw.a",), ("raw.b",)),
    case("-- FROM commented.out\nSELECT 'FROM not.a_table' FROM real.t /* JOIN no.t */", ("real.t",)),
    case("CREATE FUNCTION f() RETURNS int AS $$ SELECT 1 FROM hidden.t $$ LANGUAGE sql"),
    case("CREATE SCHEMA IF NOT EXISTS raw; CREATE INDEX i ON raw.t (a)"),
    case("INSERT INTO {{ params.target }} SELECT * FROM raw.src WHERE d = '{{ ds }}'", ("raw.src",)),
    case("SELECT * FROM db.schema.table_x", ("schema.table_x",)),
    case("INSERT INTO t SELECT * FROM t", ("t",), ("t",)),
    # Writes.
    case("CREATE TABLE IF NOT EXISTS raw.orders (id integer PRIMARY KEY, amount numeric(10, 2))", (), ("raw.orders",)),
    case("CREATE TABLE s.copy (LIKE s.orig INCLUDING ALL)", (), ("s.copy",)),
    case("CREATE VIEW v (a) AS SELECT 1 FROM w", ("w",), ("v",)),
    case("CREATE MATERIALIZED VIEW m.v AS SELECT * FROM x.y WITH NO DATA", ("x.y",), ("m.v",)),
    case("CREATE MATERIALIZED VIEW IF NOT EXISTS m.v AS SELECT * FROM x.y WITH DATA", ("x.y",), ("m.v",)),
    case('REFRESH MATERIALIZED VIEW CONCURRENTLY "M".v WITH NO DATA', (), ("M.v",)),
    case("TRUNCATE s.t, ONLY s.u RESTART IDENTITY CASCADE", (), ("s.t", "s.u")),
    case("DELETE FROM ONLY s.t AS x WHERE x.id IN (SELECT id FROM s.gone)", ("s.gone",), ("s.t",)),
    case(
        "MERGE INTO s.t USING (SELECT * FROM s.src) x ON s.t.id = x.id WHEN MATCHED THEN DELETE "
        "WHEN NOT MATCHED THEN INSERT (id, a) VALUES (x.id, 1)",
        ("s.src",),
        ("s.t",),
    ),
    case("INSERT INTO t (a) SELECT a FROM s ON CONFLICT (a) DO UPDATE SET a = EXCLUDED.a", ("s",), ("t",)),
    case("UPDATE s.t SET n = prev.n + 1 FROM s.t AS prev WHERE prev.id = s.t.id - 1", ("s.t",), ("s.t",)),
    case("UPDATE s.t SET a = (SELECT max(b) FROM s.u) RETURNING *", ("s.u",), ("s.t",)),
    case(
        "WITH gone AS (DELETE FROM q.inbox RETURNING *) INSERT INTO q.archive SELECT * FROM gone",
        (),
        ("q.inbox", "q.archive"),
    ),
    case("SELECT * INTO s.copy FROM s.a", ("s.a",), ("s.copy",)),
    case("INSERT INTO db.s.t SELECT * FROM db.s.u", ("s.u",), ("s.t",)),
    # COPY: FROM loads the table, TO reads it.
    case("COPY s.t (a, b) FROM '/tmp/x.csv' WITH (FORMAT csv, HEADER)", (), ("s.t",)),
    case("COPY s.t TO STDOUT", ("s.t",)),
    case("COPY (SELECT * FROM s.t JOIN s.u USING (id)) TO STDOUT WITH (FORMAT csv)", ("s.t", "s.u")),
    # Row locks name no new table (the tokenizer reported writes to "public.skip" and "of").
    case("SELECT id FROM jobs.queue WHERE state = 'new' LIMIT 1 FOR UPDATE SKIP LOCKED", ("jobs.queue",)),
    case("SELECT * FROM a JOIN b ON a.id = b.id FOR UPDATE OF b", ("a", "b")),
    case("SELECT * FROM a FOR SHARE NOWAIT", ("a",)),
    case("SELECT * FROM s.a x JOIN s.b y ON x.id = y.id FOR NO KEY UPDATE OF x NOWAIT", ("s.a", "s.b")),
    # Reads: CTE scoping, functions, LATERAL.
    case("WITH orders AS (SELECT * FROM orders WHERE ok) SELECT * FROM orders", ("orders",)),
    case("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT * FROM r"),
    case("WITH t AS (SELECT 1) SELECT * FROM s.t, t", ("s.t",)),
    case("WITH c AS (SELECT * FROM x.a) SELECT * FROM x.b WHERE id IN (SELECT id FROM c)", ("x.a", "x.b")),
    case("SELECT * FROM s.t, LATERAL unnest(t.arr) u, LATERAL (SELECT * FROM s.u WHERE u.id = t.id) l", ("s.t", "s.u")),
    case("SELECT * FROM s.my_srf(1) f JOIN s.t ON true", ("s.t",)),
    case("SELECT d FROM generate_series('2026-01-01'::date, '2026-01-31', '1 day') d JOIN s.t ON t.d = d", ("s.t",)),
    case("SELECT * FROM a WHERE x IS NOT DISTINCT FROM y", ("a",)),
    case("SELECT * FROM ONLY s.t TABLESAMPLE SYSTEM (10)", ("s.t",)),
    case("TABLE s.t", ("s.t",)),
    # Temporary tables hide same-named tables, from their creation on.
    case("CREATE TEMP TABLE stage (id int); COPY stage FROM STDIN; INSERT INTO s.t SELECT * FROM stage", (), ("s.t",)),
    case("SELECT * INTO TEMP tmp FROM s.a; INSERT INTO s.b SELECT * FROM tmp", ("s.a",), ("s.b",)),
    case("CREATE TEMPORARY TABLE tmp (a int); INSERT INTO pg_temp.tmp VALUES (1); SELECT * FROM tmp"),
    case("INSERT INTO x SELECT 1; CREATE TEMP TABLE x AS SELECT 2; INSERT INTO x SELECT 3", (), ("x",)),
    # Identifier case.
    case('SELECT * FROM public."Orders" JOIN "public".Orders2 ON true', ("public.Orders", "public.orders2")),
    # Jinja: a placeholder is never reported as a table.
    case("SELECT * FROM raw.t WHERE ds = '{{ ds }}'", ("raw.t",)),
    case("SELECT * FROM {{ params.table }}"),
    case("SELECT * FROM raw.t {% if params.since %}WHERE ts > '{{ params.since }}'{% endif %}", ("raw.t",)),
    case('SELECT * FROM {{ params.schema }}.orders JOIN raw.orders_{{ ds_nodash }} ON true JOIN "{{ x }}" ON true'),
    case("{# reads FROM x.y #}SELECT 1 FROM s.t", ("s.t",)),
    case("{% for n in params.tables %}INSERT INTO raw.{{ n }} SELECT * FROM staging.{{ n }};{% endfor %}"),
    case('INSERT INTO s.t SELECT {{ "it\'s; fine" }} FROM s.u', ("s.u",), ("s.t",)),
    # Dollar-quoted bodies name no tables and do not split; DO is opaque, so the caller is told.
    case(
        "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1 FROM hidden.t; $body$ LANGUAGE sql; SELECT * FROM real.t",
        ("real.t",),
    ),
    case(
        "DO $$ BEGIN INSERT INTO x.y VALUES ('a;b'); END $$; INSERT INTO s.t SELECT 1",
        (),
        ("s.t",),
        ("DO $$ BEGIN INSERT INTO x.y VALUES ('a;b'); END $$",),
    ),
    # Bind parameters and casts.
    case("INSERT INTO s.t (a, b, c, d) VALUES (%s, %(name)s, $1, :name)", (), ("s.t",)),
    case("SELECT x::int FROM s.t WHERE a = %(a)s AND b = :b LIMIT %s", ("s.t",)),
    case("UPDATE s.t SET a = $1 WHERE id = $2", (), ("s.t",)),
    # What cannot be read is reported, never guessed from; utility statements are not noise.
    case(
        "INSERT INTO s.a SELECT 1; THIS IS NOT SQL FROM x.y; INSERT INTO s.b SELECT 2",
        (),
        ("s.a", "s.b"),
        ("THIS IS NOT SQL FROM x.y",),
    ),
    case("CALL s.load_orders(1)", unparsed=("CALL s.load_orders(1)",)),
    case("EXPLAIN ANALYZE INSERT INTO s.t SELECT 1", unparsed=("EXPLAIN ANALYZE INSERT INTO s.t SELECT 1",)),
    case("SELECT * FROM raw.t WHERE ds = '{{ ds }}", unparsed=("SELECT * FROM raw.t WHERE ds = '{{ ds }}",)),
    case("{{ params.statement }}", unparsed=("{{ params.statement }}",)),
    case(
        "VACUUM ANALYZE s.t; CHECKPOINT; SET search_path = raw; CREATE EXTENSION IF NOT EXISTS pgcrypto; "
        "DROP TABLE IF EXISTS s.old; GRANT SELECT ON s.t TO bob; BEGIN; SAVEPOINT a; COMMIT"
    ),
]


@pytest.mark.parametrize(("sql", "expected"), CASES)
def test_scan(sql: str, expected: SqlIO) -> None:
    assert scan_sql(sql) == expected


def test_a_deeply_nested_condition_does_not_hit_the_recursion_limit() -> None:
    sql = "SELECT * FROM s.t WHERE " + " OR ".join(f"a = {i}" for i in range(2000))
    assert scan_sql(sql).reads == {t("s.t")}


def test_demo_sql_files() -> None:
    load = scan_sql((SQL_DIR / "load_orders.sql").read_text())
    assert load == SqlIO(frozenset(), frozenset({t("raw.orders")}), ())
    daily = scan_sql((SQL_DIR / "orders_daily.sql").read_text())
    assert daily == SqlIO(frozenset({t("raw.orders")}), frozenset({t("analytics.orders_daily")}), ())


@pytest.mark.parametrize(
    ("name", "text"),
    [
        (TableName(None, "orders"), "orders"),
        (TableName("public", "Orders"), 'public."Orders"'),
        (TableName("Raw", "Orders"), '"Raw"."Orders"'),
        (TableName("analytics", "order"), 'analytics."order"'),  # a reserved word
        (TableName("s", "int"), 's."int"'),  # quote_ident() quotes column-name keywords too
        (TableName("s", "data_2026"), "s.data_2026"),
        (TableName("s", 'a"b'), 's."a""b"'),
        (TableName("s", "café"), 's."café"'),
        (TableName("s", "price$"), 's."price$"'),
    ],
)
def test_table_name_quotes_only_what_needs_it(name: TableName, text: str) -> None:
    assert str(name) == text


@pytest.mark.parametrize(
    ("sql", "statements"),
    [
        (
            "SELECT ';'; -- a ; comment\nCREATE FUNCTION f() AS $body$ SELECT 1; $body$;\n\n;  ",
            ["SELECT ';'", "-- a ; comment\nCREATE FUNCTION f() AS $body$ SELECT 1; $body$"],
        ),
        ("DO $$ BEGIN PERFORM 1; END $$; SELECT 2", ["DO $$ BEGIN PERFORM 1; END $$", "SELECT 2"]),
        ("SELECT 1 AS \"a;b\"; SELECT E'it\\'s;'", ['SELECT 1 AS "a;b"', "SELECT E'it\\'s;'"]),
        ("SELECT 1 /* a; /* nested; */ b; */; SELECT 2", ["SELECT 1 /* a; /* nested; */ b; */", "SELECT 2"]),
        ("SELECT $1; SELECT %(a)s;", ["SELECT $1", "SELECT %(a)s"]),
        (
            "INSERT INTO t VALUES ('{{ \"a;b\" }}'); SELECT {{ x ~ ';' }} {# ; #}",
            ["INSERT INTO t VALUES ('{{ \"a;b\" }}')", "SELECT {{ x ~ ';' }} {# ; #}"],
        ),
        ("SELECT '__osds_jinja_e0__', '{{ ds }}'; SELECT 2", ["SELECT '__osds_jinja_e0__', '{{ ds }}'", "SELECT 2"]),
        ("  ;; -- only a comment\n/* and another */ ;", []),
        ("", []),
        ("SELECT 'unterminated; SELECT 2", ["SELECT 'unterminated; SELECT 2"]),
    ],
)
def test_split_statements(sql: str, statements: list[str]) -> None:
    assert split_statements(sql) == statements


def test_the_package_imports_neither_airflow_nor_sqlglot() -> None:
    # Operator modules import this package and their import time is measured, so sqlglot
    # must load on the first scan, not on import; and engine code must not need Airflow.
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'airflow':\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import airflow_osds.sql\n"
        "assert 'sqlglot' not in sys.modules, 'sqlglot imported at import time'\n"
        "print(airflow_osds.sql.scan_sql('SELECT 1 FROM s.t').reads)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "TableName(schema='s', table='t')" in result.stdout


def test_exported_members() -> None:
    assert sorted(airflow_osds.sql.__all__) == ["SqlIO", "TableName", "scan_sql", "split_statements"]
    for name in airflow_osds.sql.__all__:
        assert getattr(airflow_osds.sql, name).__module__ == "airflow_osds.sql.scan"
