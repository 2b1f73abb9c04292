"""Cosmos 1.15's side of the dbt runtime part: its own local execution, one task per model (dbt_runtime_child.py drives it).

Usage (Cosmos + dbt venv): dbt_runtime_cosmos.py CONFIG_JSON — then one JSON request per line on
stdin, one JSON reply per line on the original stdout (everything else goes to stderr):

* ``setup``: ``dbt parse`` of the project with the profile Cosmos's tasks use (the flags of
  ``AbstractDbtLocalBase._generate_dbt_flags``, the ``profiles.yml`` of
  ``ProfileConfig.ensure_profile``), so ``<project>/target/partial_parse.msgpack`` is the state
  Cosmos's ``_handle_partial_parse`` copies into each task's temp project; then a ``DbtDag``
  from that manifest (``LoadMode.DBT_MANIFEST``, ``TestBehavior.BUILD``: a ``dbt build`` task
  per node with its tests, ``TestIndirectSelection.CAUTIOUS`` as ours, the cache enabled as by
  default so tasks get their ``cache_dir``); dbt is importable, so tasks invoke it in process
  (``InvocationMode.DBT_RUNNER``).
* ``round``: every task's ``execute(context)`` in dependency order, timed; dbt's own log
  (``<temp project>/logs/dbt.log``, read before Cosmos removes the temp dir, the read's time
  not counted) says whether each invocation parsed partially.
* ``profile``: one more task under cProfile.
* ``quit``.
"""

import sys

sys.path.pop(0)

import os  # noqa: E402

_REPLY = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)  # library prints and logging go to stderr; stdout carries only the replies

import cProfile  # noqa: E402
import json  # noqa: E402
import pstats  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402
from typing import Any  # noqa: E402

_ENABLED = "Partial parsing enabled"
_UNABLE = "Unable to do partial parsing because"
_NOT_FOUND = "Partial parse save file not found"

PHASES = [
    ("the task: `DbtBuildLocalOperator.execute`", "cosmos/operators/local.py", "execute"),
    ("Cosmos `run_command` (temp project … cache update)", "cosmos/operators/local.py", "run_command"),
    ("dbt invocation (`dbtRunner.invoke`)", "dbt/cli/main.py", "invoke"),
    ("dbt: load the saved parse and check it (`ManifestLoader.get_full_manifest`)", "dbt/parser/manifest.py",
     "get_full_manifest"),
    ("dbt: write manifest.json (`write_manifest`)", "dbt/parser/manifest.py", "write_manifest"),
    ("dbt: write partial_parse.msgpack", "dbt/parser/manifest.py", "write_manifest_for_partial_parse"),
    ("dbt: run the nodes (`execute_nodes`)", "dbt/task/runnable.py", "execute_nodes"),
    ("Cosmos: symlink the project into a temp dir (`_clone_project`)", "cosmos/operators/local.py", "_clone_project"),
    ("Cosmos: copy and patch the partial parse (`_handle_partial_parse`)", "cosmos/operators/local.py",
     "_handle_partial_parse"),
    ("Cosmos: write the cache back (`_update_partial_parse_cache`)", "cosmos/operators/local.py",
     "_update_partial_parse_cache"),
    ("Cosmos: profiles.yml (`ensure_profile`)", "cosmos/config.py", "ensure_profile"),
    ("Cosmos: OpenLineage events from the artifacts", "cosmos/operators/local.py",
     "calculate_openlineage_events_completes"),
    ("Cosmos: compiled SQL into the rendered fields (`store_compiled_sql`)", "cosmos/operators/local.py",
     "store_compiled_sql"),
    ("Cosmos: reset dbt's adapters + `gc.collect()`", "cosmos/dbt/runner.py", "_cleanup_dbt_adapters"),
]


def reply(payload: dict[str, Any]) -> None:
    _REPLY.write(json.dumps(payload) + "\n")
    _REPLY.flush()


def outcome(lines: list[str]) -> tuple[bool | None, str, str]:
    """(partial?, why not, the deciding log line) from dbt's log."""
    for line in lines:
        if _UNABLE in line:
            return False, line.split(_UNABLE, 1)[1].strip(), line.strip()
        if _NOT_FOUND in line:
            return False, "no parse state was found", line.strip()
    for line in lines:
        if _ENABLED in line:
            return True, "", line.strip()
    return None, "dbt's log says nothing about partial parsing", ""


class Runner:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.project = Path(config["cosmos_project"])
        self.last: dict[str, Any] = {}
        self.dag: Any = None
        self.order: list[Any] = []

    # -- set-up -----------------------------------------------------------------------------
    def setup(self, names: list[str]) -> dict[str, Any]:
        t0 = time.perf_counter()
        import pendulum
        from cosmos import DbtDag, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
        from cosmos.constants import LoadMode, TestBehavior, TestIndirectSelection
        from cosmos.dbt import runner as dbt_runner
        from cosmos.profiles import PostgresUserPasswordProfileMapping

        import_s = time.perf_counter() - t0
        self.profile_config = ProfileConfig(
            profile_name=self.config["profile_name"], target_name="dev",
            profile_mapping=PostgresUserPasswordProfileMapping(conn_id="warehouse",
                                                               profile_args={"schema": "public", "threads": 1}),
        )
        self._wrap_run_command(dbt_runner)
        # The parse the deployment ships in target/: the flags and profile Cosmos's tasks use.
        t = time.perf_counter()
        with self.profile_config.ensure_profile() as (profile_path, env_vars):
            flags = ["--project-dir", str(self.project), "--profiles-dir", str(profile_path.parent),
                     "--profile", self.profile_config.profile_name, "--target", self.profile_config.target_name,
                     "--no-static-parser"]
            env = {**os.environ, **env_vars}
            result = dbt_runner.run_command(["dbt", "parse", *flags], env, str(self.project))
            profile_yml = "\n".join(line for line in Path(profile_path).read_text().splitlines()
                                    if "password" not in line)
        if not result.success:
            raise RuntimeError(f"dbt parse with Cosmos's profile failed: {result.exception}")
        parse_s = time.perf_counter() - t
        t = time.perf_counter()
        self.dag = DbtDag(
            dag_id=self.config["cosmos_dag_id"], schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
            catchup=False,
            project_config=ProjectConfig(manifest_path=str(self.project / "target" / "manifest.json"),
                                         project_name=self.config["project_name"]),
            profile_config=self.profile_config,
            execution_config=ExecutionConfig(dbt_project_path=str(self.project),
                                             test_indirect_selection=TestIndirectSelection.CAUTIOUS),
            render_config=RenderConfig(load_method=LoadMode.DBT_MANIFEST, test_behavior=TestBehavior.BUILD),
        )
        dag_s = time.perf_counter() - t
        everything = self._topological(self.dag)
        # Like for like: the tasks of the nodes ours runs (Cosmos also renders ephemeral models, which
        # build nothing; ours does not).
        wanted = set(names)
        self.order = [t for t in everything if _node_name(t.task_id) in wanted]
        first = self.order[0]
        return {"tasks": [t.task_id for t in self.order], "extra_tasks": [t.task_id for t in everything
                                                                           if t not in self.order],
                "import_s": import_s, "parse_s": parse_s, "dag_s": dag_s,
                "operator": f"{type(first).__module__}.{type(first).__name__}",
                "cache_dir": str(first.cache_dir), "partial_parse": first.partial_parse,
                "profile_yml": profile_yml, "parse_flags": flags}

    @staticmethod
    def _topological(dag: Any) -> list[Any]:
        tasks = list(dag.tasks)
        done: set[str] = set()
        order = []
        while len(order) < len(tasks):
            ready = [t for t in tasks if t.task_id not in done and set(t.upstream_task_ids) <= done]
            if not ready:
                raise RuntimeError("Cosmos's DAG has a cycle")
            order.append(ready[0])
            done.add(ready[0].task_id)
        return order

    def _wrap_run_command(self, dbt_runner: Any) -> None:
        """Time dbt's own invocation (``dbtRunner.invoke``) and read dbt's log before Cosmos removes the temp dir."""
        original = dbt_runner.run_command

        from dbt.cli.main import dbtRunner

        invoke = dbtRunner.invoke
        clock = {"s": 0.0}

        def timed_invoke(runner: Any, *args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return invoke(runner, *args, **kwargs)
            finally:
                clock["s"] = time.perf_counter() - t

        dbtRunner.invoke = timed_invoke  # type: ignore[method-assign]

        def timed(command: list[str], env: dict[str, str], cwd: str, *args: Any, **kwargs: Any) -> Any:
            clock["s"] = 0.0
            try:
                return original(command, env, cwd, *args, **kwargs)
            finally:
                dbt_s = clock["s"]
                t = time.perf_counter()
                log = Path(cwd) / "logs" / "dbt.log"
                lines = log.read_text(errors="replace").splitlines() if log.exists() else []
                partial, why, line = outcome(lines)
                self.last = {"dbt_s": dbt_s, "partial": partial, "why": why, "line": line[:300],
                             "read_s": time.perf_counter() - t, "args": command[1:]}

        dbt_runner.run_command = timed

    # -- runs -------------------------------------------------------------------------------
    def run_task(self, op: Any, run_id: str) -> dict[str, Any]:
        ti = SimpleNamespace(dag_id=self.dag.dag_id, task_id=op.task_id, run_id=run_id, map_index=-1, try_number=1,
                             max_tries=0, xcom_push=lambda *a, **k: None)
        context = {"ti": ti, "task_instance": ti, "task": op, "dag": self.dag, "run_id": run_id,
                   "dag_run": SimpleNamespace(run_id=run_id, logical_date=None, team_name=None),
                   "outlet_events": _OutletEvents()}
        self.last = {}
        t = time.perf_counter()
        op.execute(context)  # raises when dbt fails
        elapsed = time.perf_counter() - t
        if not self.last:
            raise RuntimeError(f"{op.task_id}: Cosmos did not invoke dbt through cosmos.dbt.runner.run_command "
                               f"(invocation mode {op.invocation_mode})")
        return {"s": elapsed - self.last["read_s"], "dbt_s": self.last["dbt_s"], "partial": self.last["partial"],
                "why": self.last["why"], "line": self.last["line"], "mode": str(op.invocation_mode)}

    def round(self, run_id: str) -> dict[str, Any]:
        out = [self.run_task(op, run_id) for op in self.order]
        first = self.last.get("args", [])
        return {"tasks": [{k: v for k, v in r.items() if k != "line"} for r in out],
                "evidence": next((r["line"] for r in out if r["line"]), ""),
                "command": first}

    def profile(self) -> dict[str, Any]:
        op = self.order[len(self.order) // 2]
        prof = cProfile.Profile()
        prof.enable()
        self.run_task(op, "profile")
        prof.disable()
        stats = pstats.Stats(prof)
        raw = stats.stats  # type: ignore[attr-defined]
        phases = []
        for label, suffix, name in PHASES:
            cum, calls = 0.0, 0
            for (file, _line, func), (_cc, nc, _tt, ct, _callers) in raw.items():
                if func == name and suffix in file.replace("\\", "/"):
                    cum, calls = max(cum, ct), calls + nc
            if calls:
                phases.append({"label": label, "cumulative_s": cum, "calls": calls})
        return {"task": op.task_id, "select": getattr(op, "select", None), "total_s": stats.total_tt,  # type: ignore[attr-defined]
                "phases": phases}


def _node_name(task_id: str) -> str:
    for suffix in ("_model_build", "_seed_build", "_snapshot_build"):
        if task_id.endswith(suffix):
            return task_id[: -len(suffix)]
    return task_id


class _OutletEvents(dict):
    def __missing__(self, key: Any) -> Any:
        value = self[key] = SimpleNamespace(extra={}, add=lambda *a, **k: None)
        return value


def main(argv: list[str]) -> int:
    config = json.loads(argv[0])
    runner = Runner(config)
    for line in sys.stdin:
        request = json.loads(line)
        op = request["op"]
        try:
            if op == "quit":
                reply({"ok": True})
                return 0
            if op == "setup":
                reply(runner.setup(request["names"]))
            elif op == "round":
                reply(runner.round(request["run_id"]))
            elif op == "profile":
                reply(runner.profile())
            else:
                reply({"error": f"unknown request {op!r}"})
        except Exception as exc:  # noqa: BLE001
            traceback.print_exc()
            reply({"error": f"{type(exc).__name__}: {exc}"[:2000]})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
