"""A separate virtualenv holding dbt, for the runner's subprocess mode.

Created once in the component-environment cache, outside the clone so a fresh clone reuses it:
``$OSDS_VENV_CACHE/dbt-1.11`` (default ``${XDG_CACHE_HOME:-~/.cache}/airflow-osds/venvs``), or
exactly ``$OSDS_TEST_VENV_DIR`` when that is set; and
reused while its marker file matches :data:`REQUIREMENTS`. Runnable as a script to
pre-build it: ``python tests/integration/dbt/_venv.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

# dbt-postgres only requires dbt-core>=1.8, and plain dbt-core 1.12 cannot be installed
# offline (its parser's sdist downloads a wheel from GitHub): always pin core.
REQUIREMENTS = ("dbt-core~=1.11.0", "dbt-postgres~=1.11.0")
MARKER = ".osds-venv.json"


def venv_dir() -> Path:
    """Where the dbt virtualenv lives."""
    override = os.environ.get("OSDS_TEST_VENV_DIR")
    if override:
        return Path(override)
    cache = os.environ.get("OSDS_VENV_CACHE")
    if cache:
        return Path(cache) / "dbt-1.11"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "airflow-osds" / "venvs" / "dbt-1.11"


def ensure_dbt_venv() -> Path:
    """Return the ``dbt`` executable of the separate virtualenv, creating it if needed.

    :raises RuntimeError: the virtualenv could not be created (the caller's test must fail).
    """
    root = venv_dir()
    dbt = root / "bin" / "dbt"
    marker = root / MARKER
    wanted = {"requirements": list(REQUIREMENTS)}
    if dbt.exists() and marker.exists():
        try:
            if json.loads(marker.read_text()).get("requirements") == wanted["requirements"]:
                return dbt
        except ValueError:
            pass  # a corrupt marker: rebuild
    # Only ever delete something that is (or was meant to be) our virtualenv.
    if root.exists() and any(root.iterdir()) and not (root / "pyvenv.cfg").exists():
        raise RuntimeError(f"{root} exists and is not a virtualenv; refusing to replace it.")
    shutil.rmtree(root, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    python = shutil.which("python3") or sys.executable
    steps = [
        [python, "-m", "venv", str(root)],
        [str(root / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *REQUIREMENTS],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(step)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    version = subprocess.run([str(dbt), "--version"], capture_output=True, text=True, timeout=120)
    wanted["seconds"] = round(time.monotonic() - started, 1)
    wanted["dbt_version"] = version.stdout.strip()
    marker.write_text(json.dumps(wanted, indent=2))
    return dbt


if __name__ == "__main__":
    print(ensure_dbt_venv())
