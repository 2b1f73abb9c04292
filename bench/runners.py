"""Run parse_child.py requests: in a fresh interpreter each (``spawn``) or forked from a server (``ForkServer``)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import IO, Any

from envs import BENCH_DIR, WORK, ChildFailed

__all__ = ["BASE_IMPORTS", "ForkServer", "spawn"]

CHILD = BENCH_DIR / "parse_child.py"
# What Airflow's DAG-processor manager and a worker's supervisor have imported before they fork.
BASE_IMPORTS = ("airflow.sdk", "airflow.dag_processing.dagbag")


def _checked(result: dict[str, Any], what: str) -> dict[str, Any]:
    if "error" in result:
        raise ChildFailed(f"{what}:\n{result['error']}")
    return result


def spawn(python: Path, env: dict[str, str], request: dict[str, Any]) -> dict[str, Any]:
    """One request in a fresh ``python``; adds ``whole_s``: spawn → DagBag loaded (CLOCK_MONOTONIC, system-wide)."""
    cmd = [str(python), str(CHILD), "once", json.dumps(request)]
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, env={**env, **request.get("env", {})}, capture_output=True, text=True,
                              timeout=1800, cwd=str(WORK))
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ChildFailed(f"{python} {request.get('file') or request.get('module')}: {exc}") from exc
    lines = [line for line in proc.stdout.splitlines() if line.startswith("BENCH_RESULT ")]
    if not lines:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise ChildFailed(f"{python} {CHILD.name} exited {proc.returncode} without a result:\n{tail}")
    result = _checked(json.loads(lines[-1].removeprefix("BENCH_RESULT ")), f"{python} {request.get('file')}")
    if "done_mono" in result:
        result["whole_s"] = result["done_mono"] - start
    return result


class ForkServer:
    """A long-lived parent that has imported ``base_imports``; every request runs in a child forked from it."""

    def __init__(self, python: Path, env: dict[str, str], log: Path, base_imports: tuple[str, ...] = BASE_IMPORTS):
        self.python, self.log_path = python, log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log: IO[str] = log.open("a")
        self._proc = subprocess.Popen(
            [str(python), str(CHILD), "serve", ",".join(base_imports)], env=env, cwd=str(WORK),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True, bufsize=1,
        )
        if self._readline() != "READY":
            raise ChildFailed(f"fork server {python} did not start:\n{self._log_tail()}")

    def _readline(self) -> str:
        assert self._proc.stdout is not None
        return self._proc.stdout.readline().strip()

    def _log_tail(self) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").strip().splitlines()[-15:])

    def request(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(json.dumps(request) + "\n")
            self._proc.stdin.flush()
        except BrokenPipeError as exc:
            raise ChildFailed(f"fork server {self.python} is gone:\n{self._log_tail()}") from exc
        line = self._readline()
        if not line:
            raise ChildFailed(f"fork server {self.python} died:\n{self._log_tail()}")
        return _checked(json.loads(line), f"{self.python} {request.get('file') or request.get('module')}")

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._log.close()

    def __enter__(self) -> ForkServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
