"""The package's wheel, built from a copy of its sources.

``pip wheel .`` in the checkout leaves ``airflow_osds.egg-info/`` and ``build/`` there. With the
checkout on ``PYTHONPATH`` (as the tests run), ``importlib.metadata`` then finds a second
``airflow-osds`` distribution: Airflow registers the osds plugin twice and a later
``airflow dags test`` emits no task-level OpenLineage events (tests/e2e/test_openlineage.py fails
after any test that built the wheel in place).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# What setup.cfg and pyproject.toml build from: metadata, the long description and the package.
_SOURCES = ("setup.cfg", "pyproject.toml", "README.md", "airflow_osds")


def build_wheel(dest: Path) -> Path:
    """Build the airflow-osds wheel (no dependencies) into ``dest``; returns its path."""
    source = dest / "src"
    for name in _SOURCES:
        path = REPO_ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            source.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, source / name)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dest), str(source)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = dest.glob("airflow_osds-*.whl")
    return wheel
