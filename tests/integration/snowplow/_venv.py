"""A separate virtualenv holding ``snowplow-analytics-sdk``, the third-party reader we cross-check against.

Created once in the component-environment cache, outside the clone so a fresh clone reuses it:
``$OSDS_VENV_CACHE/snowplow-sdk-0.2.3`` (default ``${XDG_CACHE_HOME:-~/.cache}/airflow-osds/venvs``),
and reused while its marker file matches :data:`REQUIREMENTS`. The SDK is installed with
``--no-deps``: its only requirement, boto3, serves the DynamoDB run-manifest module, which the
cross-check never imports. It is kept out of our own environment on purpose (2017 code, and
nothing of ours may come to depend on it). Runnable as a script to pre-build it:
``python tests/integration/snowplow/_venv.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REQUIREMENTS = ("snowplow-analytics-sdk==0.2.3",)
MARKER = ".osds-venv.json"
NAME = "snowplow-sdk-0.2.3"


def venv_dir() -> Path:
    """Where the SDK's virtualenv lives."""
    cache = os.environ.get("OSDS_VENV_CACHE")
    if cache:
        return Path(cache) / NAME
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "airflow-osds" / "venvs" / NAME


def ensure_sdk_venv() -> Path:
    """Return the ``python`` of the SDK's virtualenv, creating the virtualenv if needed.

    :raises RuntimeError: the virtualenv could not be created (the caller's test must fail).
    """
    root = venv_dir()
    python = root / "bin" / "python"
    marker = root / MARKER
    wanted: dict[str, object] = {"requirements": list(REQUIREMENTS)}
    if python.exists() and marker.exists():
        try:
            if json.loads(marker.read_text()).get("requirements") == wanted["requirements"]:
                return python
        except ValueError:
            pass  # a corrupt marker: rebuild
    # Only ever delete something that is (or was meant to be) our virtualenv.
    if root.exists() and any(root.iterdir()) and not (root / "pyvenv.cfg").exists():
        raise RuntimeError(f"{root} exists and is not a virtualenv; refusing to replace it.")
    shutil.rmtree(root, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    base = shutil.which("python3") or sys.executable
    steps = [
        [base, "-m", "venv", str(root)],
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps", *REQUIREMENTS],
        [str(python), "-c", "import snowplow_analytics_sdk.event_transformer"],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(step)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    wanted["seconds"] = round(time.monotonic() - started, 1)
    marker.write_text(json.dumps(wanted, indent=2))
    return python


if __name__ == "__main__":
    print(ensure_sdk_venv())
