"""Planning a pipeline: derived data, groups, `after`, imports and cycles — each error located."""

from __future__ import annotations

from airflow_osds.assets import TableRef

from .conftest import errors_of


def test_data_edges_come_from_the_sql(write, project) -> None:
    write("p.yml", """\
        pipeline: p
        steps:
          aggregate:
            sql: INSERT INTO marts.daily SELECT d, count(*) FROM raw.orders GROUP BY d
          load:
            sql: INSERT INTO raw.orders SELECT * FROM landing.orders
          report:
            sql: SELECT * FROM marts.daily
    """)
    plan = project().plans["p"]
    assert plan.upstream == {"aggregate": {"load"}, "load": set(), "report": {"aggregate"}}
    assert plan.steps["load"].reads == {TableRef("warehouse", "landing", "orders")}
    assert plan.writes == {TableRef("warehouse", "raw", "orders"), TableRef("warehouse", "marts", "daily")}
    assert plan.external_reads == {TableRef("warehouse", "landing", "orders")}


def test_explicit_reads_writes_replace_derived(write, project) -> None:
    write("p.yml", """\
        pipeline: p
        defaults: {warehouse: dwh}
        steps:
          a:
            python: {callable: json.dumps, kwargs: {obj: 1}}
            writes: [raw.blob, "other:x.y"]
          b:
            sql: SELECT * FROM raw.blob
            reads: []
    """)
    plan = project().plans["p"]
    assert plan.steps["a"].writes == {TableRef("dwh", "raw", "blob"), TableRef("other", "x", "y")}
    assert plan.steps["b"].reads == frozenset()
    assert plan.upstream["b"] == set()


def test_groups_prefix_ids_inherit_settings_and_resolve_short_names(write, project) -> None:
    write("p.yml", """\
        pipeline: p
        defaults: {retries: 1, warehouse: dwh}
        steps:
          first:
            sql: SELECT 1
          staging:
            retries: 3
            after: [first]
            group:
              tooltip: staging models
              steps:
                a: {sql: "CREATE TABLE IF NOT EXISTS s.a AS SELECT 1"}
                b: {sql: "SELECT 2", after: [a], retries: 0}
          last:
            sql: SELECT 3
            after: [staging]
    """)
    plan = project().plans["p"]
    assert list(plan.steps) == ["first", "staging", "staging.a", "staging.b", "last"]
    assert plan.steps["staging.a"].settings["retries"] == 3
    assert plan.steps["staging.b"].settings["retries"] == 0
    assert plan.steps["first"].settings["retries"] == 1
    assert plan.upstream["staging.b"] == {"staging.a"}
    assert plan.upstream["staging"] == {"first"}
    assert plan.upstream["last"] == {"staging"}
    assert plan.steps["staging"].children == ["staging.a", "staging.b"]


def test_after_names_an_unknown_step(write, project) -> None:
    write("p.yml", """\
        pipeline: p
        steps:
          a: {sql: SELECT 1}
          b:
            sql: SELECT 2
            after: [aa]
    """)
    assert errors_of(project()) == ["p.yml:6:13: `aa` names no step; steps are: a (steps.b.after.0)"]


def test_after_itself(write, project) -> None:
    write("p.yml", "pipeline: p\nsteps:\n  a: {sql: SELECT 1, after: [a]}\n")
    assert errors_of(project()) == ["p.yml:3:30: `a` cannot run after itself or its own group (steps.a.after.0)"]


def test_cycle_is_reported_with_the_steps(write, project) -> None:
    write("p.yml", """\
        pipeline: p
        steps:
          a: {sql: "INSERT INTO s.x SELECT * FROM s.y"}
          b: {sql: "INSERT INTO s.y SELECT * FROM s.x"}
    """)
    (error,) = errors_of(project())
    assert error.startswith("p.yml:3:3: steps form a cycle: ")
    assert "a → b" in error or "b → a" in error
    assert "state the intended order with `after:`" in error


def test_after_orders_two_steps_that_read_and_write_the_same_table(write, project) -> None:
    write("p.yml", """\
        pipeline: p
        steps:
          create: {sql: "CREATE TABLE IF NOT EXISTS s.t AS SELECT 1 AS n; INSERT INTO s.t SELECT n FROM s.t"}
          bump: {sql: "INSERT INTO s.t SELECT n + 1 FROM s.t", after: [create]}
    """)
    plan = project().plans["p"]
    assert plan.upstream == {"create": set(), "bump": {"create"}}


def test_missing_sql_file_and_bad_imports_are_located(write, project) -> None:
    write("p.yml", """\
        pipeline: p
        callbacks:
          on_failure: [no_such_module.notify]
        steps:
          a:
            sql: {file: sql/missing.sql}
          b:
            python: {callable: json.no_such_function}
          c:
            operator: {class: airflow_osds.nothing.Here}
    """)
    errors = errors_of(project())
    assert any(e.startswith("p.yml:6:17: cannot read ") and "missing.sql" in e for e in errors), errors
    assert "p.yml:8:24: module `json` has no attribute `no_such_function` (from `json.no_such_function`) (steps.b.python.callable)" in errors
    assert any(e.startswith("p.yml:10:23: cannot import module `airflow_osds.nothing`") for e in errors), errors
    assert any(e.startswith("p.yml:3:16: cannot import module `no_such_module`") for e in errors), errors


def test_expand_from_creates_an_edge_and_must_name_a_step(write, project) -> None:
    write("p.yml", """\
        pipeline: p
        steps:
          list_files:
            python: {callable: os.listdir, kwargs: {path: /}}
          each:
            python:
              callable: os.path.basename
              expand: {p: {from: list_files}}
          bad:
            python:
              callable: os.path.basename
              expand: {p: {from: nope}}
    """)
    proj = project()
    assert "p.yml:12:15: `nope` names no step; steps are: list_files, each (steps.bad.python.expand)" in errors_of(proj)


def test_data_condition_tables_are_checked(write, project) -> None:
    write("p.yml", """\
        pipeline: p
        schedule: {data: {any_of: [raw.a, "x.y.z"]}}
        steps:
          a: {sql: SELECT 1}
    """)
    (error,) = errors_of(project())
    assert error.startswith("p.yml:2:35: 'x.y.z' is not a table name")
