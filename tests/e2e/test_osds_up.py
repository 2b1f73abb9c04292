"""`osds up` / `osds down` (what `make up` / `make down` run) in a copy of the project: Airflow's real
api-server, scheduler, dag-processor and triggerer on the project's dags/, reachable at the printed URL,
and everything they started gone after `osds down`."""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from airflow_osds.embedded import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
OSDS = str(Path(sys.executable).parent / "osds")
DEMO_DAG_IDS = {"ingest", "web_analytics", "crm_sync", "dashboards", "orders_daily", "customer_stats"}


def _processes_under(directory: Path) -> list[int]:
    """PIDs whose working directory is ``directory`` or below it (the stack's components run there)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cwd = Path(os.readlink(proc / "cwd"))
        except OSError:
            continue
        if cwd == directory or directory in cwd.parents:
            found.append(int(proc.name))
    return found


def test_osds_up_serves_the_project_until_osds_down() -> None:
    project = Path(tempfile.mkdtemp(prefix="osds-up-"))
    project.chmod(0o755)
    up = None
    try:
        shutil.copytree(REPO_ROOT / "dags", project / "dags")
        shutil.copytree(REPO_ROOT / "include", project / "include", ignore=shutil.ignore_patterns("target", "logs"))
        from airflow_osds.venvs import CACHE_ENV, cache_dir

        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "OSDS_"))}
        env[CACHE_ENV] = str(cache_dir())
        port = free_port()
        up = subprocess.Popen([OSDS, "up", "--project-dir", str(project), "--port", str(port)], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in up.stdout], daemon=True).start()
        output: list[str] = []
        deadline = time.monotonic() + 240
        while not any("stop with Ctrl-C or osds down" in line for line in output):
            assert time.monotonic() < deadline and up.poll() is None, "".join(output)
            try:
                output.append(lines.get(timeout=1))
            except queue.Empty:
                pass
        text = "".join(output)
        url = re.search(r"Airflow is up in \d+ s: (http://127\.0\.0\.1:\d+) \(login: ", text)
        assert url and url.group(1) == f"http://127.0.0.1:{port}", text
        assert "dbt parse web_analytics: manifest written" in text, text

        # The DAG processor parses the project's files: every demo pipeline appears, with no import error.
        with httpx.Client(base_url=url.group(1), timeout=10) as client:
            deadline = time.monotonic() + 90
            while True:
                dags = {d["dag_id"] for d in client.get("/api/v2/dags", params={"limit": 100}).json()["dags"]}
                if DEMO_DAG_IDS <= dags or time.monotonic() > deadline:
                    break
                time.sleep(1)
            assert DEMO_DAG_IDS <= dags, dags
            assert client.get("/api/v2/importErrors").json()["total_entries"] == 0
            # The UI itself is served at that URL.
            assert client.get("/").status_code == 200
        assert _processes_under(project / ".osds" / "up"), "the components run in .osds/up"

        down = subprocess.run([OSDS, "down", "--project-dir", str(project)], env=env, capture_output=True, text=True,
                              timeout=120)
        assert down.returncode == 0, down.stdout + down.stderr
        assert re.search(r"osds up \(pid \d+\) stopped", down.stdout), down.stdout
        assert up.wait(timeout=30) == 0
        time.sleep(0.5)
        assert _processes_under(project / ".osds") == [], "a component or PostgreSQL outlived osds down"
        assert not (project / ".osds" / "up" / "osds-up.pid").exists()
        # A second `osds down` has nothing to stop and says so.
        again = subprocess.run([OSDS, "down", "--project-dir", str(project)], env=env, capture_output=True, text=True,
                               timeout=30)
        assert again.returncode == 0 and "osds up is not running" in again.stdout, again.stdout
    finally:
        if up is not None and up.poll() is None:
            up.kill()
        for pid in _processes_under(project / ".osds"):
            os.kill(pid, 9)
        shutil.rmtree(project, ignore_errors=True)
