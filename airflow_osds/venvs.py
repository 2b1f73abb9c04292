"""Virtualenvs for the components that cannot share Airflow's environment (dbt in subprocess mode,
Singer taps and targets, Superset, reference tools in tests), kept in one cache outside any checkout.

Each environment is ``<cache>/<name>``, where ``<cache>`` is ``$OSDS_VENV_CACHE``, else
``${XDG_CACHE_HOME:-~/.cache}/airflow-osds/venvs``: a fresh clone, a CI run or a second worker
reuses what an earlier one built. An environment is built once and reused while the marker file it
holds (``.osds-venv.json``) records the same requirements; a directory there that is not a
virtualenv is never deleted. Building holds a lock next to it (``.<name>.lock``), so concurrent
callers build it once. No Airflow imports.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["CACHE_ENV", "MARKER", "VenvError", "cache_dir", "ensure_venv"]

CACHE_ENV = "OSDS_VENV_CACHE"
MARKER = ".osds-venv.json"


class VenvError(RuntimeError):
    """A component's virtualenv could not be built; the message has the failing command's output."""


def cache_dir() -> Path:
    """Where component virtualenvs live (see the module docstring)."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "airflow-osds" / "venvs"


def ensure_venv(
    name: str,
    requirements: Sequence[str],
    *,
    root: Path | None = None,
    pip_args: Sequence[str] = (),
    check: Sequence[str] = (),
    timeout: float = 900,
) -> Path:
    """The directory of the virtualenv ``name`` holding ``requirements``, built if it is missing or stale.

    :param root: the directory to use instead of ``cache_dir() / name``.
    :param pip_args: more ``pip install`` arguments (e.g. ``--no-deps``).
    :param check: a command to run with the venv's python after installing (e.g. ``["-c", "import x"]``).
    :raises VenvError: a step failed, or the directory exists and is not a virtualenv.
    """
    root = root or cache_dir() / name
    wanted: dict[str, object] = {"requirements": list(requirements), "pip_args": list(pip_args)}
    if _is_current(root, wanted):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    # Two tasks (or workers sharing the cache) may want it at once: one builds, the other waits
    # for the lock and then finds it current.
    with open(root.parent / f".{root.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if _is_current(root, wanted):
                return root
            return _build(root, wanted, requirements, pip_args, check, timeout)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _is_current(root: Path, wanted: dict[str, object]) -> bool:
    marker = root / MARKER
    if not ((root / "bin" / "python").exists() and marker.exists()):
        return False
    try:
        recorded = json.loads(marker.read_text())
    except ValueError:
        return False  # a corrupt marker: rebuild
    return all(recorded.get(k, []) == v for k, v in wanted.items())


def _build(root: Path, wanted: dict[str, object], requirements: Sequence[str], pip_args: Sequence[str],
           check: Sequence[str], timeout: float) -> Path:
    python = root / "bin" / "python"
    marker = root / MARKER
    if root.exists() and any(root.iterdir()) and not (root / "pyvenv.cfg").exists():
        raise VenvError(f"{root} exists and is not a virtualenv; refusing to replace it.")
    shutil.rmtree(root, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    base = shutil.which("python3") or sys.executable
    steps = [[base, "-m", "venv", str(root)]]
    if requirements:
        steps.append([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *pip_args,
                      *requirements])
    if check:
        steps.append([str(python), *check])
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise VenvError(f"{' '.join(step)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    wanted["seconds"] = round(time.monotonic() - started, 1)
    marker.write_text(json.dumps(wanted, indent=2))
    return root
