"""A local Apache Superset 6.1.0 on 127.0.0.1 for the tests and the demo, ready in seconds.

Superset pins SQLAlchemy 1.4, so it cannot share Airflow's environment: it runs as a subprocess
from its own virtualenv in the component cache (:mod:`airflow_osds.venvs`). Its slow bootstrap
(``superset db upgrade`` + ``fab create-admin`` + ``superset init``, about 90 s on 2 cores) runs
once per (version, requirements, admin user) into a SQLite *template* kept next to the venv,
``<cache>/superset-template-<key>/superset.db``; every start copies that file into its own state
directory, so each test session or demo run gets a clean metadata database in a few seconds.

It serves with Flask's threaded dev server (``superset run --with-threads``, one process) by
default, or with ``workers=N`` under gunicorn as production does: N worker processes of ``threads``
threads each, so concurrent requests' Python work is not serialised by one interpreter's GIL.

State directory layout: ``superset_config.py``, ``secret_key`` (random, kept so a restart can
still decrypt what the metadata DB holds), ``superset.db``, ``cache/`` (the data cache),
``superset.log``, ``superset.pid`` and ``port``; under gunicorn also ``gunicorn.conf.py`` and
``workers/`` (one file per worker that has loaded the app).

No Airflow imports: used by the tests, the demo and the CLI.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from airflow_osds.embedded import free_port
from airflow_osds.exceptions import OsdsError
from airflow_osds.processes import pid_alive
from airflow_osds.venvs import cache_dir, ensure_venv

__all__ = [
    "DEFAULT_ADMIN",
    "SUPERSET_REQUIREMENTS",
    "SUPERSET_VERSION",
    "LocalSuperset",
    "LocalSupersetError",
    "ensure_superset_template",
    "ensure_superset_venv",
]

log = logging.getLogger(__name__)

SUPERSET_VERSION = "6.1.0"
# 6.1.0's PyPI metadata is incomplete (feasibility notes §1): `rich` is imported by every CLI
# command, `cachetools` by the engine-spec loader (without it no PostgreSQL database can be
# added), psycopg2 is needed for postgresql:// data sources, and Flask-Caching >= 2.4 passes
# an argument SupersetMetastoreCache rejects, so app creation fails. The fixes are pinned to the
# versions of the project's constraints.txt so every machine builds the same environment.
SUPERSET_REQUIREMENTS: tuple[str, ...] = (
    f"apache-superset=={SUPERSET_VERSION}",
    "psycopg2-binary==2.9.13",
    "rich==15.0.0",
    "cachetools==8.0.2",
    "flask-caching==2.3.1",
)
VENV_NAME = f"superset-{SUPERSET_VERSION}"
# A local, loopback-only instance: the password only keeps the API's auth path honest.
DEFAULT_ADMIN: tuple[str, str] = ("admin", "admin")

_TEMPLATE_MARKER = "template.json"
_PR_SET_PDEATHSIG = 1
_CLI_TIMEOUT = 900.0


class LocalSupersetError(OsdsError):
    """The local Superset could not be installed, prepared, started or stopped."""

    def __init__(self, message: str, *, log_tail: str = "") -> None:
        self.log_tail = log_tail
        super().__init__(f"{message}\n--- superset log (tail) ---\n{log_tail}" if log_tail else message)


def ensure_superset_venv() -> Path:
    """The Superset virtualenv, built on first use (about a minute, 825 MB)."""
    return ensure_venv(
        VENV_NAME,
        SUPERSET_REQUIREMENTS,
        # Imports what each fix is for, so a venv that installs but cannot run fails here.
        check=["-c", "import superset.cli.main, psycopg2, rich, cachetools, flask_caching"],
        timeout=_CLI_TIMEOUT,
    )


def template_key(admin: tuple[str, str]) -> str:
    """What the template depends on, hashed: Superset's version, the requirement list and the admin."""
    wanted = {"version": SUPERSET_VERSION, "requirements": list(SUPERSET_REQUIREMENTS), "admin": list(admin)}
    return hashlib.sha256(json.dumps(wanted, sort_keys=True).encode()).hexdigest()[:12]


def ensure_superset_template(admin: tuple[str, str] = DEFAULT_ADMIN, *, venv: Path | None = None) -> Path:
    """The prepared metadata database (migrated, admin created, roles initialised), built once.

    Concurrent callers (two test sessions, a test run and the demo) build it once: the build holds
    a lock next to it and happens in a temporary directory that is renamed into place, so a
    template that exists is complete.
    """
    root = cache_dir() / f"superset-template-{template_key(admin)}"
    if (root / _TEMPLATE_MARKER).exists():
        return root / "superset.db"
    venv = venv or ensure_superset_venv()
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (root / _TEMPLATE_MARKER).exists():
                _build_template(root, venv, admin)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return root / "superset.db"


def _build_template(root: Path, venv: Path, admin: tuple[str, str]) -> None:
    # Beside the final directory, so the rename is atomic (same filesystem).
    build = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    build.chmod(0o755)  # mkdtemp's 0700 would hide the template from other users of the cache
    try:
        _write_config(build, secret_key=secrets.token_hex(32), extra={})
        username, password = admin
        steps: list[tuple[str, list[str]]] = [
            ("db upgrade", ["db", "upgrade"]),
            ("fab create-admin", ["fab", "create-admin", "--username", username, "--firstname", "Admin",
                                  "--lastname", "User", "--email", f"{username}@localhost", "--password", password]),
            ("init", ["init"]),
        ]
        seconds: dict[str, float] = {}
        for label, args in steps:
            started = time.monotonic()
            _run_cli(venv, build, args, label)
            seconds[label] = round(time.monotonic() - started, 1)
            log.info("superset %s: %.1f s", label, seconds[label])
        marker = {"version": SUPERSET_VERSION, "requirements": list(SUPERSET_REQUIREMENTS), "admin": username,
                  "seconds": seconds}
        (build / _TEMPLATE_MARKER).write_text(json.dumps(marker, indent=2))
        # Only the database and its marker are the template; the build's config and key are not.
        for leftover in ("superset_config.py", "secret_key", "cache"):
            target = build / leftover
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
        shutil.rmtree(root, ignore_errors=True)  # an interrupted older build without its marker
        os.rename(build, root)
    finally:
        shutil.rmtree(build, ignore_errors=True)


def _run_cli(venv: Path, home: Path, args: list[str], label: str) -> None:
    done = subprocess.run([str(venv / "bin" / "superset"), *args], env=_superset_env(home), cwd=home,
                          capture_output=True, text=True, timeout=_CLI_TIMEOUT)
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip().splitlines()
        raise LocalSupersetError(f"`superset {label}` failed (exit {done.returncode}) in {home}",
                                 log_tail="\n".join(output[-40:]))


def _superset_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}}
    env.update({
        "SUPERSET_CONFIG_PATH": str(home / "superset_config.py"),
        "SUPERSET_HOME": str(home),
        "FLASK_APP": "superset.app:create_app()",
        "PYTHONUNBUFFERED": "1",
    })
    env.pop("FLASK_DEBUG", None)  # the debug reloader would fork a second server process
    return env


def _write_config(home: Path, *, secret_key: str, extra: Mapping[str, Any]) -> None:
    config: dict[str, Any] = {
        "SECRET_KEY": secret_key,
        # check_same_thread: the threaded dev server shares the engine's connections across threads.
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{home / 'superset.db'}?check_same_thread=false",
        # A file cache, not SimpleCache: it outlives a server restart on the same state dir and is
        # shared by every worker if this ever runs under gunicorn with several, so a warm-up is
        # visible to the next request whichever process serves it. The default (NullCache) would
        # make every warm-up a no-op. The threshold is raised from 500 entries so a 40-chart
        # benchmark does not evict what it just warmed.
        "DATA_CACHE_CONFIG": {
            "CACHE_TYPE": "FileSystemCache",
            "CACHE_DIR": str(home / "cache" / "data"),
            "CACHE_DEFAULT_TIMEOUT": 86400,
            "CACHE_THRESHOLD": 100_000,
            "CACHE_KEY_PREFIX": "osds_data_",
        },
        # Superset's default; explicit because the provider's hook must work with CSRF on.
        "WTF_CSRF_ENABLED": True,
        "TALISMAN_ENABLED": False,  # CSP headers are pointless on plain-http loopback
        "CONTENT_SECURITY_POLICY_WARNING": False,
        "RATELIMIT_ENABLED": False,
        **extra,
    }
    lines = ["# Written by airflow_osds.superset.local; rewritten on every start.\n"]
    lines += [f"{key} = {value!r}\n" for key, value in config.items()]
    lines.append(_REDACTING_EVENT_LOGGER)
    (home / "superset_config.py").write_text("".join(lines))


# Superset's action log (the `logs` table of superset.db) keeps every request's JSON body, so
# creating or updating a database would store its URI with the password in clear (the embedded
# PostgreSQL's, for the demo). The same logger, with those fields masked first.
_REDACTING_EVENT_LOGGER = """
from superset.utils.log import DBEventLogger as _DBEventLogger


def _osds_redact(payload):
    if not isinstance(payload, dict):
        return payload
    payload = dict(payload)
    uri = payload.get("sqlalchemy_uri")
    if isinstance(uri, str):
        from sqlalchemy.engine.url import make_url

        try:
            payload["sqlalchemy_uri"] = make_url(uri).render_as_string(hide_password=True)
        except Exception:
            payload["sqlalchemy_uri"] = "***"
    for key in ("password", "encrypted_extra", "masked_encrypted_extra"):
        if key in payload:
            payload[key] = "***"
    if isinstance(payload.get("parameters"), dict) and "password" in payload["parameters"]:
        payload["parameters"] = {**payload["parameters"], "password": "***"}
    return payload


class _OsdsRedactingEventLogger(_DBEventLogger):
    def log(self, *args, **kwargs):
        kwargs["records"] = [_osds_redact(r) for r in kwargs.get("records") or []]
        kwargs["curated_payload"] = _osds_redact(kwargs.get("curated_payload"))
        return super().log(*args, **kwargs)


EVENT_LOGGER = _OsdsRedactingEventLogger()
"""


_GUNICORN_CONFIG = """\
# Written by airflow_osds.superset.local; rewritten on every start.
import ctypes
import os
import signal

bind = [{bind!r}]
workers = {workers!r}
threads = {threads!r}
# No worker_class: gunicorn takes gthread when threads > 1, else sync (one request per connection).
timeout = 120
graceful_timeout = 10
# As Superset's own docs run it: its URLs (rison filters, form data) can be long.
limit_request_line = 0
limit_request_field_size = 0
# gunicorn >= 25 opens ~/.gunicorn/gunicorn.ctl by default: one path for every instance on the machine.
control_socket_disable = True
_READY = {ready!r}


def post_fork(server, worker):
    # The master dies with the process that started it (PR_SET_PDEATHSIG); each worker with the master.
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):
        pass
    if os.getppid() != server.pid:  # the master died before prctl
        os._exit(0)


def post_worker_init(worker):
    # The app is loaded: this worker serves requests from now on.
    open(os.path.join(_READY, str(os.getpid())), "w").close()


def child_exit(server, worker):
    try:
        os.unlink(os.path.join(_READY, str(worker.pid)))
    except FileNotFoundError:
        pass
"""


def _set_pdeathsig() -> None:  # pragma: no cover - runs in the child between fork and exec
    # Linux only: the kernel sends SIGTERM when the thread that started the server exits, so a
    # crashed test session or demo does not leave a 300 MB server behind.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class LocalSuperset:
    """
    A Superset server on 127.0.0.1 with its state under ``state_dir``.

    :param state_dir: directory for the config, metadata DB, data cache, log and pid file.
    :param port: TCP port; a free one is chosen when not given.
    :param admin: the admin user's (username, password); part of the template's key.
    :param reset: start from a fresh copy of the template (default); ``False`` keeps an existing
        metadata database, so a restart keeps the databases, charts and dashboards created before.
    :param extra_config: more ``superset_config.py`` settings (e.g. ``{"WTF_CSRF_ENABLED": False}``).
    :param die_with_parent: ask the kernel to stop the server when the starting thread exits.
    :param health_timeout: seconds to wait for ``/health`` (and, under gunicorn, for every worker to load the app).
    :param workers: ``1`` (default): Flask's threaded dev server, one process. More: gunicorn
        (``superset.app:create_app()``; sync workers with ``threads=1``, else gthread) with that many
        worker processes; ``start()`` returns once every worker has loaded the app, ``stop()`` ends the
        master and its workers.
    :param threads: threads per gunicorn worker (ignored by the dev server, which starts one per request).
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        *,
        port: int | None = None,
        admin: tuple[str, str] = DEFAULT_ADMIN,
        reset: bool = True,
        extra_config: Mapping[str, Any] | None = None,
        die_with_parent: bool = True,
        health_timeout: float = 120.0,
        workers: int = 1,
        threads: int = 2,
    ) -> None:
        if workers < 1 or threads < 1:
            raise ValueError(f"workers and threads must be at least 1 (got {workers}, {threads})")
        self.state_dir = Path(state_dir).resolve()
        self.admin = admin
        self.reset = reset
        self.extra_config = dict(extra_config or {})
        self.die_with_parent = die_with_parent
        self.health_timeout = health_timeout
        self.workers = workers
        self.threads = threads
        self.log_file = self.state_dir / "superset.log"
        self.timings: dict[str, float] = {}
        self._requested_port = port
        self._process: subprocess.Popen[bytes] | None = None

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> LocalSuperset:
        """Install and prepare what is missing, start the server and wait until it is healthy."""
        if self.is_running:
            return self
        started = time.monotonic()
        venv = ensure_superset_venv()
        self.timings["venv_ready"] = round(time.monotonic() - started, 1)
        log.info("superset venv ready: %.1f s (%s)", self.timings["venv_ready"], venv)
        template = ensure_superset_template(self.admin, venv=venv)
        self.timings["template_ready"] = round(time.monotonic() - started, 1)
        log.info("superset template ready: %.1f s (%s)", self.timings["template_ready"], template)
        self._prepare_state(template)
        server_started = time.monotonic()
        self._spawn(venv, self._requested_port or free_port())
        self._wait_healthy()
        self.timings["server_healthy"] = round(time.monotonic() - server_started, 1)
        self.timings["total"] = round(time.monotonic() - started, 1)
        log.info("superset healthy at %s: %.1f s after spawning, %.1f s in all",
                 self.base_url, self.timings["server_healthy"], self.timings["total"])
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server by its PID (SIGTERM, then SIGKILL after ``timeout`` s); no-op if it is not running.

        The signals go to the server's process group, so gunicorn's workers get them as well as the
        master; ``stop`` returns once no process of that group is left.
        """
        pid = self._pid_if_ours()
        if pid is not None:
            self._signal(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            if not self._wait_gone(pid, timeout) or not _wait_group_gone(pid, deadline - time.monotonic()):
                self._signal(pid, signal.SIGKILL)
                if not self._wait_gone(pid, 5.0) or not _wait_group_gone(pid, 5.0):
                    raise LocalSupersetError(f"Superset (pid {pid}) or a process of its group did not stop "
                                             f"after SIGKILL: {_group_pids(pid)}")
        self._process = None
        (self.state_dir / "superset.pid").unlink(missing_ok=True)

    @property
    def is_running(self) -> bool:
        return self._pid_if_ours() is not None

    def __enter__(self) -> LocalSuperset:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- addresses -----------------------------------------------------------------
    @property
    def port(self) -> int:
        try:
            return int((self.state_dir / "port").read_text())
        except (OSError, ValueError):
            if self._requested_port:
                return self._requested_port
            raise LocalSupersetError(f"The Superset in {self.state_dir} has never been started.") from None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def airflow_connection(self) -> dict[str, Any]:
        """A ``superset`` Airflow connection to this server, in the JSON shape of ``AIRFLOW_CONN_<ID>``."""
        username, password = self.admin
        return {"conn_type": "superset", "host": self.base_url, "login": username, "password": password,
                "extra": {"auth_provider": "db"}}

    @property
    def pid(self) -> int | None:
        return self._pid_if_ours()

    def server_pids(self) -> list[int]:
        """The server's processes (the dev server, or gunicorn's master and workers); empty when not running."""
        pid = self._pid_if_ours()
        return [] if pid is None else _group_pids(pid)

    def rss_bytes(self) -> int | None:
        """Resident memory of the server's processes summed, from /proc (None when it is not running)."""
        pids = self.server_pids()
        if not pids:
            return None
        total = 0
        for pid in pids:
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        return total

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # -- internals -----------------------------------------------------------------
    def _prepare_state(self, template: Path) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        key_file = self.state_dir / "secret_key"
        if not key_file.exists():
            key_file.write_text(secrets.token_hex(32))
            key_file.chmod(0o600)
        _write_config(self.state_dir, secret_key=key_file.read_text().strip(), extra=self.extra_config)
        database = self.state_dir / "superset.db"
        if self.reset or not database.exists():
            for stale in ("superset.db-journal", "superset.db-wal", "superset.db-shm"):
                (self.state_dir / stale).unlink(missing_ok=True)
            shutil.copyfile(template, database)
            shutil.rmtree(self.state_dir / "cache", ignore_errors=True)  # cached results of the old DB

    def _command(self, venv: Path, port: int) -> list[str]:
        if self.workers == 1:
            return [str(venv / "bin" / "superset"), "run", "-h", "127.0.0.1", "-p", str(port), "--with-threads"]
        gunicorn = venv / "bin" / "gunicorn"
        if not gunicorn.exists():
            raise LocalSupersetError(f"{gunicorn} is missing: apache-superset {SUPERSET_VERSION} depends on gunicorn")
        ready = self.state_dir / "workers"
        shutil.rmtree(ready, ignore_errors=True)
        ready.mkdir()
        config = self.state_dir / "gunicorn.conf.py"
        config.write_text(_GUNICORN_CONFIG.format(bind=f"127.0.0.1:{port}", workers=self.workers,
                                                  threads=self.threads, ready=str(ready)))
        return [str(gunicorn), "-c", str(config), "superset.app:create_app()"]

    def _ready_workers(self) -> int:
        """Gunicorn workers that have loaded the app and are still alive."""
        try:
            return sum(pid_alive(int(p.name)) for p in (self.state_dir / "workers").iterdir() if p.name.isdigit())
        except OSError:
            return 0

    def _spawn(self, venv: Path, port: int) -> None:
        command = self._command(venv, port)
        with open(self.log_file, "ab") as log_handle:
            log_handle.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command)}\n".encode())
            log_handle.flush()
            # A new session: a Ctrl-C in the demo's terminal reaches the demo, which stops the
            # server itself, rather than killing it mid-request.
            self._process = subprocess.Popen(
                command, env=_superset_env(self.state_dir), cwd=self.state_dir, stdin=subprocess.DEVNULL,
                stdout=log_handle, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=_set_pdeathsig if self.die_with_parent else None,
            )
        (self.state_dir / "port").write_text(str(port))
        (self.state_dir / "superset.pid").write_text(str(self._process.pid))

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.health_timeout
        url = f"{self.base_url}/health"
        while True:
            assert self._process is not None
            code = self._process.poll()
            if code is not None:
                self._forget()
                raise LocalSupersetError(f"Superset exited with code {code} before {url} answered.",
                                         log_tail=self.log_tail())
            with contextlib.suppress(OSError, urllib.error.URLError):
                with urllib.request.urlopen(url, timeout=2) as reply:
                    # Under gunicorn the first worker up answers; the others may still be loading the app.
                    if reply.status == 200 and (self.workers == 1 or self._ready_workers() >= self.workers):
                        return
            if time.monotonic() > deadline:
                self.stop()
                waited = url if self.workers == 1 else f"{url} and {self.workers} workers"
                raise LocalSupersetError(f"Superset did not answer {waited} within {self.health_timeout:.0f} s.",
                                         log_tail=self.log_tail())
            time.sleep(0.25)

    def _forget(self) -> None:
        self._process = None
        (self.state_dir / "superset.pid").unlink(missing_ok=True)

    def _pid_if_ours(self) -> int | None:
        if self._process is not None and self._process.poll() is not None:
            self._forget()  # reaped: a PID we no longer own
            return None
        try:
            pid = int((self.state_dir / "superset.pid").read_text())
        except (OSError, ValueError):
            return None
        # The pid file may outlive the server and the PID be reused: it is ours only if that
        # process runs with this state directory as its SUPERSET_HOME.
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            return None
        return pid if f"SUPERSET_HOME={self.state_dir}".encode() in environ else None

    def _signal(self, pid: int, sig: signal.Signals) -> None:
        # The server runs in its own session; signal the group so a worker it forked goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._process.wait(timeout=0.2)
                    return True
            elif not pid_alive(pid):
                return True
            else:
                time.sleep(0.2)
        return False


def _group_pids(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group ``pgid``."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            out.append(int(entry.name))
    return sorted(out)


def _wait_group_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + max(timeout, 0.0)
    while _group_pids(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True
