"""Airflow's real scheduling stack (api-server, scheduler, dag-processor, triggerer) as child processes.

Used by ``osds up`` (``make up``) and by the end-to-end tests. The caller may already have
imported Airflow with another configuration, so everything here runs Airflow through its CLI in
child processes with their own environment: their own metadata database and ``AIRFLOW_HOME`` on
an embedded PostgreSQL, free ports, and fast heartbeats. The caller talks to them only through
the REST API (httpx, all-admins SimpleAuthManager, so no token) and through the warehouse database.

Why each setting is there: the comments in :meth:`AirflowStack.environ`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

from airflow_osds.embedded import free_port
from airflow_osds.exceptions import OsdsError
from airflow_osds.localrun import LocalStack, airflow_environ

__all__ = ["AirflowStack", "StackError"]

T = TypeVar("T")

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
#: ``executor=`` values: Airflow's LocalExecutor (tasks forked by the scheduler), or the Edge executor,
#: whose workers (:meth:`AirflowStack.start_edge_worker`) fetch tasks from the api-server over HTTP.
EXECUTORS = {
    "local": "LocalExecutor",
    "edge": "airflow.providers.edge3.executors.EdgeExecutor",
}
EDGE_DB_MANAGER = "airflow.providers.edge3.models.db.EdgeDBManager"
# Keys of /api/v2/monitor/health that must all be "healthy" before the stack is usable: the
# database's, and each started component's (the api-server answering is its own health).
HEALTH_KEYS = {"scheduler": "scheduler", "triggerer": "triggerer", "dag-processor": "dag_processor"}
POLL_INTERVAL_S = 0.5
LOG_TAIL_LINES = 40


class StackError(OsdsError):
    """The stack or a run in it did not do what the caller waited for; the message carries the logs."""


@dataclass
class _Component:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"


class AirflowStack:
    """Airflow 3's four server components on their own metadata DB, DAG folder and ports.

    :param local: a started :class:`LocalStack` (its PostgreSQL hosts both databases).
    :param root: a directory for ``home/``, the component logs and (by default) ``dags/``.
    :param metadata_db: name of the stack's own Airflow metadata database (created here).
    :param warehouse_db: name of the database behind the ``warehouse`` connection (created here).
    :param dags_folder: the DAG folder (default ``<root>/dags``).
    :param connections: more Airflow connections (id → connection dict), as ``AIRFLOW_CONN_*``.
    :param extra_env: more environment for every component (e.g. ``OSDS_*`` settings).
    :param fresh: the databases must not exist yet (a test's); else they are reused (``osds up``).
    :param api_port: the api-server's port (default: a free one).
    :param executor: ``"local"`` or ``"edge"`` (see :data:`EXECUTORS`; ``edge`` needs
        ``apache-airflow-providers-edge3``, and workers started with :meth:`start_edge_worker`).
    :param components: the components to start (default all four; the api-server is always
        one: the stack is driven through it). A test that never defers can leave out the triggerer.
    """

    def __init__(
        self,
        local: LocalStack,
        root: Path,
        *,
        metadata_db: str = "airflow_sched",
        warehouse_db: str = "wh_sched",
        dags_folder: Path | None = None,
        connections: Mapping[str, Mapping[str, Any]] = {},
        extra_env: Mapping[str, str] = {},
        fresh: bool = True,
        api_port: int | None = None,
        executor: str = "local",
        components: Sequence[str] = COMPONENTS,
    ) -> None:
        if executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {sorted(EXECUTORS)}, not {executor!r}")
        self.executor = executor
        unknown = sorted(set(components) - set(COMPONENTS))
        if unknown or "api-server" not in components:
            raise ValueError(f"components must include api-server and be among {COMPONENTS}; got {list(components)}")
        self.components = tuple(c for c in COMPONENTS if c in components)
        self.local = local
        self.root = root.resolve()
        self.home = self.root / "home"
        self.dags_folder = (dags_folder or self.root / "dags").resolve()
        self.log_dir = self.root / "component-logs"
        self.metadata_db = metadata_db
        self.warehouse_db = warehouse_db
        self.connections = dict(connections)
        self.extra_env = dict(extra_env)
        self.fresh = fresh
        self.api_port = api_port or free_port()
        self.base_url = f"http://127.0.0.1:{self.api_port}"
        # The CLI next to this interpreter: the venv's, whatever PATH says.
        self.airflow_bin = str(Path(sys.executable).parent / "airflow")
        self._components: list[_Component] = []
        self._client = httpx.Client(base_url=self.base_url, timeout=10.0)
        for path in (self.home, self.dags_folder, self.log_dir):
            path.mkdir(parents=True, exist_ok=True)

    # -- environment ----------------------------------------------------------------
    def environ(self) -> dict[str, str]:
        """The full environment of every component: the caller's, minus its Airflow settings, plus ours."""
        pg = self.local.postgres
        env = airflow_environ(
            home=self.home,
            dags_folder=self.dags_folder,
            metadata_url=pg.uri(self.metadata_db, driver="psycopg2"),
            connections=self.connections,
            # airflow_environ already sets parallelism 2 (LocalExecutor forks that many workers
            # eagerly) and unpaused DAGs at creation.
            extra={
                "AIRFLOW__CORE__EXECUTOR": EXECUTORS[self.executor],
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",  # REST without a token
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__BASE_URL": self.base_url,
                # Tasks talk to the api-server; the default (localhost:8080) makes every task fail.
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                # serve-logs of scheduler and triggerer bind fixed ports on all interfaces by default.
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                # Defaults (300 s / 30 s / 5 s) would make every wait below minutes long.
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
                "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "1",
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
                "AIRFLOW_CONN_WAREHOUSE": pg.airflow_connection_env(self.warehouse_db),
                **(self._edge_environ() if self.executor == "edge" else {}),
                **self.extra_env,
            },
        )
        # The test process's AIRFLOW_* point at the session's metadata DB and DAG folder: drop them all.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        return {**inherited, **env}

    def _edge_environ(self) -> dict[str, str]:
        return {
            # The api-server serves the workers' API (/edge_worker) only when asked to.
            "AIRFLOW__EDGE__API_ENABLED": "True",
            "AIRFLOW__EDGE__API_URL": f"{self.base_url}/edge_worker/v1/rpcapi",
            # `airflow db migrate` creates the edge tables only through the provider's DB manager.
            "AIRFLOW__DATABASE__EXTERNAL_DB_MANAGERS": EDGE_DB_MANAGER,
            # Defaults (30 s heartbeat, 5 s polls) would make maintenance and job pick-up slow to see.
            "AIRFLOW__EDGE__HEARTBEAT_INTERVAL": "1",
            "AIRFLOW__EDGE__JOB_POLL_INTERVAL": "1",
            # The Edge executor forks nothing: parallelism only caps what is queued at once.
            "AIRFLOW__CORE__PARALLELISM": "8",
        }

    def worker_environ(self, name: str, extra: Mapping[str, str] = {}) -> dict[str, str]:
        """The environment of the Edge worker ``name``: its own home, temp and cache directories.

        No metadata-DB setting: a worker reaches Airflow through the api-server only, as on
        another machine. The connections and the API secrets are the stack's.
        """
        root = self.root / "workers" / name
        dirs = {key: root / key for key in ("home", "tmp", "cache")}
        for path in dirs.values():
            path.mkdir(parents=True, exist_ok=True)
        env = self.environ()
        del env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        env.update({
            "AIRFLOW_HOME": str(dirs["home"]),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(dirs["home"] / "logs"),
            "TMPDIR": str(dirs["tmp"]),
            "OSDS_CACHE_DIR": str(dirs["cache"]),
            **extra,
        })
        return env

    # -- lifecycle ------------------------------------------------------------------
    def start(self, *, timeout: float = 120.0) -> AirflowStack:
        """Create both databases, migrate, launch the components and wait until all report healthy."""
        started = time.monotonic()
        self.local.postgres.create_database(self.metadata_db, exist_ok=not self.fresh)
        self.local.postgres.create_database(self.warehouse_db, exist_ok=not self.fresh)
        env = self.environ()
        try:
            self._migrate(env, timeout=timeout)
            for name in self.components:
                self._launch(name, env)
            self.wait_for(self._healthy, timeout=timeout - (time.monotonic() - started), what="all components healthy")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every component by PID: SIGTERM, 2 s, SIGTERM survivors, ≤15 s, then SIGKILL the group."""
        # An open keep-alive connection holds up uvicorn's graceful shutdown: close ours first.
        self._client.close()
        # The triggerer waits 10 s for its runner on one SIGTERM; a second SIGTERM forces it out.
        alive = [c for c in self._components if c.process.poll() is None]
        for component in alive:
            _signal_pid(component.process.pid, signal.SIGTERM)
        alive = _wait_exit(alive, timeout=2.0)
        for component in alive:
            _signal_pid(component.process.pid, signal.SIGTERM)
        alive = _wait_exit(alive, timeout=15.0)
        for component in self._components:
            # Also reaps children (executor workers, serve-logs) a crashed leader left in its group.
            _kill_group(component.process.pid)
        for component in alive:
            component.process.wait(timeout=5)
        self._components.clear()

    def _migrate(self, env: Mapping[str, str], *, timeout: float) -> None:
        # A subprocess: in-process migration would use the test process's (session) configuration.
        log_path = self.log_dir / "db-migrate.log"
        with log_path.open("wb") as log:
            result = subprocess.run(
                [self.airflow_bin, "db", "migrate"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env),
                cwd=self.root,
                timeout=timeout,
            )
        if result.returncode != 0:
            raise StackError(f"`airflow db migrate` failed (exit {result.returncode}):\n{_tail(log_path, 80)}")

    def start_edge_worker(
        self, name: str, *, queues: Sequence[str] = (), concurrency: int = 2, env: Mapping[str, str] = {},
        timeout: float = 60.0,
    ) -> Path:
        """Start ``airflow edge worker`` named ``name`` (its hostname in task instances) and wait until it is registered.

        It runs in ``<root>/workers/<name>`` with the environment of :meth:`worker_environ` plus
        ``env`` (e.g. its own ``AIRFLOW__CORE__DAGS_FOLDER``). ``queues``: the queues it serves
        (default: all). Returns its directory; :meth:`stop` stops it with the rest.
        """
        if self.executor != "edge":
            raise StackError(f"Edge workers need executor='edge' (this stack runs {self.executor!r})")
        command = ["edge", "worker", "--edge-hostname", name, "--concurrency", str(concurrency)]
        if queues:
            command += ["--queues", ",".join(queues)]
        self._launch(f"edge-worker-{name}", self.worker_environ(name, env), command, cwd=self.root / "workers" / name)
        self.wait_for(lambda: self.edge_workers().get(name) in {"idle", "running"}, timeout=timeout,
                      what=f"Edge worker {name} to register")
        return self.root / "workers" / name

    def _launch(self, name: str, env: Mapping[str, str], command: Sequence[str] | None = None,
                cwd: Path | None = None) -> None:
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("wb") as log:
            # Own session: the component and its children form one process group we can kill.
            process = subprocess.Popen(
                [self.airflow_bin, *(command or [name])],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(env),
                cwd=cwd or self.root,
                start_new_session=True,
            )
        self._components.append(_Component(name, process, log_path))

    def _healthy(self) -> bool:
        try:
            response = self._client.get("/api/v2/monitor/health")
        except httpx.TransportError:
            return False  # the api-server is the slowest to come up (~9 s)
        if response.status_code != 200:
            return False
        health = response.json()
        keys = ["metadatabase", *(HEALTH_KEYS[c] for c in self.components if c in HEALTH_KEYS)]
        return all((health.get(key) or {}).get("status") == "healthy" for key in keys)

    # -- diagnostics ----------------------------------------------------------------
    def component_logs(self, lines: int = LOG_TAIL_LINES) -> str:
        parts = [
            f"--- {c.name} (pid {c.process.pid}, exit {c.process.poll()}) {c.log_path} ---\n{_tail(c.log_path, lines)}"
            for c in self._components
        ]
        return "\n".join(parts) or "<no component was started>"

    def task_logs(self, dag_id: str, run_id: str, lines: int = LOG_TAIL_LINES) -> str:
        """Tails of the task log files of one run (JSON lines, under ``home/logs`` and each Edge worker's home)."""
        homes = [self.home, *sorted((self.root / "workers").glob("*/home"))]
        parts = []
        for home in homes:
            run_dir = home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"
            files = sorted(run_dir.rglob("*.log")) if run_dir.is_dir() else []
            parts += [f"--- {f.relative_to(self.root)} ---\n{_tail(f, lines)}" for f in files]
        return "\n".join(parts) or f"<no task logs of {dag_id}/{run_id} under {self.root}>"

    def assert_alive(self) -> None:
        dead = [c for c in self._components if c.process.poll() is not None]
        if dead:
            names = ", ".join(f"{c.name} (exit {c.process.returncode})" for c in dead)
            raise StackError(f"Airflow component(s) exited: {names}\n{self.component_logs(80)}")

    def wait_for(self, predicate: Callable[[], T | None], *, timeout: float = 120.0, what: str) -> T:
        """Poll ``predicate`` until it returns a truthy value, which is returned.

        Fails with component log tails when the time is up or a component died; an exception
        from ``predicate`` (e.g. a run reached ``failed``) ends the wait at once. Transient
        connection errors to the api-server are retried.
        """
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while True:
            self.assert_alive()
            try:
                value = predicate()
            except httpx.TransportError as exc:
                value, last_error = None, exc
            if value:
                return value
            if time.monotonic() >= deadline:
                hint = f" (last error: {last_error!r})" if last_error else ""
                raise StackError(f"Timed out after {timeout:.0f} s waiting for {what}{hint}\n{self.component_logs()}")
            time.sleep(POLL_INTERVAL_S)

    # -- REST -----------------------------------------------------------------------
    def _request(self, method: str, path: str, json: Any = None, params: Mapping[str, Any] | None = None) -> Any:
        response = self._client.request(method, path, json=json, params=params)
        if response.status_code >= 400:
            raise StackError(f"{method} {path} -> {response.status_code}: {response.text}")
        return response.json()

    def dag_ids(self) -> set[str]:
        return {d["dag_id"] for d in self._request("GET", "/api/v2/dags", params={"limit": 100})["dags"]}

    def unpause(self, dag_id: str) -> None:
        self._request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, dag_id: str) -> str:
        """Start a manual run now; returns its run id (the body's ``logical_date`` key is required)."""
        return str(self._request("POST", f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None})["dag_run_id"])

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return dict(self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}"))

    def runs(self, dag_id: str) -> list[dict[str, Any]]:
        params = {"order_by": "-run_after"}
        return list(self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns", params=params)["dag_runs"])

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        return list(self._request("GET", path)["task_instances"])

    def upstream_asset_events(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/upstreamAssetEvents"
        return list(self._request("GET", path)["asset_events"])

    def import_errors(self) -> list[dict[str, Any]]:
        return list(self._request("GET", "/api/v2/importErrors")["import_errors"])

    # The Edge provider's UI API (the api-server's /edge_worker app), what its worker pages call.
    def edge_workers(self) -> dict[str, str]:
        """Registered Edge workers: name → state (``idle``, ``running``, ``maintenance mode``…)."""
        return {w["worker_name"]: w["state"] for w in self._request("GET", "/edge_worker/ui/worker")["workers"]}

    def edge_jobs(self, dag_id: str) -> list[dict[str, Any]]:
        """The Edge executor's jobs of ``dag_id``: one per task try, with the ``edge_worker`` that ran it."""
        params = {"dag_id_pattern": dag_id}
        return [j for j in self._request("GET", "/edge_worker/ui/jobs", params=params)["jobs"] if j["dag_id"] == dag_id]

    def set_worker_maintenance(self, name: str, on: bool, *, comment: str = "drained by airflow_osds.stack") -> None:
        """Put an Edge worker into maintenance (it finishes its tasks, fetches no new ones) or take it out."""
        path = f"/edge_worker/ui/worker/{name}/maintenance"
        response = (self._client.post(path, json={"maintenance_comment": comment}) if on
                    else self._client.delete(path))
        if response.status_code >= 400:
            raise StackError(f"maintenance {'on' if on else 'off'} for {name} -> {response.status_code}: {response.text}")

    # -- waits built on the REST helpers --------------------------------------------
    def wait_for_dags(
        self, dag_ids: set[str], *, unexpected_error: Callable[[str], bool], timeout: float = 120.0
    ) -> None:
        """Wait until ``dag_ids`` are parsed.

        Fails at once on an import error whose filename (relative to the DAG folder)
        ``unexpected_error`` flags, instead of timing out on DAGs that will never appear.
        """

        def visible() -> bool:
            broken = [e for e in self.import_errors() if unexpected_error(e["filename"])]
            if broken:
                details = "\n".join(f"--- {e['filename']} ---\n{e['stack_trace']}" for e in broken)
                raise StackError(f"Import error(s) while waiting for DAGs {sorted(dag_ids)}:\n{details}")
            return dag_ids <= self.dag_ids()

        self.wait_for(visible, timeout=timeout, what=f"DAGs {sorted(dag_ids)} to be parsed")

    def wait_for_run(self, dag_id: str, run_id: str, *, timeout: float = 120.0) -> dict[str, Any]:
        """Wait until the run succeeds; fail at once, with its task logs, if it fails."""

        def finished() -> dict[str, Any] | None:
            run = self.run(dag_id, run_id)
            self._fail_if_failed(run)
            return run if run["state"] == "success" else None

        return self.wait_for(finished, timeout=timeout, what=f"run {dag_id}/{run_id} to succeed")

    def wait_for_deferral_drained(self, dag_id: str, run_id: str, task_id: str, *, timeout: float = 60.0) -> None:
        """Wait until the scheduler has processed the executor event of ``task_id``'s exit on deferral.

        Airflow 3.3 fails a resumed task when that event is drained only after the resumed
        attempt is running (apache/airflow#72716, open): a test that lets the trigger fire must
        wait for this first, or it fails at random on a loaded machine. The scheduler logs
        ``TaskInstance Finished: dag_id=…, task_id=…, run_id=…`` with ``state=deferred`` for it.
        """
        needle = f"TaskInstance Finished: dag_id={dag_id}, task_id={task_id}, run_id={run_id},"
        log_path = next(c.log_path for c in self._components if c.name == "scheduler")

        def drained() -> bool:
            text = log_path.read_text(errors="replace")
            return any(needle in line and "state=deferred" in line for line in text.splitlines())

        self.wait_for(drained, timeout=timeout, what=f"the scheduler to drain {task_id}'s deferral exit")

    def wait_for_run_of_type(self, dag_id: str, run_type: str, *, timeout: float = 120.0) -> dict[str, Any]:
        """Wait for a successful run of ``dag_id`` with ``run_type`` (e.g. ``asset_triggered``)."""

        def succeeded() -> dict[str, Any] | None:
            for run in self.runs(dag_id):
                if run["run_type"] == run_type:
                    self._fail_if_failed(run)
                    if run["state"] == "success":
                        return run
            return None

        return self.wait_for(succeeded, timeout=timeout, what=f"a successful {run_type} run of {dag_id}")

    def _fail_if_failed(self, run: dict[str, Any]) -> None:
        if run["state"] != "failed":
            return
        dag_id, run_id = run["dag_id"], run["dag_run_id"]
        states = {ti["task_id"]: ti["state"] for ti in self.task_instances(dag_id, run_id)}
        # The audit log first: it says who failed a task ("state mismatch" from the scheduler,
        # a heartbeat timeout...) in a few lines, where a CI log may cut the long tails below.
        raise StackError(
            f"Run {dag_id}/{run_id} failed; task states {states}\n"
            f"--- audit log of the run ---\n{self.audit_log(dag_id, run_id)}\n"
            f"{self.task_logs(dag_id, run_id)}\n{self.component_logs()}"
        )

    def audit_log(self, dag_id: str, run_id: str) -> str:
        """The run's audit-log events (``/api/v2/eventLogs``): state changes and who made them."""
        try:
            params = {"dag_id": dag_id, "run_id": run_id, "order_by": "when", "limit": 100}
            entries = self._request("GET", "/api/v2/eventLogs", params=params)["event_logs"]
        except (StackError, httpx.TransportError) as exc:
            return f"<audit log unavailable: {exc}>"
        return "\n".join(
            f"{e['when']} {e.get('task_id') or '-'} try {e.get('try_number')} {e['event']}: {e.get('extra') or ''}"
            for e in entries
        ) or "<no audit-log events>"


def _signal_pid(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # the group is already empty


def _wait_exit(components: list[_Component], *, timeout: float) -> list[_Component]:
    """Wait until the components exit or ``timeout`` passes; returns those still running."""
    deadline = time.monotonic() + timeout
    alive = list(components)
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [c for c in alive if c.process.poll() is None]
    return alive
