"""The `reverse_etl` block at parse time: what it reads and writes (the source table, the destination
asset), what it compiles to, and its errors at file:line:column; no connection or network involved."""

from __future__ import annotations

from typing import Any

from airflow_osds.factory.compile import compile_project

from .conftest import errors_of


def _task(project: Any, pipeline: str, step: str) -> Any:
    compiled = compile_project(project)
    return next(n for n in compiled.pipelines[pipeline].nodes if n.id == step)


def _io(project: Any, pipeline: str, step: str) -> tuple[list[str], list[str]]:
    (s,) = [s for s in project.plans[pipeline].tasks() if s.id == step]
    return sorted(r.uri for r in s.reads), sorted(r.uri for r in s.writes)


def test_a_sync_reads_its_table_writes_its_destination_and_runs_after_the_model(write, project) -> None:
    write("models.yml", """\
        pipeline: models
        steps:
          build:
            sql: CREATE TABLE marts.high_value_users AS SELECT 1 AS user_id
        """)
    write("sync.yml", """\
        pipeline: crm_sync
        schedule: data
        steps:
          to_crm:
            reverse_etl:
              source: {table: marts.high_value_users, key: user_id}
              fields:
                email: email
                lifetime_value: ltv
                source: {value: warehouse}
                domain: {sql: "split_part(email, '@', 2)"}
              destination: {kind: hubspot, connection: hubspot, id_property: email}
              mode: mirror
              groups: {vip: "ltv >= 1000"}
              group_field: segments
              max_rejected_ratio: 0.1
              max_rejected: 0
        """)
    loaded = project()
    assert errors_of(loaded) == []
    assert _io(loaded, "crm_sync", "to_crm") == (["osds://warehouse/marts/high_value_users"],
                                                 ["osds+destination://hubspot/contacts"])
    task = _task(loaded, "crm_sync", "to_crm")
    assert task.operator == "airflow_osds.operators.reverse_etl.ReverseEtlSyncOperator"
    assert task.kwargs["source"] == {"table": "marts.high_value_users", "key": "user_id"}
    assert task.kwargs["fields"] == {"email": "email", "lifetime_value": "ltv", "source": {"value": "warehouse"},
                                     "domain": {"sql": "split_part(email, '@', 2)"}}
    assert task.kwargs["destination"] == {"kind": "hubspot", "connection": "hubspot", "object_type": "contacts",
                                          "id_property": "email"}
    assert (task.kwargs["mode"], task.kwargs["groups"], task.kwargs["group_field"]) == (
        "mirror", {"vip": "ltv >= 1000"}, "segments")
    assert task.kwargs["max_rejected_ratio"] == 0.1 and task.kwargs["warehouse_conn_id"] == "warehouse"
    assert task.kwargs["max_rejected"] == 0, "a threshold of 0 is a threshold"


def test_a_sql_source_reads_the_tables_of_its_query(write, project) -> None:
    write("sync.yml", """\
        pipeline: s
        steps:
          hook:
            reverse_etl:
              source:
                sql: SELECT u.id, o.total FROM marts.users u JOIN marts.orders o USING (id)
                key: id
              fields: {total: total}
              destination: {kind: http, connection: crm_webhook, path: /hooks/customers,
                            body: {event: "customers.$op", items: "$records"}}
        """)
    loaded = project()
    assert errors_of(loaded) == []
    assert _io(loaded, "s", "hook") == (["osds://warehouse/marts/orders", "osds://warehouse/marts/users"],
                                        ["osds+destination://crm_webhook/hooks%2Fcustomers"])


def test_mistakes_are_reported_at_their_line(write, project) -> None:
    write("bad.yml", """\
        pipeline: bad
        steps:
          a:
            reverse_etl:
              source: {table: marts.users, sql: "SELECT 1", key: id}
              fields: {email: email}
              destination: {kind: http, connection: c, path: /x}
          b:
            reverse_etl:
              source: {table: marts.users, key: id}
              fields: {email: email}
              destination: {kind: salesforce, connection: c}
          c:
            reverse_etl:
              source: {table: marts.users, key: id}
              fields: {email: email}
              destination: {kind: http, connection: c, path: /x, body: {items: "{{ records }}"}}
              mode: sideways
        """)
    assert errors_of(project()) == [
        "bad.yml:5:15: give exactly one of `table` or `sql` (steps.a.reverse_etl.source)",
        "bad.yml:12:20: Input tag 'salesforce' found using 'kind' does not match any of the expected tags: 'http', "
        "'postgres', 'hubspot', 'mailchimp' (steps.b.reverse_etl.destination)",
        "bad.yml:17:20: `body` must hold '$records' where the batch of records goes "
        "(steps.c.reverse_etl.destination.http)",
        "bad.yml:18:13: Input should be 'upsert', 'update', 'insert' or 'mirror' (steps.c.reverse_etl.mode)",
    ]
