"""How dbt is started and stopped: in this process (``dbtRunner``) or as a subprocess of another virtualenv.

Both return ``(success, exit_code, error)`` and feed every log line to ``emit``. The
subprocess gets an allow-listed environment (never ``AIRFLOW_*``: connections, the Fernet
key) and its own process group, so :class:`DbtRunHandle` can stop dbt and everything it
started. :mod:`airflow_osds.dbt.runner` composes these with the profile, the arguments and
the artifacts.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from airflow_osds.dbt.errors import DbtNotInstalledError

__all__ = ["INHERITED_ENV", "DbtRunHandle", "invoke_in_process", "invoke_subprocess", "resolve_executable"]

#: Variables of the worker's environment a dbt subprocess inherits (plus every ``LC_*``).
INHERITED_ENV = ("PATH", "HOME", "LANG", "TZ", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE")


# dbt's in-process state is global: one invocation at a time per process.
_IN_PROCESS_LOCK = threading.Lock()

# After SIGTERM and after SIGKILL: how long to wait for dbt's process group to go away.
_TERM_GRACE = 5.0
# Seconds after SIGINT when, dbt still running, its queries are terminated for it (within the grace period).
_SWEEP_AFTER = 3.0


class DbtRunHandle:
    """Stops a running :func:`run_dbt` invocation from another thread or a signal handler.

    * Subprocess mode: dbt's whole process group gets ``SIGINT`` (dbt's Ctrl-C path: it
      terminates its open queries with ``pg_terminate_backend`` and writes
      ``run_results.json``), then ``SIGTERM``, then ``SIGKILL``, each after a grace period;
      whatever is left in the group (multiprocessing's resource tracker) follows dbt.
      ``SIGTERM`` alone is not enough: Python exits without cancelling, and PostgreSQL keeps
      running a gone client's query until it next writes to the socket. So the handle does not
      rely on dbt's Ctrl-C path alone: when dbt is still running a few seconds after ``SIGINT``,
      and again once its process group is gone, every query still running under the
      invocation's ``application_name`` is terminated through a connection of the handle's own
      (:mod:`airflow_osds.dbt.backends`), and the log says so.
    * In-process mode: dbt runs inside this process and has no stop API. The handle terminates
      every open query through the adapters' ``cancel_open_connections()`` (what dbt does on
      Ctrl-C) and keeps doing so every half second until the invocation returns, so the nodes
      dbt still starts fail at once and their dependants are skipped; after the first round,
      queries still running under the invocation's ``application_name`` are terminated too.
      The process itself is Airflow's to kill.

    :param grace_period: seconds dbt gets after ``SIGINT`` (subprocess) or for the first
        cancellation (in process) before :meth:`stop` escalates or returns.
    """

    def __init__(self, *, grace_period: float = 10.0) -> None:
        self.grace_period = grace_period
        self._process: subprocess.Popen[str] | None = None
        self._in_process = False
        self._done = threading.Event()
        self._stop_requested = False
        #: The ``application_name`` of the invocation's warehouse connections (set when it starts;
        #: ``None`` when the target names its connections itself).
        self.application_name: str | None = None
        self._terminate_leftovers: Callable[[], list[int]] | None = None
        self._emit: Callable[[str], None] = lambda line: None

    @property
    def stop_requested(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stop_requested

    def stop(self) -> None:
        """Stop the invocation (see the class docstring); returns once dbt is gone or cancelled.

        Safe to call before the invocation starts (it is then stopped as soon as it does),
        after it ended (no-op), from any thread and from a signal handler.
        """
        self._stop_requested = True
        if self._done.is_set():
            return
        if self._process is not None:
            _stop_process_group(self._process, self.grace_period, self._sweep)
        elif self._in_process:
            self._cancel_in_process()

    # -- used by run_dbt ---------------------------------------------------------------
    def _attach_leftovers(
        self, application_name: str | None, terminate: Callable[[], list[int]] | None, emit: Callable[[str], None]
    ) -> None:
        """How to find the invocation's queries once stopped (before it starts)."""
        self.application_name = application_name
        self._terminate_leftovers = terminate
        self._emit = emit

    def _attach_process(self, process: subprocess.Popen[str]) -> None:
        self._process = process
        if self._stop_requested:
            _stop_process_group(process, self.grace_period, self._sweep)

    def _attach_in_process(self) -> None:
        self._in_process = True
        if self._stop_requested:
            self._cancel_in_process()

    def _finished(self) -> None:
        self._done.set()

    def _sweep(self) -> None:
        """Terminate the queries still running under the invocation's name; best effort, logged."""
        if self._terminate_leftovers is None:
            return
        try:
            pids = self._terminate_leftovers()
        except Exception as exc:  # the warehouse unreachable: nothing more can be done from here
            self._emit(f"osds: could not check the warehouse for queries dbt left running "
                       f"(application_name {self.application_name}): {type(exc).__name__}: {exc}")
            return
        if pids:
            self._emit(f"osds: terminated {len(pids)} query(ies) the stopped dbt left running in the warehouse "
                       f"(application_name {self.application_name}, backend pid {', '.join(map(str, pids))})")

    def _cancel_in_process(self) -> None:
        # In a thread of its own: dbt keys connections by thread, and stop() may run on the
        # thread running dbt (Airflow calls on_kill from its SIGTERM handler on the main thread).
        first = threading.Event()

        def loop() -> None:
            swept = False
            while True:
                with contextlib.suppress(Exception):  # best effort: the next round tries again
                    _cancel_open_queries()
                if not swept:  # what the adapter does not know of (or failed to cancel)
                    self._sweep()
                    swept = True
                first.set()
                if self._done.wait(0.5):
                    return

        threading.Thread(target=loop, name="osds-dbt-cancel", daemon=True).start()
        first.wait(self.grace_period)


def _walk_frames_for_behavior_flag_source() -> None:
    """Make dbt's behaviour flags find their source module without ``inspect.stack()``.

    ``BehaviorFlagRendered.__init__`` (dbt-common 1.x) evaluates ``_default_source()`` for every flag of every
    adapter it builds, even when the flag names its source (the ``dict.get`` default is computed anyway), and
    ``inspect.stack()`` reads the source lines of every frame on the stack: ~60 ms of a model task under an
    Airflow task's deep stack (profiled: the task 0.44 → 0.28 s), for a name that only labels a log event. The replacement
    walks the same frames, innermost first, and returns the same thing: the name of the first module that is
    not ``behavior_flags`` itself. Left alone if dbt-common's class is not the one this was written for.
    """
    try:
        from dbt_common import behavior_flags
    except ImportError:
        return
    cls = getattr(behavior_flags, "BehaviorFlagRendered", None)
    original = getattr(cls, "_default_source", None)
    if cls is None or original is None or getattr(original, "_osds", False):
        return

    def _default_source() -> str:
        frame = sys._getframe(1)
        while frame is not None:
            name = frame.f_globals.get("__name__")
            if name and name != behavior_flags.__name__ and name in sys.modules:
                return str(name)
            frame = frame.f_back
        return "Unknown"

    _default_source._osds = True  # type: ignore[attr-defined]
    _default_source.__wrapped__ = original  # type: ignore[attr-defined]
    cls._default_source = staticmethod(_default_source)


def invoke_in_process(
    args: list[str], env: Mapping[str, str], emit: Callable[[str], None], handle: DbtRunHandle,
    *, run_results_to: Path | None = None, on_debug: Callable[[str], Any] | None = None,
) -> tuple[bool, int, str | None]:
    """Run dbt with ``dbtRunner``; returns ``(success, exit_code, error)``.

    :param emit: called with every line dbt logs at info level or above.
    :param run_results_to: write ``run_results.json`` here from dbt's in-memory result (for a
        run told ``--no-write-json``).
    :param on_debug: called with every debug-level line (whatever ``--log-level`` says: dbt
        gives its callbacks every event).
    """
    try:
        from dbt.cli.main import dbtRunner
    except ImportError as exc:
        raise DbtNotInstalledError(
            "dbt is not importable in this interpreter: install airflow-osds[dbt] (dbt-core and "
            "dbt-postgres), or pass dbt_executable= to run dbt from another virtualenv."
        ) from exc

    def on_event(event: Any) -> None:
        # Collect what dbt would log at info level and above; debug events are noise here.
        info = getattr(event, "info", None)
        if info is None or not info.msg:
            return
        sink = emit if getattr(info, "level", "info") != "debug" else on_debug
        if sink is not None:
            for line in str(info.msg).splitlines():
                sink(line)

    _walk_frames_for_behavior_flag_source()
    # No chdir: the cwd is process-wide and every path dbt gets is absolute anyway.
    with _IN_PROCESS_LOCK, _patched_environ(env):
        handle._attach_in_process()
        # Objects already alive (Airflow, dbt, the imports) are not garbage dbt makes: keep the
        # collector from re-scanning them at every collection during the run (a one-model run
        # otherwise loses ~0.4 s to a full collection now and then). A freeze made by someone
        # else (an executor before forking workers) is left in place.
        unfreeze = gc.get_freeze_count() == 0
        gc.freeze()
        try:
            outcome = dbtRunner(callbacks=[on_event]).invoke(args)
        finally:
            if unfreeze:
                gc.unfreeze()
        if run_results_to is not None and hasattr(outcome.result, "write"):
            outcome.result.write(str(run_results_to))
    if outcome.exception is not None:
        return False, 2, f"{type(outcome.exception).__name__}: {outcome.exception}"
    return bool(outcome.success), 0 if outcome.success else 1, None


def invoke_subprocess(
    executable: Path,
    args: list[str],
    env: Mapping[str, str],
    emit: Callable[[str], None],
    *,
    cwd: Path,
    timeout: float | None,
    handle: DbtRunHandle,
) -> tuple[bool, int, str | None]:
    """Run ``<executable> <args>`` in a process group of its own; returns ``(success, exit_code, error)``."""
    try:
        proc = subprocess.Popen(
            [str(executable), *args],
            cwd=cwd,
            env=_child_environ(executable, env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,  # its own process group: stopped as one
        )
    except OSError as exc:  # not executable, wrong architecture, a broken shebang …
        raise DbtNotInstalledError(
            f"dbt executable {str(executable)!r} cannot be started: {exc}", executable=str(executable)
        ) from exc
    handle._attach_process(proc)
    timed_out = threading.Event()

    def on_timeout() -> None:
        timed_out.set()
        handle.stop()

    timer = threading.Timer(timeout, on_timeout) if timeout else None
    if timer is not None:
        timer.daemon = True
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
        if proc.poll() is None:  # an exception (e.g. Airflow's task timeout) interrupted the loop
            _stop_process_group(proc, handle.grace_period, handle._sweep)
    if handle.stop_requested:
        why = f"by its {timeout}s timeout" if timed_out.is_set() else "on request"
        return False, 2, f"dbt was stopped {why}"
    if code < 0:
        return False, 2, f"dbt was killed by signal {-code}"
    error = "\n".join(tail) if code >= 2 else None
    return code == 0, code, error


def _child_environ(executable: Path, env: Mapping[str, str]) -> dict[str, str]:
    """The allow-listed environment of a dbt subprocess (see :data:`INHERITED_ENV`)."""
    child = {k: v for k, v in os.environ.items() if k in INHERITED_ENV or k.startswith("LC_")}
    child.update(env)
    # The venv's bin first, so dbt's own helpers resolve to the same virtualenv.
    child["PATH"] = os.pathsep.join([str(executable.parent), child.get("PATH", os.defpath)])
    return child


def _stop_process_group(proc: subprocess.Popen[str], grace: float, sweep: Callable[[], None] | None = None) -> None:
    """SIGINT, then SIGTERM, then SIGKILL to ``proc``'s group until ``proc`` exits; then its leftovers.

    :param sweep: terminates the queries dbt still runs: called when dbt has not exited
        :data:`_SWEEP_AFTER` seconds into the SIGINT grace (a dbt waiting for a query its Ctrl-C
        path did not cancel then ends), and once the group is gone (what SIGTERM left running).
    """
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, _TERM_GRACE), (signal.SIGKILL, _TERM_GRACE)):
        if not _signal_group(proc.pid, sig):
            break  # the whole group is gone already
        if sig == signal.SIGINT and sweep is not None and grace > _SWEEP_AFTER:
            if _wait(proc, _SWEEP_AFTER):
                break
            sweep()
            wait = grace - _SWEEP_AFTER
        if _wait(proc, wait):
            break
    # dbt is gone; what it started (multiprocessing's resource tracker ignores SIGINT and
    # SIGTERM and exits once dbt's end of its pipe closes) gets a moment, then SIGKILL.
    deadline = time.monotonic() + 2.0
    while _signal_group(proc.pid, 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    _signal_group(proc.pid, signal.SIGKILL)
    if sweep is not None:
        sweep()


def _wait(proc: subprocess.Popen[str], timeout: float) -> bool:
    """Whether ``proc`` exits within ``timeout`` seconds."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return False
    return True


def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to process group ``pgid``; ``False`` when the group no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:  # a recycled id now owned by someone else: not ours any more
        return False
    return True


def _cancel_open_queries() -> None:
    """Terminate the queries of every in-process dbt adapter (what dbt does on Ctrl-C)."""
    from dbt.adapters.factory import FACTORY

    for adapter in list(FACTORY.adapters.values()):
        if adapter.is_cancelable():
            with adapter.connection_named("osds-cancel"):
                adapter.cancel_open_connections()


def resolve_executable(value: str | os.PathLike[str]) -> Path:
    path = Path(value)
    if path.is_dir():
        path = path / "bin" / "dbt"
    if not path.is_file() or not os.access(path, os.X_OK):
        found = shutil.which(str(value))
        if found is None:
            raise DbtNotInstalledError(
                f"dbt executable {str(value)!r} not found: give the path of a virtualenv holding dbt-core and "
                "dbt-postgres, or of its bin/dbt, or leave dbt_executable unset to run dbt in process.",
                executable=str(value),
            )
        path = Path(found)
    # absolute() rather than resolve(): a venv's scripts must keep their venv path.
    return path.absolute()


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
