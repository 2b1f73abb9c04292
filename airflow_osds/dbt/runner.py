"""Run one dbt command against a PostgreSQL target, in process or through another virtualenv.

Two invocation modes, same arguments, same result:

* **in process** (``dbt_executable=None``): ``dbt.cli.main.dbtRunner``, imported lazily so this
  module imports without dbt. dbt keeps global state (flags, adapter registry, event
  manager) and is **not safe for concurrent invocations in one process**; this module
  serialises them with a process-wide lock, and the password env var is set in
  ``os.environ`` only for the duration of the call. Run one dbt task per worker process
  (Airflow's default task runner does) for real parallelism. dbt's ``env_var()`` sees the
  whole environment of the process, Airflow's included: use subprocess mode to isolate it.
* **subprocess** (``dbt_executable="/venvs/dbt/bin/dbt"`` or the venv directory): for
  deployments where dbt's dependencies conflict with Airflow's, or dbt must not see
  Airflow's environment. dbt gets an allow-listed environment only (:data:`INHERITED_ENV`,
  ``LC_*``, the ``DBT_*`` variables set here and the caller's ``env``): never ``AIRFLOW_*``,
  so neither the connections (``AIRFLOW_CONN_*``) nor the Fernet key. Output is captured
  line by line (and optionally streamed to ``log_callback``), secrets redacted.

Every invocation gets ``--profiles-dir`` (a private temp dir, see
:mod:`airflow_osds.dbt.profiles`), ``--target-path`` and ``--log-path`` outside the project,
so the project directory may be read-only.

**Secrets.** The password travels in the environment only. ``--vars`` must travel on dbt's
command line (dbt reads them from nowhere else), where ``ps`` shows them to every user of
the machine and from where dbt copies them into ``run_results.json`` and its debug log: a var
whose name looks secret (:func:`~airflow_osds.dbt.profiles.looks_secret`), or whose value
contains a known secret, is refused with :class:`DbtSecretExposureError`; pass such values
through ``env`` and read them with ``env_var()``. Log lines, error texts and the parsed
``run_results`` are redacted (:func:`redact`; weak secrets are not masked, see
:func:`~airflow_osds.dbt.profiles.is_maskable`), and in the parsed ``run_results`` the
``args.vars`` whose names look secret are replaced by ``***``.

**Stopping.** Pass a :class:`DbtRunHandle` and call its :meth:`~DbtRunHandle.stop` from another
thread or a signal handler (an operator's ``on_kill``). Each invocation's warehouse connections
carry an ``application_name`` of their own (:attr:`DbtRunHandle.application_name`, through
``PGAPPNAME``), by which the handle terminates what a stopped dbt left running
(:mod:`airflow_osds.dbt.backends`).

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
import functools
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_osds.dbt.errors import (
    DbtCommandError,
    DbtNothingSelectedError,
    DbtProjectError,
    DbtRunError,
    DbtSecretExposureError,
)
from airflow_osds.dbt.invocation import (
    INHERITED_ENV,
    DbtRunHandle,
    invoke_in_process,
    invoke_subprocess,
    resolve_executable,
)
from airflow_osds.dbt import partial_parse
from airflow_osds.dbt.backends import APPLICATION_NAME_ENV, new_application_name, terminate_leftovers
from airflow_osds.dbt.partial_parse import ParseReuse
from airflow_osds.dbt.profiles import PostgresTarget, RenderedProfile, is_maskable, looks_secret, rendered_profile

__all__ = [
    "COMMANDS",
    "INHERITED_ENV",
    "LEAN_COMMANDS",
    "DbtCommandError",
    "DbtRunError",
    "DbtRunHandle",
    "DbtRunResult",
    "build_args",
    "redact",
    "run_dbt",
    "scrub",
]

REDACTED = "***"

# Which selection flags each supported command accepts (from ``dbt <cmd> --help``, 1.11).
# An allow-list: ``clean``/``deps``/``init`` would write into the (possibly read-only) project.
_SELECTING = {"select", "exclude", "selector"}
# Commands whose in-process runs need no manifest.json afterwards (see run_dbt's write_manifest).
LEAN_COMMANDS = frozenset({"build", "run", "test", "seed", "snapshot", "retry"})

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
# Commands for which running no node means the selection is wrong. Not ``retry`` (nothing left
# to retry is a success), ``parse`` (selects nothing by design) or ``ls`` (writes no results).
_MUST_SELECT = frozenset({"build", "run", "test", "seed", "snapshot", "compile", "source freshness"})

# The usage-stats switch; colours off so captured logs stay plain.
_BASE_ENV = {"DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DBT_USE_COLORS": "false", "DBT_USE_COLORS_FILE": "false"}
_SECRET_ENV_PREFIX = "DBT_ENV_SECRET_"
_WEAK_PASSWORD_NOTE = (
    "osds: the connection's password is too weak to mask (under 8 characters, or a plain word): "
    "it is not redacted from this log. Use a longer, random password."
)

@dataclass
class DbtRunResult:
    """What one dbt invocation did.

    :param command: the dbt command, e.g. ``"build"``.
    :param args: the full argument list passed to dbt (no secrets in it).
    :param success: dbt's own verdict (``False`` on any error or test failure).
    :param exit_code: dbt's CLI exit code: 0 ok, 1 failures in nodes, 2 dbt itself failed.
    :param selection: the selection, as an error message names it (``--select a --exclude b``).
    :param run_results: the parsed ``run_results.json`` of *this* invocation, redacted (see the
        module docstring), or ``None`` (``parse`` and ``source freshness`` write none; a crash
        may write none).
    :param sources: the parsed ``sources.json`` of a ``source freshness`` run, or ``None``.
    :param target_path: the target directory; removed after the run when it was a temp dir.
    :param manifest_path: ``manifest.json`` when it exists after the run and the target
        directory is kept, else ``None``.
    :param log_lines: dbt's log output (subprocess: stdout+stderr; in process: event
        messages), secrets redacted.
    :param error: the exception dbt raised (in process) or the last log lines (subprocess)
        when ``exit_code == 2``; redacted.
    :param stopped: the run was stopped through its :class:`DbtRunHandle` (or its timeout).
    :param partial_parse: what dbt's own log (``dbt.log``) says: ``True`` when it reused a
        saved parse, ``False`` when it parsed the whole project (``parse_note`` says why),
        ``None`` when the log says neither.
    :param elapsed: wall-clock seconds.
    """

    command: str
    args: list[str]
    success: bool
    exit_code: int
    target_path: Path
    selection: str = "(no selection)"
    run_results: dict[str, Any] | None = None
    sources: dict[str, Any] | None = None
    run_results_path: Path | None = None
    manifest_path: Path | None = None
    log_lines: list[str] = field(default_factory=list)
    error: str | None = None
    stopped: bool = False
    partial_parse: bool | None = None
    parse_note: str = ""
    elapsed: float = 0.0

    def node_statuses(self) -> dict[str, str]:
        """``unique_id`` → status for every node in ``run_results`` (``sources`` for ``source
        freshness``); ``{}`` when there are none."""
        return {str(r.get("unique_id")): str(r.get("status")) for r in self._results()}

    def failed_nodes(self) -> list[str]:
        """``unique_id`` of every node that errored or failed (tests with ``fail``)."""
        bad = {"error", "fail", "runtime error"}
        return [uid for uid, status in self.node_statuses().items() if status in bad]

    @property
    def ran_nothing(self) -> bool:
        """dbt succeeded without running any node although the command must select some.

        dbt itself only warns ("Nothing to do"): the selection names nothing in the project.
        """
        if not self.success or self.command not in _MUST_SELECT:
            return False
        document = self.sources if self.command == "source freshness" else self.run_results
        return document is not None and not document.get("results")

    def failure(self) -> DbtRunError | None:
        """The error this invocation amounts to, or ``None`` when it did its job.

        :class:`DbtNothingSelectedError` (a configuration error) when it ran nothing, else a
        :class:`DbtRunError` naming each failed node with dbt's message.
        """
        if self.ran_nothing:
            return DbtNothingSelectedError(self.command, self.selection, result=self)
        if self.success:
            return None
        messages = {str(r.get("unique_id")): r.get("message") for r in self._results()}
        failed = [
            f"{uid} ({status}): {messages[uid]}" if messages.get(uid) else f"{uid} ({status})"
            for uid, status in self._failures()
        ]
        stopped = ", stopped on request" if self.stopped else ""
        if failed:
            heading = f"dbt {self.command} failed (exit code {self.exit_code}{stopped}):"
            return DbtRunError("\n".join([heading, *failed]), result=self)
        detail = self.error or ("it was stopped on request" if self.stopped else "see the dbt log above")
        return DbtRunError(f"dbt {self.command} failed (exit code {self.exit_code}); {detail}", result=self)

    def raise_for_status(self) -> DbtRunResult:
        """Return ``self`` when dbt did its job, else raise :meth:`failure`."""
        error = self.failure()
        if error is not None:
            raise error
        return self

    def _results(self) -> list[dict[str, Any]]:
        document = self.sources if self.command == "source freshness" and self.sources else self.run_results
        return list((document or {}).get("results") or [])

    def _failures(self) -> list[tuple[str, str]]:
        failed = set(self.failed_nodes())
        return [(uid, status) for uid, status in self.node_statuses().items() if uid in failed]


def redact(text: str, secrets: Sequence[str]) -> str:
    """Replace every occurrence of each maskable secret in ``text`` with ``***``.

    Secrets too weak to mask (:func:`~airflow_osds.dbt.profiles.is_maskable`: under 8
    characters, or a plain word such as ``select`` or ``postgres``) are left alone: replacing
    them would mangle every line of SQL or every name that contains them.
    """
    # Longest first, so a secret containing another one is not half-replaced.
    for secret in sorted({s for s in secrets if s and is_maskable(s)}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def scrub(document: dict[str, Any], secrets: Sequence[str]) -> dict[str, Any]:
    """A copy of a dbt artifact (``run_results.json``, ``sources.json``) safe to log or store.

    Every string is :func:`redact`-ed, and the ``args.vars`` whose names look secret
    (:func:`~airflow_osds.dbt.profiles.looks_secret`) are replaced by ``***``. ``dbt retry``
    needs the document's ``args``; it still works because a retry may override ``--vars``.
    """

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return redact(value, secrets)
        if isinstance(value, dict):
            return {key: walk(item) for key, item in value.items()}
        if isinstance(value, list):
            return [walk(item) for item in value]
        return value

    clean: dict[str, Any] = walk(document)
    args = clean.get("args")
    if isinstance(args, dict) and isinstance(args.get("vars"), dict):
        args["vars"] = {k: REDACTED if looks_secret(str(k)) else v for k, v in args["vars"].items()}
    return clean


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
    _check_command(command, select=select, exclude=exclude, selector=selector, full_refresh=full_refresh)
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
    handle: DbtRunHandle | None = None,
    parse_state: str | os.PathLike[str] | None = None,
    write_manifest: bool = False,
) -> DbtRunResult:
    """Run ``dbt <command>`` and return what it did; never raises for failing nodes.

    Call :meth:`DbtRunResult.raise_for_status` to turn failures, and a selection that ran
    nothing, into errors.

    :param command: one of :data:`COMMANDS`, e.g. ``"build"`` or ``"source freshness"``.
    :param project_dir: the dbt project (may be read-only).
    :param target: the PostgreSQL connection fields; rendered into a temp ``profiles.yml``.
    :param select: ``--select`` criteria, e.g. ``["tag:web", "path:models/marts"]``.
    :param exclude: ``--exclude`` criteria.
    :param selector: a YAML selector name.
    :param vars: ``--vars`` (sent as JSON on dbt's command line: no secrets, see the module
        docstring).
    :param full_refresh: ``--full-refresh``.
    :param threads: ``--threads``; default is the profile's ``threads``.
    :param extra_args: more arguments, appended as is (no ``--vars``, no secrets).
    :param target_path: persistent target directory (created if missing). Give the same
        one to a failed command and to its ``retry``; it also keeps ``manifest.json`` and
        dbt's partial-parse cache. ``None``: a temp dir, removed after the run.
    :param log_path: where ``dbt.log`` goes; ``None``: a temp dir, removed after the run.
    :param dbt_executable: a ``dbt`` executable (or a virtualenv directory holding
        ``bin/dbt``) to run as a subprocess; ``None``: in process with ``dbtRunner``.
    :param env: environment variables for dbt (e.g. for ``env_var()`` in the project); never
        ``AIRFLOW_*``. Values of secret-looking names (and ``DBT_ENV_SECRET_*``) are redacted.
    :param profile_name: the ``profile:`` of the project.
    :param target_name: the target name inside the rendered profile.
    :param timeout: subprocess mode only: seconds before dbt is stopped (exit code 2).
    :param log_callback: called with every (redacted) log line as it arrives, e.g. to stream
        into a task log.
    :param on_profile: called with the rendered profile before dbt starts (for inspection).
    :param handle: lets another thread stop the run (:meth:`DbtRunHandle.stop`).
    :param parse_state: the directory where ``osds dbt-parse`` wrote the manifest (its parse
        state and record beside it): when this run's inputs are the parse's, the state is
        copied into the target directory so dbt does not parse the project again (see
        :mod:`airflow_osds.dbt.partial_parse`); the log says which way it went, and why.
    :param write_manifest: in process, the commands of :data:`LEAN_COMMANDS` skip writing
        ``manifest.json`` (dbt writes it twice per invocation, JSON-encoding the whole project:
        most of a one-model task's time) and ``run_results.json`` is written from dbt's
        in-memory result instead; pass ``True`` when the run's manifest is wanted (a ``state:``
        run stores it). Subprocess runs and the other commands always write both.
    :raises DbtConfigurationError: the invocation cannot work: an unsupported command or
        option (:class:`DbtCommandError`), no ``dbt_project.yml`` (:class:`DbtProjectError`),
        dbt missing (:class:`DbtNotInstalledError`), a profile that cannot be rendered
        (:class:`~airflow_osds.dbt.errors.ProfileError`), a secret that would leak
        (:class:`DbtSecretExposureError`).
    """
    project = Path(project_dir).resolve()
    if not (project / "dbt_project.yml").is_file():
        raise DbtProjectError(str(project))
    _check_command(command, select=select, exclude=exclude, selector=selector, full_refresh=full_refresh)
    executable = resolve_executable(dbt_executable) if dbt_executable is not None else None
    caller_env = dict(env or {})
    secrets = _secrets(target, caller_env)
    _refuse_exposed_secrets(caller_env, vars, extra_args, secrets)
    handle = handle or DbtRunHandle()

    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="osds-dbt-run-")))
        target_dir = Path(target_path).resolve() if target_path is not None else work / "target"
        log_dir = Path(log_path).resolve() if log_path is not None else work / "logs"
        target_dir.mkdir(parents=True, exist_ok=True)
        log_dir.mkdir(parents=True, exist_ok=True)
        # A persistent target dir still holds the previous run's results (retry reads them);
        # remember their invocation ids to tell fresh artifacts from stale ones.
        previous = {name: _invocation_id(target_dir / name) for name in ("run_results.json", "sources.json")}

        profile = stack.enter_context(rendered_profile(target, profile_name=profile_name, target_name=target_name))
        if on_profile is not None:
            on_profile(profile)
        lean = executable is None and command in LEAN_COMMANDS and not write_manifest
        reuse = None
        if parse_state is not None:
            reuse = _seed_parse_state(Path(parse_state), target_dir, target, vars, profile_name, target_name, executable,
                                      project)
        # The parse's files are proven unchanged: dbt may trust its saved file list (no re-read, no re-hash).
        trusted = ["--no-partial-parse-file-diff"] if reuse is not None and reuse.files_unchanged else []
        args = build_args(
            command, project_dir=project, profile=profile, target_path=target_dir, log_path=log_dir,
            select=select, exclude=exclude, selector=selector, vars=vars, full_refresh=full_refresh,
            threads=threads, extra_args=[*extra_args, *_quiet_args(executable, log_callback, log_path, lean), *trusted],
        )  # fmt: skip
        run_env = {**_BASE_ENV, **caller_env, **profile.env}
        # Each invocation's connections have a name of their own: what a stopped dbt leaves
        # running in the warehouse is found by it (see airflow_osds.dbt.backends).
        application_name = None if "application_name" in target.options else new_application_name()
        if application_name is not None:
            run_env[APPLICATION_NAME_ENV] = application_name
        lines: list[str] = []

        def emit(line: str) -> None:
            clean = redact(line.rstrip("\n"), secrets)
            lines.append(clean)
            if log_callback is not None:
                log_callback(clean)

        if target.password and not is_maskable(target.password):
            emit(_WEAK_PASSWORD_NOTE)
        handle._attach_leftovers(
            application_name,
            functools.partial(terminate_leftovers, target, application_name) if application_name is not None else None,
            emit,
        )
        parse_lines: list[str] = []  # in process: dbt's debug events about parsing (no dbt.log needed)
        if reuse is not None:
            emit(reuse.log_line())
        started = time.monotonic()
        try:
            if executable is None:
                success, exit_code, error = invoke_in_process(
                    args, run_env, emit, handle, run_results_to=target_dir / "run_results.json" if lean else None,
                    on_debug=lambda line: partial_parse.is_parse_line(line) and parse_lines.append(redact(line, secrets)),
                )
            else:
                success, exit_code, error = invoke_subprocess(
                    executable, args, run_env, emit, cwd=work, timeout=timeout, handle=handle
                )
        finally:
            handle._finished()
        result = DbtRunResult(
            command=command,
            args=args,
            success=success,
            exit_code=exit_code,
            target_path=target_dir,
            selection=redact(_describe_selection(select, exclude, selector), secrets),
            log_lines=lines,
            error=redact(error, secrets) if error else None,
            stopped=handle.stop_requested,
            elapsed=round(time.monotonic() - started, 3),
        )
        _attach_artifacts(result, previous, secrets, keep_target=target_path is not None)
        if reuse is not None and not reuse.seeded:
            result.partial_parse, result.parse_note = False, reuse.reason
        else:
            _read_parse_outcome(result, parse_lines if executable is None else log_dir / "dbt.log", emit)
        return result


def _quiet_args(executable: Path | None, log_callback: Any, log_path: Any, lean: bool) -> list[str]:
    """In process, dbt's events reach the caller through the runner's callback: dbt need not also
    write them to stdout (the task log would show every line twice) nor, when the log directory
    is a temp dir removed after the run, to a debug-level dbt.log nobody reads."""
    if executable is not None:
        return []  # a subprocess's stdout is how its lines arrive; its dbt.log says how it parsed
    quiet = ["--no-write-json"] if lean else []
    if log_callback is not None:
        quiet += ["--log-level", "none"]
    if log_path is None:
        quiet += ["--log-level-file", "none"]
    return quiet


def _seed_parse_state(
    parse_state: Path, target_dir: Path, target: PostgresTarget, vars: Mapping[str, Any] | None,
    profile_name: str, target_name: str, executable: Path | None, project: Path,
) -> ParseReuse:
    import dataclasses

    from airflow_osds.dbt.fingerprint import installed_dbt_packages, project_fingerprint, read_parse_record

    if (target_dir / partial_parse.PARSE_STATE_FILE).is_file():  # a persistent target keeps its own
        return partial_parse.ParseReuse(True, "")
    dbt_version = None
    if executable is None:  # in process: the dbt that will run is this interpreter's
        from importlib.metadata import version

        dbt_version = version("dbt-core")
    record = read_parse_record(parse_state)
    reuse = partial_parse.seed(
        parse_state, target_dir, record=record, connection=partial_parse.connection_fields(target),
        vars=vars, profile_name=profile_name, target_name=target_name, dbt_version=dbt_version,
    )
    # In process only (the dbt that runs is this interpreter's): the same dbt distributions, whose
    # macros dbt parses too, and the project's files with the parse's fingerprint.
    if (reuse.seeded and record is not None and executable is None and record.dbt_packages
            and dict(record.dbt_packages) == installed_dbt_packages()
            and record.fingerprint == project_fingerprint(project)):
        reuse = dataclasses.replace(reuse, files_unchanged=True)
    return reuse


def _read_parse_outcome(result: DbtRunResult, source: Path | list[str], emit: Callable[[str], None]) -> None:
    """dbt's debug-level events say whether the run parsed partially, and why not: from the
    in-process run's events, or a subprocess's ``dbt.log``."""
    if isinstance(source, Path):
        try:
            lines = source.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return
    else:
        lines = source
    reused, why = partial_parse.outcome(lines)
    if reused or why != partial_parse.SILENT:
        result.partial_parse, result.parse_note = reused, why
        emit("dbt's log: it reused the saved parse (partial parsing)" if reused else f"dbt's log: full parse, because {why}")


# -- checks -----------------------------------------------------------------------------------


def _check_command(
    command: str, *, select: Sequence[str], exclude: Sequence[str], selector: str | None, full_refresh: bool
) -> None:
    if command not in COMMANDS:
        raise DbtCommandError(f"Unsupported dbt command {command!r}; supported: {sorted(COMMANDS)}.")
    given = {
        "select": bool(select),
        "exclude": bool(exclude),
        "selector": selector is not None,
        "full_refresh": full_refresh,
    }
    refused = sorted(name for name, used in given.items() if used and name not in COMMANDS[command])
    if refused:
        hint = " (retry re-uses the failed run's selection)" if command == "retry" else ""
        raise DbtCommandError(f"dbt {command} does not take {', '.join(refused)}{hint}.")


def _secrets(target: PostgresTarget, env: Mapping[str, str]) -> list[str]:
    """The values to keep out of logs and artifacts: the password and the secret-looking env."""
    named = [v for k, v in env.items() if k.startswith(_SECRET_ENV_PREFIX) or looks_secret(k)]
    return [s for s in [target.password or "", *named] if s]


def _refuse_exposed_secrets(
    env: Mapping[str, str], vars: Mapping[str, Any] | None, extra_args: Sequence[str], secrets: Sequence[str]
) -> None:
    """Raise :class:`DbtSecretExposureError` for what would put a secret where others can read it."""
    for name in env:
        if name.upper().startswith("AIRFLOW_"):
            raise DbtSecretExposureError(
                name,
                "Airflow's own environment (AIRFLOW_*: its configuration, the Fernet key, the connections "
                "in AIRFLOW_CONN_*) is never handed to dbt. Pass the value dbt needs under another name.",
            )
    strong = [s for s in secrets if is_maskable(s)]
    for path, value in _walk_vars(vars or {}):
        leaf = path.rsplit(".", 1)[-1]
        if looks_secret(leaf) or any(s in json.dumps(value, default=str) for s in strong):
            env_name = leaf.upper()
            raise DbtSecretExposureError(
                f"vars.{path}",
                "this var looks like a secret, and dbt vars travel on dbt's command line (where `ps` shows "
                "them to every user of the machine) and into run_results.json. Pass it as an environment "
                f"variable instead (env_vars={{'{env_name}': ...}}) and read it in the project with "
                f"env_var('{env_name}'); its value is then masked in the logs.",
            )
    if "--vars" in extra_args:
        raise DbtCommandError("Pass dbt vars with vars=, not as --vars in extra_args.")
    for arg in extra_args:
        if any(s in arg for s in strong):
            raise DbtSecretExposureError("extra_args", "an argument contains a secret; pass it through env instead.")


def _walk_vars(value: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, item in value.items():
        path = f"{prefix}{key}"
        if isinstance(item, Mapping):
            yield from _walk_vars(item, f"{path}.")
        else:
            yield path, item


def _describe_selection(select: Sequence[str], exclude: Sequence[str], selector: str | None) -> str:
    parts = []
    if select:
        parts.append("--select " + " ".join(select))
    if exclude:
        parts.append("--exclude " + " ".join(exclude))
    if selector:
        parts.append(f"--selector {selector}")
    return " ".join(f"`{p}`" for p in parts) if parts else "(no selection: the whole project)"


# -- invocation modes -------------------------------------------------------------------------


# -- helpers ----------------------------------------------------------------------------------


def _attach_artifacts(
    result: DbtRunResult, previous: Mapping[str, str | None], secrets: Sequence[str], *, keep_target: bool
) -> None:
    """Put this invocation's fresh (redacted) artifacts on ``result``."""
    target_dir = result.target_path
    fresh = _load_fresh(target_dir / "run_results.json", previous["run_results.json"])
    if fresh is not None:
        result.run_results = scrub(fresh, secrets)
        # The temp target dir goes away with the work dir; only the parsed JSON remains.
        result.run_results_path = target_dir / "run_results.json" if keep_target else None
    if result.command == "source freshness":
        sources = _load_fresh(target_dir / "sources.json", previous["sources.json"])
        result.sources = scrub(sources, secrets) if sources is not None else None
    manifest = target_dir / "manifest.json"
    if keep_target and manifest.is_file():
        result.manifest_path = manifest


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

