"""Run one dbt command against a PostgreSQL target, in process or through another virtualenv.

Two invocation modes, same arguments, same result:

* **in process** (``dbt_executable=None``): ``dbt.cli.main.dbtRunner``, imported lazily so this
  module imports without dbt. dbt keeps global state (flags, adapter registry, event
  manager) and is **not safe for concurrent invocations in one process**; this module
  serialises them with a process-wide lock, and the password env var is set in
  ``os.environ`` only for the duration of the call. Run one dbt task per worker process
  (Airflow's default task runner does) for real parallelism.
* **subprocess** (``dbt_executable="/venvs/dbt/bin/dbt"`` or the venv directory): for
  deployments where dbt's dependencies conflict with Airflow's. Output is captured line
  by line (and optionally streamed to ``log_callback``), with the password redacted.

Every invocation gets ``--profiles-dir`` (a private temp dir, see
:mod:`airflow_osds.dbt.profiles`), ``--target-path`` and ``--log-path`` outside the project,
so the project directory may be read-only.

**Artifacts and ``dbt retry``.** Without ``target_path`` the target directory is a temp dir:
``run_results.json`` is parsed into the result and the directory removed. ``dbt retry``
needs the *previous* invocation's ``run_results.json``: pass the same persistent
``target_path`` to the failed command and to ``retry``. In dbt 1.11 retry re-runs the
previous command with its previous arguments (selection, full-refresh …) on the nodes that
errored, failed or were skipped; only ``--vars`` and ``--threads`` may be overridden on the
retry's command line, and profiles/project/target/log paths come from the retry itself. The
retry's own ``run_results.json`` records the combined arguments (``args.which`` is the
original command, e.g. ``"build"``) and lists only the re-run nodes; a retry with nothing
left to retry succeeds and runs nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_osds.dbt.profiles import PostgresTarget, RenderedProfile, rendered_profile
from airflow_osds.exceptions import OsdsError

__all__ = [
    "COMMANDS",
    "DbtCommandError",
    "DbtRunError",
    "DbtRunResult",
    "build_args",
    "redact",
    "run_dbt",
]

REDACTED = "***"

# Which selection flags each supported command accepts (from ``dbt <cmd> --help``, 1.11).
# An allow-list: ``clean``/``deps``/``init`` would write into the (possibly read-only) project.
_SELECTING = {"select", "exclude", "selector"}
COMMANDS: Mapping[str, frozenset[str]] = {
    "build": frozenset(_SELECTING | {"full_refresh"}),
    "run": frozenset(_SELECTING | {"full_refresh"}),
    "test": frozenset(_SELECTING),
    "seed": frozenset(_SELECTING | {"full_refresh"}),
    "snapshot": frozenset(_SELECTING),
    "source freshness": frozenset(_SELECTING),
    "compile": frozenset(_SELECTING | {"full_refresh"}),
    "ls": frozenset(_SELECTING),
    "retry": frozenset(),
    "parse": frozenset(),
}

# The password's env var and the usage-stats switch; colours off so captured logs stay plain.
_BASE_ENV = {"DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DBT_USE_COLORS": "false", "DBT_USE_COLORS_FILE": "false"}
# Variables of the Airflow interpreter that would leak into another virtualenv's Python.
_ISOLATED_VARS = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")

# dbt's in-process state is global: one invocation at a time per process.
_IN_PROCESS_LOCK = threading.Lock()


class DbtRunError(OsdsError):
    """dbt could not run, or ran and reported failures (see ``result``)."""

    def __init__(self, message: str, *, result: DbtRunResult | None = None) -> None:
        self.result = result
        super().__init__(message)


class DbtCommandError(DbtRunError):
    """The requested dbt command or its options are not supported."""


@dataclass
class DbtRunResult:
    """What one dbt invocation did.

    :param command: the dbt command, e.g. ``"build"``.
    :param args: the full argument list passed to dbt (no secrets in it).
    :param success: dbt's own verdict (``False`` on any error or test failure).
    :param exit_code: dbt's CLI exit code: 0 ok, 1 failures in nodes, 2 dbt itself failed.
    :param run_results: the parsed ``run_results.json`` of *this* invocation, or ``None``
        (``parse`` and ``source freshness`` write none; a crash may write none).
    :param sources: the parsed ``sources.json`` of a ``source freshness`` run, or ``None``.
    :param target_path: the target directory; removed after the run when it was a temp dir.
    :param manifest_path: ``manifest.json`` when it exists after the run and the target
        directory is kept, else ``None``.
    :param log_lines: dbt's log output (subprocess: stdout+stderr; in process: event
        messages), password redacted.
    :param error: the exception dbt raised (in process) or the last log lines (subprocess)
        when ``exit_code == 2``; redacted.
    :param elapsed: wall-clock seconds.
    """

    command: str
    args: list[str]
    success: bool
    exit_code: int
    target_path: Path
    run_results: dict[str, Any] | None = None
    sources: dict[str, Any] | None = None
    run_results_path: Path | None = None
    manifest_path: Path | None = None
    log_lines: list[str] = field(default_factory=list)
    error: str | None = None
    elapsed: float = 0.0

    def node_statuses(self) -> dict[str, str]:
        """``unique_id`` → status for every node in ``run_results`` (``{}`` when there are none)."""
        results = (self.run_results or {}).get("results") or []
        return {str(r.get("unique_id")): str(r.get("status")) for r in results}

    def failed_nodes(self) -> list[str]:
        """``unique_id`` of every node that errored or failed (tests with ``fail``)."""
        bad = {"error", "fail", "runtime error"}
        return [uid for uid, status in self.node_statuses().items() if status in bad]

    def raise_for_status(self) -> DbtRunResult:
        """Return ``self`` when dbt succeeded, else raise :class:`DbtRunError` naming what failed."""
        if self.success:
            return self
        failed = self.failed_nodes()
        detail = f"failed nodes: {', '.join(failed)}" if failed else (self.error or "see the dbt log")
        raise DbtRunError(f"dbt {self.command} failed (exit code {self.exit_code}); {detail}", result=self)


def redact(text: str, secrets: Sequence[str]) -> str:
    """Replace every non-empty secret in ``text`` with ``***``."""
    # Longest first, so a secret containing another one is not half-replaced.
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def build_args(
    command: str,
    *,
    project_dir: Path,
    profile: RenderedProfile,
    target_path: Path,
    log_path: Path,
    select: Sequence[str] = (),
    exclude: Sequence[str] = (),
    selector: str | None = None,
    vars: Mapping[str, Any] | None = None,
    full_refresh: bool = False,
    threads: int | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The dbt argument list (without the ``dbt`` executable) for one invocation.

    :raises DbtCommandError: unknown command, or an option the command does not take.
    """
    if command not in COMMANDS:
        raise DbtCommandError(f"Unsupported dbt command {command!r}; supported: {sorted(COMMANDS)}.")
    accepted = COMMANDS[command]
    given = {
        "select": bool(select),
        "exclude": bool(exclude),
        "selector": selector is not None,
        "full_refresh": full_refresh,
    }
    refused = sorted(name for name, used in given.items() if used and name not in accepted)
    if refused:
        hint = " (retry re-uses the failed run's selection)" if command == "retry" else ""
        raise DbtCommandError(f"dbt {command} does not take {', '.join(refused)}{hint}.")
    args = [
        *command.split(),
        "--project-dir", str(project_dir),
        "--profiles-dir", str(profile.profiles_dir),
        "--profile", profile.profile_name,
        "--target", profile.target_name,
        "--target-path", str(target_path),
        "--log-path", str(log_path),
    ]  # fmt: skip
    if select:
        args += ["--select", *select]
    if exclude:
        args += ["--exclude", *exclude]
    if selector:
        args += ["--selector", selector]
    if vars:
        # JSON is valid YAML, and unambiguous for dbt's --vars parser.
        args += ["--vars", json.dumps(dict(vars), sort_keys=True, default=str)]
    if full_refresh:
        args.append("--full-refresh")
    if threads is not None:
        args += ["--threads", str(int(threads))]
    args += list(extra_args)
    return args


def run_dbt(
    command: str,
    *,
    project_dir: str | os.PathLike[str],
    target: PostgresTarget,
    select: Sequence[str] = (),
    exclude: Sequence[str] = (),
    selector: str | None = None,
    vars: Mapping[str, Any] | None = None,
    full_refresh: bool = False,
    threads: int | None = None,
    extra_args: Sequence[str] = (),
    target_path: str | os.PathLike[str] | None = None,
    log_path: str | os.PathLike[str] | None = None,
    dbt_executable: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    profile_name: str = "osds",
    target_name: str = "osds",
    timeout: float | None = None,
    log_callback: Callable[[str], None] | None = None,
    on_profile: Callable[[RenderedProfile], None] | None = None,
) -> DbtRunResult:
    """Run ``dbt <command>`` and return what it did; never raises for failing nodes.

    :param command: one of :data:`COMMANDS`, e.g. ``"build"`` or ``"source freshness"``.
    :param project_dir: the dbt project (may be read-only).
    :param target: the PostgreSQL connection fields; rendered into a temp ``profiles.yml``.
    :param select: ``--select`` criteria, e.g. ``["tag:web", "path:models/marts"]``.
    :param exclude: ``--exclude`` criteria.
    :param selector: a YAML selector name.
    :param vars: ``--vars`` (sent as JSON).
    :param full_refresh: ``--full-refresh``.
    :param threads: ``--threads``; default is the profile's ``threads``.
    :param extra_args: more arguments, appended as is (never put secrets here).
    :param target_path: persistent target directory (created if missing). Give the same
        one to a failed command and to its ``retry``; it also keeps ``manifest.json`` and
        dbt's partial-parse cache. ``None``: a temp dir, removed after the run.
    :param log_path: where ``dbt.log`` goes; ``None``: a temp dir, removed after the run.
    :param dbt_executable: a ``dbt`` executable (or a virtualenv directory holding
        ``bin/dbt``) to run as a subprocess; ``None``: in process with ``dbtRunner``.
    :param env: extra environment variables for dbt (e.g. for ``env_var()`` in the project);
        their values are redacted from logs too when they look like secrets (see below).
    :param profile_name: the ``profile:`` of the project.
    :param target_name: the target name inside the rendered profile.
    :param timeout: subprocess mode only: seconds before dbt is killed (exit code 2).
    :param log_callback: called with every (redacted) log line as it arrives, e.g. to stream
        into a task log.
    :param on_profile: called with the rendered profile before dbt starts (for inspection).
    :raises DbtCommandError: unsupported command/options, or the executable does not exist.
    """
    project = Path(project_dir).resolve()
    if not (project / "dbt_project.yml").is_file():
        raise DbtRunError(f"{project} is not a dbt project (no dbt_project.yml).")
    executable = _resolve_executable(dbt_executable) if dbt_executable is not None else None
    secrets = [target.password or ""] + [v for k, v in (env or {}).items() if _looks_secret(k)]

    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="osds-dbt-run-")))
        keep_target = target_path is not None
        target_dir = Path(target_path).resolve() if target_path is not None else work / "target"
        log_dir = Path(log_path).resolve() if log_path is not None else work / "logs"
        target_dir.mkdir(parents=True, exist_ok=True)
        log_dir.mkdir(parents=True, exist_ok=True)
        # A persistent target dir still holds the previous run's results (retry reads them);
        # remember its invocation id to tell a fresh run_results.json from a stale one.
        previous_invocation = _invocation_id(target_dir / "run_results.json")
        previous_sources = _invocation_id(target_dir / "sources.json")

        profile = stack.enter_context(rendered_profile(target, profile_name=profile_name, target_name=target_name))
        if on_profile is not None:
            on_profile(profile)
        args = build_args(
            command,
            project_dir=project,
            profile=profile,
            target_path=target_dir,
            log_path=log_dir,
            select=select,
            exclude=exclude,
            selector=selector,
            vars=vars,
            full_refresh=full_refresh,
            threads=threads,
            extra_args=extra_args,
        )
        run_env = {**_BASE_ENV, **(env or {}), **profile.env}
        lines: list[str] = []

        def emit(line: str) -> None:
            clean = redact(line.rstrip("\n"), secrets)
            lines.append(clean)
            if log_callback is not None:
                log_callback(clean)

        started = time.monotonic()
        if executable is None:
            success, exit_code, error = _invoke_in_process(args, run_env, emit)
        else:
            success, exit_code, error = _invoke_subprocess(executable, args, run_env, emit, cwd=work, timeout=timeout)
        elapsed = time.monotonic() - started

        result = DbtRunResult(
            command=command,
            args=args,
            success=success,
            exit_code=exit_code,
            target_path=target_dir,
            log_lines=lines,
            error=redact(error, secrets) if error else None,
            elapsed=round(elapsed, 3),
        )
        run_results = target_dir / "run_results.json"
        fresh = _load_fresh(run_results, previous_invocation)
        if fresh is not None:
            result.run_results, result.run_results_path = fresh, run_results
        if command == "source freshness":
            result.sources = _load_fresh(target_dir / "sources.json", previous_sources)
        manifest = target_dir / "manifest.json"
        if keep_target and manifest.is_file():
            result.manifest_path = manifest
        if not keep_target:
            # The temp target dir goes away with the work dir; only the parsed JSON remains.
            result.run_results_path = None
        return result


# -- invocation modes -------------------------------------------------------------------------


def _invoke_in_process(args: list[str], env: Mapping[str, str], emit: Callable[[str], None]) -> tuple[bool, int, str | None]:
    """Run dbt with ``dbtRunner``; returns ``(success, exit_code, error)``."""
    try:
        from dbt.cli.main import dbtRunner
    except ImportError as exc:
        raise DbtRunError(
            "dbt is not importable in this interpreter; install dbt-core and dbt-postgres "
            "or pass dbt_executable= to run dbt from another virtualenv."
        ) from exc

    def on_event(event: Any) -> None:
        # Collect what dbt would log at info level and above; debug events are noise here.
        info = getattr(event, "info", None)
        if info is not None and getattr(info, "level", "info") != "debug" and info.msg:
            for line in str(info.msg).splitlines():
                emit(line)

    # No chdir: the cwd is process-wide and every path dbt gets is absolute anyway.
    with _IN_PROCESS_LOCK, _patched_environ(env):
        outcome = dbtRunner(callbacks=[on_event]).invoke(args)
    if outcome.exception is not None:
        return False, 2, f"{type(outcome.exception).__name__}: {outcome.exception}"
    return bool(outcome.success), 0 if outcome.success else 1, None


def _invoke_subprocess(
    executable: Path,
    args: list[str],
    env: Mapping[str, str],
    emit: Callable[[str], None],
    *,
    cwd: Path,
    timeout: float | None,
) -> tuple[bool, int, str | None]:
    """Run ``<executable> <args>``; returns ``(success, exit_code, error)``."""
    child_env = {k: v for k, v in os.environ.items() if k not in _ISOLATED_VARS}
    child_env.update(env)
    # The venv's bin first, so dbt's own helpers resolve to the same virtualenv.
    child_env["PATH"] = os.pathsep.join([str(executable.parent), child_env.get("PATH", "")])
    proc = subprocess.Popen(
        [str(executable), *args],
        cwd=cwd,
        env=child_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    timer = threading.Timer(timeout, proc.kill) if timeout else None
    if timer is not None:
        timer.start()
    tail: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            emit(line)
            tail = (tail + [line.rstrip("\n")])[-20:]
        code = proc.wait()
    finally:
        if timer is not None:
            timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if code < 0:
        return False, 2, f"dbt was killed by signal {-code}" + (f" (timeout {timeout}s)" if timeout else "")
    error = "\n".join(tail) if code >= 2 else None
    return code == 0, code, error


# -- helpers ----------------------------------------------------------------------------------


def _resolve_executable(value: str | os.PathLike[str]) -> Path:
    path = Path(value)
    if path.is_dir():
        path = path / "bin" / "dbt"
    if not path.is_file() or not os.access(path, os.X_OK):
        found = shutil.which(str(value))
        if found is None:
            raise DbtCommandError(f"dbt executable {value!r} not found (give a path to bin/dbt or its venv).")
        path = Path(found)
    # absolute() rather than resolve(): a venv's scripts must keep their venv path.
    return path.absolute()


def _looks_secret(name: str) -> bool:
    upper = name.upper()
    return any(word in upper for word in ("PASSWORD", "SECRET", "TOKEN", "KEY"))


def _invocation_id(path: Path) -> str | None:
    data = _read_json(path)
    return str((data or {}).get("metadata", {}).get("invocation_id")) if data else None


def _load_fresh(path: Path, previous_invocation: str | None) -> dict[str, Any] | None:
    data = _read_json(path)
    if data is None:
        return None
    if previous_invocation is not None and str(data.get("metadata", {}).get("invocation_id")) == previous_invocation:
        return None  # left over from an earlier invocation: this one wrote nothing
    return data


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        with path.open(encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@contextlib.contextmanager
def _patched_environ(values: Mapping[str, str]) -> Iterator[None]:
    """Set ``values`` in ``os.environ`` for the block and restore the previous state after."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
