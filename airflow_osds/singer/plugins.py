"""Where a tap's or target's executable comes from: a pip spec installed in its own cached virtualenv, or
an executable that is already there (no Airflow imports).

A pip spec (Meltano's ``pip_url``: one or more requirements, e.g. ``tap-jsonl==0.3.1`` or
``git+https://…``) gets the virtualenv ``singer-<first name>-<hash of the spec>`` in the component
cache (:mod:`airflow_osds.venvs`): the same spec always finds the same environment, a changed spec
gets a new one, and two tasks installing it at once build it once. Never Airflow's environment.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import sys
from pathlib import Path

from airflow_osds.exceptions import OsdsError
from airflow_osds.venvs import VenvError, ensure_venv

__all__ = ["PluginError", "env_name", "executable"]


class PluginError(OsdsError):
    """A tap or target cannot be found or installed; the message says which and why."""


def env_name(pip_url: str) -> str:
    """The cache entry of a pip spec: readable, and unique to the exact spec."""
    requirements = shlex.split(pip_url)
    if not requirements:
        raise PluginError("an empty pip_url: give the package to install, e.g. tap-jsonl==0.3.1")
    first = re.split(r"[<>=!~\[ ;@]", requirements[0].rsplit("/", 1)[-1], maxsplit=1)[0] or "plugin"
    digest = hashlib.sha256(" ".join(requirements).encode()).hexdigest()[:10]
    return f"singer-{re.sub(r'[^A-Za-z0-9_.-]', '-', first)}-{digest}"


def executable(name: str, *, pip_url: str | None = None) -> Path:
    """The executable ``name``: from ``pip_url``'s virtualenv (installed on first use), else on ``PATH`` or a path.

    :raises PluginError: the install failed, or there is no such executable.
    """
    if pip_url:
        try:
            root = ensure_venv(env_name(pip_url), shlex.split(pip_url))
        except VenvError as exc:
            raise PluginError(f"installing {pip_url!r} for {name} failed:\n{exc}") from None
        found = root / "bin" / name
        if not (found.exists() and os.access(found, os.X_OK)):
            scripts = sorted(p.name for p in (root / "bin").iterdir() if not p.name.startswith(("python", "pip")))
            raise PluginError(f"{pip_url!r} installs no executable {name!r}; it installs: {', '.join(scripts) or 'none'}")
        return found
    # Off PATH, the interpreter's own bin/ still has the executables installed with this package
    # (osds-target-postgres), e.g. in a task run by a venv's python without activating it.
    located = shutil.which(name) or shutil.which(name, path=os.path.dirname(sys.executable))
    if located is None:
        raise PluginError(f"no executable {name!r} on PATH; give its path, or a pip_url to install it from")
    return Path(located)
