"""The local Superset 6.1.0 (:class:`airflow_osds.superset.LocalSuperset`) against the real server:
login and CSRF as the provider's hook will meet them, starts from the prepared template, clean stops."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from airflow_osds.superset import LocalSuperset, LocalSupersetError, ensure_superset_template
from airflow_osds.superset.local import template_key
from airflow_osds.venvs import cache_dir
from tests.conftest import REPO_ROOT, SESSION_DIR


def login(client: httpx.Client, username: str, password: str) -> httpx.Response:
    return client.post("/api/v1/security/login",
                       json={"username": username, "password": password, "provider": "db", "refresh": True})


def bearer(client: httpx.Client, server: LocalSuperset) -> dict[str, str]:
    reply = login(client, *server.admin)
    assert reply.status_code == 200, reply.text
    return {"Authorization": f"Bearer {reply.json()['access_token']}"}


def csrf_headers(client: httpx.Client, server: LocalSuperset) -> dict[str, str]:
    headers = bearer(client, server)
    token = client.get("/api/v1/security/csrf_token/", headers=headers).json()["result"]
    return {**headers, "X-CSRFToken": token}


def dashboard_titles(server: LocalSuperset) -> list[str]:
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        reply = client.get("/api/v1/dashboard/", headers=bearer(client, server))
    assert reply.status_code == 200, reply.text
    return [row["dashboard_title"] for row in reply.json()["result"]]


def create_dashboard(server: LocalSuperset, title: str) -> int:
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        reply = client.post("/api/v1/dashboard/", json={"dashboard_title": title, "published": True},
                            headers=csrf_headers(client, server))
    assert reply.status_code == 201, reply.text
    return int(reply.json()["id"])


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def process_exists(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def state_dir(request: pytest.FixtureRequest) -> Iterator[Path]:
    path = SESSION_DIR / f"superset-{request.node.name[:40]}-{uuid.uuid4().hex[:6]}"
    yield path
    LocalSuperset(path).stop()  # whatever a failing test left running


def test_admin_logs_in_with_the_db_provider_and_a_bad_password_gets_401(superset: LocalSuperset) -> None:
    username, password = superset.admin
    with httpx.Client(base_url=superset.base_url, timeout=30) as client:
        ok = login(client, username, password)
        assert ok.status_code == 200, ok.text
        assert set(ok.json()) == {"access_token", "refresh_token"}

        refreshed = client.post("/api/v1/security/refresh",
                                headers={"Authorization": f"Bearer {ok.json()['refresh_token']}"})
        assert refreshed.status_code == 200, refreshed.text
        assert refreshed.json()["access_token"]

        bad = login(client, username, password + "-wrong")
        assert bad.status_code == 401
        assert bad.json() == {"message": "Not authorized"}


def test_csrf_token_comes_with_its_session_cookie_and_mutations_need_both(superset: LocalSuperset) -> None:
    title = f"csrf check {uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=superset.base_url, timeout=30) as client:
        headers = bearer(client, superset)
        reply = client.get("/api/v1/security/csrf_token/", headers=headers)
        assert reply.status_code == 200, reply.text
        token = reply.json()["result"]
        assert token
        assert "session" in client.cookies

        # CSRF is on (WTF_CSRF_ENABLED): a Bearer token alone does not allow a POST.
        without = client.post("/api/v1/dashboard/", json={"dashboard_title": title}, headers=headers)
        assert without.status_code == 400
        assert "CSRF token is missing" in without.text

        created = client.post("/api/v1/dashboard/", json={"dashboard_title": title},
                              headers={**headers, "X-CSRFToken": token})
        assert created.status_code == 201, created.text

    # The token is bound to the session cookie: a client without the cookie is refused.
    with httpx.Client(base_url=superset.base_url, timeout=30) as fresh:
        refused = fresh.post("/api/v1/dashboard/", json={"dashboard_title": title + " 2"},
                             headers={**bearer(fresh, superset), "X-CSRFToken": token})
        assert refused.status_code == 400
        assert "CSRF session token is missing" in refused.text


def test_the_data_cache_is_a_file_cache_in_the_state_dir(superset: LocalSuperset) -> None:
    config = (superset.state_dir / "superset_config.py").read_text()
    assert "'CACHE_TYPE': 'FileSystemCache'" in config
    assert repr(str(superset.state_dir / "cache" / "data")) in config
    assert "WTF_CSRF_ENABLED = True" in config


def test_a_second_server_starts_from_the_template_and_restarts_keep_or_reset_its_state(
    superset: LocalSuperset, state_dir: Path
) -> None:
    template = ensure_superset_template(superset.admin)  # built by the session's server
    marker = template.parent / "template.json"
    before = (template.stat().st_mtime_ns, marker.stat().st_mtime_ns)

    second = LocalSuperset(state_dir)
    started = time.monotonic()
    second.start()
    elapsed = time.monotonic() - started
    try:
        # A build takes 45–90 s; a copy of the template and a server start take about 7.
        assert elapsed < 20, second.timings
        assert second.timings["template_ready"] < 2, second.timings
        assert second.base_url != superset.base_url
        assert dashboard_titles(second) == []
        create_dashboard(second, "kept across a restart")
    finally:
        second.stop()
    # Nothing re-ran `superset db upgrade` into the template.
    assert (template.stat().st_mtime_ns, marker.stat().st_mtime_ns) == before

    kept = LocalSuperset(state_dir, reset=False)
    with kept:
        assert dashboard_titles(kept) == ["kept across a restart"]
    with LocalSuperset(state_dir) as reset:
        assert dashboard_titles(reset) == []
    assert (template.stat().st_mtime_ns, marker.stat().st_mtime_ns) == before


def test_stop_leaves_no_process_and_frees_the_port(state_dir: Path) -> None:
    server = LocalSuperset(state_dir).start()
    pid, port = server.pid, server.port
    assert pid is not None and process_exists(pid) and port_open(port)
    rss = server.rss_bytes()
    assert rss is not None and rss > 50 * 2**20

    server.stop()
    assert not server.is_running
    assert not process_exists(pid)
    assert not port_open(port)
    assert not (state_dir / "superset.pid").exists()
    server.stop()  # a second stop is a no-op


def test_the_server_dies_with_the_process_that_started_it(state_dir: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        from airflow_osds.superset import LocalSuperset
        server = LocalSuperset({str(state_dir)!r}).start()
        print(server.pid, flush=True)
        time.sleep(600)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        assert process_exists(pid)
    finally:
        parent.send_signal(signal.SIGKILL)  # no cleanup code runs: only the kernel can stop the server
        parent.wait()
    deadline = time.monotonic() + 20
    while process_exists(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not process_exists(pid)


def test_a_server_that_cannot_start_says_why(state_dir: Path) -> None:
    broken = LocalSuperset(state_dir, extra_config={"SQLALCHEMY_DATABASE_URI": "nosuchdialect://x/y"},
                           health_timeout=60)
    with pytest.raises(LocalSupersetError, match="exited with code") as caught:
        broken.start()
    assert "nosuchdialect" in caught.value.log_tail
    assert not broken.is_running


def test_a_stale_pid_file_never_signals_another_process(tmp_path: Path) -> None:
    (tmp_path / "superset.pid").write_text(str(os.getpid()))  # a reused PID: this very test process
    server = LocalSuperset(tmp_path)
    assert not server.is_running
    server.stop()  # must not SIGTERM us
    assert not (tmp_path / "superset.pid").exists()


def test_the_template_key_follows_the_admin_user() -> None:
    assert template_key(("admin", "admin")) != template_key(("admin", "other"))
    assert template_key(("admin", "admin")) == template_key(("admin", "admin"))
    assert ensure_superset_template(("admin", "admin")).parent.parent == cache_dir()


def test_gunicorn_workers_serve_and_stop_leaves_none_of_them(state_dir: Path) -> None:
    server = LocalSuperset(state_dir, workers=2, threads=2).start()
    pids, port = server.server_pids(), server.port
    try:
        assert len(pids) == 3, pids  # the master and its two workers, every one of them up
        assert "gunicorn" in Path(f"/proc/{server.pid}/cmdline").read_text()
        assert dashboard_titles(server) == []  # the API answers under gunicorn
        assert server.rss_bytes() > 2 * 100 * 2**20  # the workers' memory is counted, not only the master's
    finally:
        server.stop()
    assert not [pid for pid in pids if process_exists(pid)], "no orphan worker"
    assert not port_open(port)
    assert not (state_dir / "superset.pid").exists()
