"""Run ``tap | target`` as two processes joined by an OS pipe, the way a shell does (no Airflow imports).

The tap's stdout is the target's stdin: records never pass through Python, so the runner adds no
per-record cost. The runner reads three streams in threads:

* both stderr streams, line by line, to ``on_log(side, line)`` with every secret masked;
* the target's stdout: each line is a state the target committed, passed to ``on_state`` as it
  arrives (the caller persists it at once, so a failure later keeps it) — state never comes from
  the tap (../shared/reference/stack-components.md §2.2).

``METRIC`` lines with ``record_count`` counters (the Singer SDK's and ``osds-target-postgres``'s)
are summed per stream, the target's when it reports any, else the tap's. Both exit codes are
checked; a failure names the side that failed with the end of its log. A timeout, or the caller
being interrupted, kills both process groups; the caller's process dying (even by SIGKILL) sends
both a SIGTERM (Linux).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from airflow_osds.exceptions import OsdsError

__all__ = ["SingerError", "SingerRun", "mask", "run_pipe"]

_TAIL = 20
_KILL_GRACE_S = 5.0
_POLL_S = 0.02


class SingerError(OsdsError):
    """The tap, the target or both failed (or timed out); ``run`` holds what happened, ``run.state`` the last committed state."""

    def __init__(self, message: str, run: SingerRun) -> None:
        super().__init__(message)
        self.run = run


@dataclass
class SingerRun:
    tap_exit: int | None = None
    target_exit: int | None = None
    state: Any = None  # the last state the target committed (parsed JSON), or None
    state_lines: int = 0
    seconds: float = 0.0
    tap_counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    target_counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    tails: dict[str, deque[str]] = field(default_factory=lambda: {"tap": deque(maxlen=_TAIL), "target": deque(maxlen=_TAIL)})

    @property
    def record_counts(self) -> dict[str, int]:
        """Records per stream: the target's counters when it reports any (what was loaded), else the tap's."""
        return dict(self.target_counts or self.tap_counts)


def mask(line: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            line = line.replace(secret, "***")
    return line


def _count(line: str, counts: dict[str, int]) -> None:
    at = line.find("METRIC: ")
    if at < 0:
        return
    try:
        metric = json.loads(line[at + 8:])
    except ValueError:
        return
    if isinstance(metric, dict) and metric.get("metric") == "record_count" and isinstance(metric.get("value"), int):
        stream = (metric.get("tags") or {}).get("stream") or (metric.get("tags") or {}).get("tap_stream_id") or "?"
        counts[str(stream)] += metric["value"]


def _read_log(side: str, pipe: IO[bytes], run: SingerRun, counts: dict[str, int], secrets: Sequence[str],
              on_log: Callable[[str, str], None]) -> None:
    for raw in pipe:
        line = mask(raw.decode("utf-8", "replace").rstrip("\n"), secrets)
        run.tails[side].append(line)
        _count(line, counts)
        on_log(side, line)


def _read_state(pipe: IO[bytes], run: SingerRun, on_state: Callable[[Any], None]) -> None:
    for raw in pipe:
        text = raw.decode("utf-8", "replace").strip()
        if not text:
            continue
        try:
            state = json.loads(text)
        except ValueError:
            continue  # a target printing something else on stdout: not a state
        run.state, run.state_lines = state, run.state_lines + 1
        on_state(state)


def _die_with_parent() -> None:
    """In the child, before exec: be sent SIGTERM when the task's process dies, even by SIGKILL (Linux).

    Each side runs in its own session (so a timeout can kill its whole group), out of reach of
    a signal to the task's process group: without this, a task killed hard would leave both running.
    """
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the finally below and the timeout still stop them


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=_KILL_GRACE_S)
            return
        except subprocess.TimeoutExpired:
            continue


def run_pipe(
    tap: Sequence[str],
    target: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float | None = None,
    secrets: Sequence[str] = (),
    on_log: Callable[[str, str], None] = lambda side, line: None,
    on_state: Callable[[Any], None] = lambda state: None,
) -> SingerRun:
    """Run ``tap | target``; returns what happened.

    :param secrets: strings masked in every log line and error message.
    :raises SingerError: a process could not start, exited non-zero, or the run timed out.
    """
    run = SingerRun()
    started = time.monotonic()
    tap_stopped = False  # killed by us because the target had failed
    common: dict[str, Any] = {"env": dict(env) if env is not None else None, "cwd": cwd, "start_new_session": True,
                              "preexec_fn": _die_with_parent}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        try:
            tap_proc = subprocess.Popen(list(tap), stdout=subprocess.PIPE, stderr=subprocess.PIPE, **common)
            procs.append(tap_proc)
            target_proc = subprocess.Popen(list(target), stdin=tap_proc.stdout, stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, **common)
            procs.append(target_proc)
        except OSError as exc:
            side = "tap" if not procs else "target"
            raise SingerError(mask(f"the {side} could not start: {exc}", secrets), run) from None
        assert tap_proc.stdout is not None and tap_proc.stderr is not None
        tap_proc.stdout.close()  # the target holds the pipe now; the tap gets SIGPIPE should the target die
        readers = [
            threading.Thread(target=_read_log, args=("tap", tap_proc.stderr, run, run.tap_counts, secrets, on_log),
                             daemon=True),
            threading.Thread(target=_read_log,
                             args=("target", target_proc.stderr, run, run.target_counts, secrets, on_log), daemon=True),
            threading.Thread(target=_read_state, args=(target_proc.stdout, run, on_state), daemon=True),
        ]
        for reader in readers:
            reader.start()
        deadline = None if timeout is None else started + timeout
        while True:
            tap_code, target_code = tap_proc.poll(), target_proc.poll()
            if tap_code is not None and target_code is not None:
                break
            if target_code not in (None, 0) and tap_code is None:
                # Nothing reads the tap's output any more: stop it now, not at its next write.
                _kill(tap_proc)
                tap_stopped = True
                continue
            if deadline is not None and time.monotonic() >= deadline:
                for p in procs:
                    _kill(p)
                for reader in readers:
                    reader.join(timeout=_KILL_GRACE_S)
                run.seconds = time.monotonic() - started
                raise SingerError(f"timed out after {timeout:g} s; both processes were stopped", run) from None
            time.sleep(_POLL_S)
        for reader in readers:
            reader.join()
    finally:
        for proc in procs:
            _kill(proc)  # interrupted (task killed, timeout signal): neither outlives the caller
    run.tap_exit, run.target_exit = tap_proc.returncode, target_proc.returncode
    run.seconds = time.monotonic() - started
    failed = [side for side, code in (("tap", run.tap_exit), ("target", run.target_exit))
              if code != 0 and not (side == "tap" and tap_stopped)]
    if failed:
        what = " and ".join(f"the {side} (exit {getattr(run, side + '_exit')})" for side in failed)
        stopped = " (the tap was stopped: nothing read its output)" if tap_stopped else ""
        tails = "\n".join(f"--- {side} log (last lines) ---\n" + "\n".join(run.tails[side]) for side in failed)
        kept = f"; the last committed state is kept: {json.dumps(run.state)}" if run.state is not None else ""
        raise SingerError(f"{what} failed{stopped}{kept}\n{tails}", run)
    return run
