"""``osds up`` / ``osds down`` (``make up`` / ``make down``): the project's pipelines on Airflow's real
scheduler for a person to explore, on the embedded PostgreSQL in ``.osds/``.

Unlike ``osds demo`` (Airflow's task runner, one process), this starts the four server components of a
deployment (:class:`~airflow_osds.stack.AirflowStack`) on the project's ``dags/``: the DAG processor
parses the files, the scheduler runs ``ingest`` continuously and the data-scheduled pipelines on its
Asset events, and the new-files sensor waits in the triggerer. It runs in the foreground until Ctrl-C or
``osds down`` (which signals the PID recorded in ``.osds/up/osds-up.pid``).
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from types import FrameType

from rich.console import Console

from airflow_osds.localrun import LocalStack, apply_environ
from airflow_osds.processes import pid_alive
from airflow_osds.stack import AirflowStack

__all__ = ["run_down", "run_up"]

#: Its own metadata database: the demo's (``airflow``) holds ``dag.test()`` runs of the same DAG ids.
UP_METADATA_DB = "airflow_up"
STOP_TIMEOUT_S = 60.0


def _state(project_dir: Path) -> Path:
    return project_dir / ".osds" / "up"


def _pid_file(project_dir: Path) -> Path:
    return _state(project_dir) / "osds-up.pid"


def run_up(project_dir: Path, *, port: int = 8080, console: Console | None = None) -> int:
    """Start the stack, print where it is, block until SIGINT/SIGTERM, then stop it all. Returns the exit code."""
    from airflow_osds.demo import seed_crm_source
    from airflow_osds.dbt.manifest_build import parse_stale_projects

    console = console or Console(soft_wrap=True)
    pid_file = _pid_file(project_dir)
    if pid_file.exists() and pid_alive(int(pid_file.read_text())):
        console.print(f"[red]osds up is already running[/] (pid {pid_file.read_text().strip()}); stop it with osds down")
        return 1
    local = LocalStack(state_dir=project_dir / ".osds", dags_folder=project_dir / "dags")
    console.print(f"[bold]osds up[/]: embedded PostgreSQL in {local.postgres.state_dir}")
    local.start()
    # SIGTERM (osds down, a service manager) stops as cleanly as Ctrl-C.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    stack: AirflowStack | None = None
    try:
        crm_script = project_dir / "include" / "data" / "crm" / "crm_source.sql"
        if crm_script.exists():
            seed_crm_source(local, crm_script)
        # The dbt manifests the DAG processor reads must exist before it parses (it never runs dbt itself).
        apply_environ(local.environ())
        from airflow_osds.hooks.dbt import DbtHook

        warehouse = DbtHook("warehouse", target_schema="public").get_conn()
        for project in parse_stale_projects(project_dir / "include" / "dbt", connection=warehouse):
            console.print(f"dbt parse {project.name}: manifest written")
        connections = {k: v for k, v in local.connections().items() if k != "warehouse"}
        stack = AirflowStack(local, _state(project_dir), metadata_db=UP_METADATA_DB, warehouse_db=local.warehouse_db,
                             dags_folder=local.dags_folder, connections=connections,
                             extra_env={"OSDS_CACHE_DIR": str(local.state_dir / "cache")}, fresh=False, api_port=port)
        console.print(f"starting Airflow's api-server, scheduler, dag-processor and triggerer on port {port} …")
        started = time.monotonic()
        stack.start(timeout=180.0)
        pid_file.write_text(str(os.getpid()))
        console.print(f"[green]Airflow is up[/] in {time.monotonic() - started:.0f} s: {stack.base_url} "
                      "(login: none needed, the simple auth manager makes every user admin)")
        console.print(f"warehouse: {local.postgres.uri(local.warehouse_db, with_password=False)} (password in "
                      f"{local.postgres.password_file}); component logs in {stack.log_dir}")
        console.print("stop with Ctrl-C or osds down (make down)")
        while True:
            time.sleep(1.0)
            stack.assert_alive()
    except KeyboardInterrupt:
        console.print("stopping …")
        return 0
    finally:
        if stack is not None:
            stack.stop()
        local.postgres.stop()
        pid_file.unlink(missing_ok=True)
        console.print("stopped")


def run_down(project_dir: Path, *, console: Console | None = None) -> int:
    """Signal the running ``osds up`` of ``project_dir`` and wait until it has stopped everything."""
    console = console or Console(soft_wrap=True)
    pid_file = _pid_file(project_dir)
    if not pid_file.exists():
        console.print(f"osds up is not running for {project_dir} (no {pid_file})")
        return 0
    pid = int(pid_file.read_text())
    if not pid_alive(pid):
        pid_file.unlink(missing_ok=True)
        console.print(f"osds up (pid {pid}) is not running any more; removed {pid_file}")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if pid_alive(pid):
        console.print(f"[red]osds up (pid {pid}) did not stop within {STOP_TIMEOUT_S:.0f} s[/]")
        return 1
    console.print(f"osds up (pid {pid}) stopped")
    return 0


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
