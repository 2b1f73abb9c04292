"""The PostgreSQL destination (``destinations.postgres``) on the embedded PostgreSQL, in a database of its own.

Faults are real: a trigger that terminates its own backend in the middle of a batch, a backend terminated
between batches, a lock held by another session past ``lock_timeout``, values the column types refuse.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from airflow_osds.reverse_etl.destinations.base import Change, Destination, DestinationError, RetryableError
from airflow_osds.reverse_etl.destinations.postgres import PostgresDestination

_names = itertools.count()


class Target:
    """A database of the session's PostgreSQL, for this module's tables."""

    def __init__(self, stack: Any, dbname: str) -> None:
        self.pg = stack.postgres
        self.dbname = dbname

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        return self.pg.connect(self.dbname, **kwargs)

    def conninfo(self, **extra: str) -> str:
        parts = {"host": str(self.pg.socket_dir), "port": str(self.pg.port), "user": self.pg.user,
                 "password": self.pg.password, "dbname": self.dbname, **extra}
        return " ".join(f"{k}={v}" for k, v in parts.items())

    def sql(self, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self.connect(autocommit=True) as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else []


@pytest.fixture(scope="module")
def target(postgres: Any) -> Iterator[Target]:
    dbname = f"retl_dest_pg_{next(_names)}"
    postgres.postgres.create_database(dbname, exist_ok=False)
    yield Target(postgres, dbname)
    postgres.postgres.drop_database(dbname)


@pytest.fixture
def table(target: Target) -> str:
    """A fresh ``crm.people_<n>``: id int primary key, email text NOT NULL, plan varchar(5) CHECK, score numeric,
    tags text[], attrs jsonb."""
    name = f"crm.people_{next(_names)}"
    target.sql("CREATE SCHEMA IF NOT EXISTS crm")
    target.sql(f"CREATE TABLE {name} (id int PRIMARY KEY, email text NOT NULL, plan varchar(5) "
               "CHECK (plan <> 'gold'), score numeric, tags text[], attrs jsonb)")
    return name


def destination(target: Target, table: str, **kwargs: Any) -> PostgresDestination:
    connect = kwargs.pop("connect", lambda: target.connect())
    return PostgresDestination(connect, table, kwargs.pop("key_column", "id"), **kwargs)


def person(i: int, op: str = "create", **fields: Any) -> Change:
    return Change(str(i), op, {"email": f"user{i}@example.com", "plan": "pro", **fields})  # type: ignore[arg-type]


def rows(target: Target, table: str, columns: str = "id, email, plan") -> list[tuple[Any, ...]]:
    return target.sql(f"SELECT {columns} FROM {table} ORDER BY id")



def kill_backend_once(table: str, condition: str) -> list[str]:
    """Statements giving ``table`` a trigger that, the first time a row inserted meets ``condition``, kills
    its own backend: a connection lost in the middle of a batch, which PostgreSQL cannot be asked for. The
    count is a sequence, so it is not rolled back with the batch."""
    name = table.replace(".", "_")
    return [
        f"CREATE SEQUENCE {name}_boom",
        f"""CREATE FUNCTION {name}_kill() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF {condition} THEN  -- nested: SQL does not promise to evaluate AND left to right
            IF nextval('{name}_boom') = 1 THEN
              PERFORM pg_terminate_backend(pg_backend_pid());
              PERFORM pg_sleep(5);
            END IF;
          END IF;
          RETURN NEW;
        END $$""",
        f"CREATE TRIGGER kill BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION {name}_kill()",
    ]

def test_upserts_create_then_update_in_one_transaction_per_batch(target: Target, table: str) -> None:
    dest = destination(target, table)
    assert isinstance(dest, Destination) and dest.object_name == f"postgres/{table}"
    result = dest.send([person(1, score=1.5, tags=["vip", "pro"], attrs={"source": "crm", "n": [1, 2]}),
                        person(2, plan=None)])
    assert result.acknowledged == ["1", "2"] and result.rejected == [] and result.counts == {"created": 2}
    assert rows(target, table, "id, email, plan, score, tags, attrs") == [
        (1, "user1@example.com", "pro", 1.5, ["vip", "pro"], {"source": "crm", "n": [1, 2]}),
        (2, "user2@example.com", None, None, None, None)]
    result = dest.send([person(2, "update", plan="free"), person(3, "create")])
    assert result.counts == {"updated": 1, "created": 1}
    assert rows(target, table) == [(1, "user1@example.com", "pro"), (2, "user2@example.com", "free"),
                                   (3, "user3@example.com", "pro")]
    assert rows(target, table, "id, score")[0] == (1, 1.5)  # a column the change does not name is left alone
    dest.close()


def test_quoted_identifiers_a_text_key_and_a_key_field(target: Target) -> None:
    target.sql('CREATE SCHEMA IF NOT EXISTS "CRM Data"')
    target.sql('CREATE TABLE "CRM Data"."People" ("E-mail" text UNIQUE, "Full Name" text, extra json)')
    dest = destination(target, "CRM Data.People", key_column="E-mail")
    result = dest.send([Change("k1", "create", {"E-mail": "ann@example.com", "Full Name": "Ann", "extra": [1]}),
                        Change("bob@example.com", "create", {"Full Name": "Bob", "extra": "plain"})])
    assert result.counts == {"created": 2}
    assert target.sql('SELECT "E-mail", "Full Name", extra FROM "CRM Data"."People" ORDER BY 1') == [
        ("ann@example.com", "Ann", [1]), ("bob@example.com", "Bob", "plain")]  # the field wins over the key
    result = dest.send([Change("k1", "delete", {"E-mail": "ann@example.com"}), Change("zed", "delete", {})])
    assert result.counts == {"deleted": 1, "absent": 1}
    assert target.sql('SELECT "E-mail" FROM "CRM Data"."People"') == [("bob@example.com",)]


def test_deletes_count_deleted_and_absent_and_share_the_transaction(target: Target, table: str) -> None:
    dest = destination(target, table)
    dest.send([person(i) for i in range(1, 5)])
    result = dest.send([person(1, "delete"), person(2, "delete"), person(9, "delete"), person(5)])
    assert sorted(result.acknowledged) == ["1", "2", "5", "9"]
    assert result.counts == {"created": 1, "deleted": 2, "absent": 1}
    assert [r[0] for r in rows(target, table)] == [3, 4, 5]


def test_records_the_table_refuses_are_rejected_with_the_databases_message_and_the_rest_committed(
        target: Target, table: str) -> None:
    dest = destination(target, table)
    batch = [
        person(1),
        Change("x2", "create", {"email": "bad-key@example.com"}),  # the key "x2" is not an int
        person(3, email=None),  # NOT NULL
        person(4, plan="enterprise"),  # varchar(5)
        person(5, plan="gold"),  # CHECK
        person(6, score=True),  # a boolean for a numeric column
        person(7, score={"a": 1}),  # a dict for a numeric column
        person(8),
    ]
    result = dest.send(batch)
    assert result.acknowledged == ["1", "8"] and result.counts == {"created": 2}
    reasons = {r.key: r.reason for r in result.rejected}
    assert reasons == {
        "x2": '22P02: invalid input syntax for type integer: "x2"',
        "3": '23502: null value in column "email" of relation "' + table.split(".")[1]
             + '" violates not-null constraint (Failing row contains (3, null, pro, null, null, null).)',
        "4": "22001: value too long for type character varying(5)",
        "5": '23514: new row for relation "' + table.split(".")[1] + '" violates check constraint "'
             + table.split(".")[1] + '_plan_check" (Failing row contains (5, user5@example.com, gold, null, null, null).)',
        "6": '42804: column "score" is of type numeric but expression is of type boolean',
        "7": '42804: column "score" is of type numeric but expression is of type jsonb',
    }
    assert rows(target, table) == [(1, "user1@example.com", "pro"), (8, "user8@example.com", "pro")]


def test_a_delete_the_database_refuses_is_a_rejection(target: Target, table: str) -> None:
    child = f"{table}_orders"
    target.sql(f"CREATE TABLE {child} (id int PRIMARY KEY, person int REFERENCES {table} (id))")
    dest = destination(target, table)
    dest.send([person(1), person(2)])
    target.sql(f"INSERT INTO {child} VALUES (1, 2)")
    result = dest.send([person(1, "delete"), person(2, "delete")])
    assert result.acknowledged == ["1"] and result.counts == {"deleted": 1}
    (rejection,) = result.rejected
    assert rejection.key == "2" and rejection.reason.startswith("23503: update or delete on table")
    assert [r[0] for r in rows(target, table)] == [2]


def test_the_table_is_checked_once_with_clear_errors(target: Target, table: str) -> None:
    with pytest.raises(DestinationError, match="table crm.nowhere does not exist \\(or this role cannot see it\\)"):
        destination(target, "crm.nowhere").send([person(1)])
    with pytest.raises(DestinationError, match="has no column 'pk' \\(the key column\\); it has attrs, email, id"):
        destination(target, table, key_column="pk").send([person(1)])
    with pytest.raises(DestinationError, match=f"has no unique constraint on 'email' alone .*ALTER TABLE "
                                               f"\"crm\".\"{table.split('.')[1]}\" ADD UNIQUE \\(\"email\"\\)"):
        destination(target, table, key_column="email").send([person(1)])
    partial = f"{table}_partial"
    target.sql(f"CREATE TABLE {partial} (id int, email text)")
    target.sql(f"CREATE UNIQUE INDEX ON {partial} (id) WHERE email IS NOT NULL")  # ON CONFLICT (id) cannot use it
    with pytest.raises(DestinationError, match="has no unique constraint on 'id' alone"):
        destination(target, partial).send([person(1)])
    target.sql(f"CREATE VIEW {table}_view AS SELECT * FROM {table}")
    with pytest.raises(DestinationError, match="is not a table \\(relkind 'v'\\)"):
        destination(target, f"{table}_view").send([person(1)])
    with pytest.raises(DestinationError, match="has no column 'favourite', 'nickname': add the column"):
        destination(target, table).send([person(1, nickname="x", favourite="teal")])
    assert rows(target, table) == []


def test_a_table_changed_during_the_sync_is_a_destination_error_naming_it(target: Target, table: str) -> None:
    dest = destination(target, table)
    dest.send([person(1)])
    target.sql(f"ALTER TABLE {table} RENAME TO {table.split('.')[1]}_old")
    with pytest.raises(DestinationError, match=f'relation "{table}" does not exist .*was it changed during the sync') as excinfo:
        dest.send([person(2)])
    assert not isinstance(excinfo.value, RetryableError)


def test_a_connection_lost_in_the_middle_of_a_batch_commits_nothing_and_is_retryable(target: Target, table: str) -> None:
    # The trigger kills its own backend on the record 'boom', once (a sequence: not rolled back with the batch).
    for statement in kill_backend_once(table, "NEW.email = 'boom@example.com'"):
        target.sql(statement)
    dest = destination(target, table)
    batch = [person(1), person(2), person(3, email="boom@example.com"), person(4)]
    with pytest.raises(RetryableError, match="the batch was not committed") as excinfo:
        dest.send(batch)
    assert excinfo.value.retry_after is None
    assert rows(target, table) == []  # one transaction: the rows before the fault are not there either
    result = dest.send(batch)  # a new connection
    assert result.acknowledged == ["1", "2", "3", "4"] and result.counts == {"created": 4}
    assert [r[0] for r in rows(target, table)] == [1, 2, 3, 4]


def test_a_connection_terminated_between_batches_is_retryable_then_reconnected(target: Target, table: str) -> None:
    dest = destination(target, table)
    dest.send([person(1)])
    pid = dest._conn.info.backend_pid  # type: ignore[union-attr]
    target.sql("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(RetryableError):
        dest.send([person(2)])
    assert dest.send([person(2)]).acknowledged == ["2"]
    assert dest._conn.info.backend_pid != pid  # type: ignore[union-attr]


def test_a_lock_held_past_the_lock_timeout_is_retryable(target: Target, table: str) -> None:
    dest = destination(target, table, connect=lambda: target.connect(options="-c lock_timeout=200"))
    dest.send([person(1)])
    with target.connect() as holder:
        holder.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(RetryableError, match="55P03: canceling statement due to lock timeout"):
            dest.send([person(1, "update", plan="free")])
    assert dest.send([person(1, "update", plan="free")]).counts == {"updated": 1}


def test_a_conninfo_string_works_and_its_password_is_never_in_a_message(target: Target, table: str) -> None:
    password = target.pg.password  # the server asks for it: a wrong one could not connect
    dest = PostgresDestination(target.conninfo(), table, "id")
    assert dest.send([person(1)]).acknowledged == ["1"]
    target.sql(f"ALTER TABLE {table} ADD CONSTRAINT leak CHECK (email <> '{password}@example.com')")
    result = dest.send([person(2, email=f"{password}@example.com")])
    assert password not in result.rejected[0].reason and "***@example.com" in result.rejected[0].reason
    for conninfo, refused in ((target.conninfo(dbname="no_such_db"), "does not exist"),
                              (target.conninfo(user="no_such_role"), "password authentication failed")):
        with pytest.raises(DestinationError, match=f"cannot connect: .*{refused}") as excinfo:
            PostgresDestination(conninfo, table, "id").send([person(3)])
        assert not isinstance(excinfo.value, RetryableError) and password not in str(excinfo.value)


def test_an_unreachable_server_is_retryable(target: Target, table: str) -> None:
    conninfo = "host=127.0.0.1 port=1 user=postgres dbname=x password=hunter22 connect_timeout=2"
    with pytest.raises(RetryableError, match="cannot connect: ") as excinfo:
        PostgresDestination(conninfo, table, "id").send([person(1)])
    assert "hunter22" not in str(excinfo.value)


def test_a_role_without_the_privilege_gets_a_destination_error_saying_what_to_grant(target: Target, table: str) -> None:
    role = f"reader_{next(_names)}"
    target.sql(f"CREATE ROLE {role} LOGIN PASSWORD 'reader-pw-4711'")  # the server asks every role for one
    target.sql(f"GRANT USAGE ON SCHEMA crm TO {role}")
    target.sql(f"GRANT SELECT ON {table} TO {role}")
    dest = PostgresDestination(target.conninfo(user=role, password="reader-pw-4711"), table, "id")
    with pytest.raises(DestinationError, match=f"42501: permission denied for table .*: grant this role SELECT, "
                                               f"INSERT, UPDATE and DELETE on {table}") as excinfo:
        dest.send([person(1)])
    assert not isinstance(excinfo.value, RetryableError)


def test_a_connection_inside_a_transaction_is_refused(target: Target, table: str) -> None:
    def busy() -> psycopg.Connection[Any]:
        conn = target.connect()
        conn.execute("SELECT 1")  # opens a transaction (not autocommit)
        return conn

    with pytest.raises(DestinationError, match="the connection given is inside a transaction"):
        destination(target, table, connect=busy).send([person(1)])
    plain = destination(target, table, connect=lambda: target.connect())  # not autocommit, but idle: fine
    assert plain.send([person(1)]).acknowledged == ["1"] and rows(target, table)[0][0] == 1


def test_constructor_arguments_are_checked(target: Target) -> None:
    with pytest.raises(ValueError, match="expected 'schema.table' or 'table'"):
        PostgresDestination(target.conninfo(), "a.b.c", "id")
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        PostgresDestination(target.conninfo(), "a.b", "id", batch_size=0)
