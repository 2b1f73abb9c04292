"""Running an operator never imports the factory: no YAML, pydantic models, planner or SQL parser.

Each module is imported in a fresh interpreter of its own (what an Airflow worker pays at
parse time); the interpreters run side by side, started together for all the selected cases
by one fixture, and each case checks its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from airflow_osds.get_provider_info import get_provider_info

MODULES = sorted(
    {m for kind in ("operators", "sensors", "hooks") for group in get_provider_info()[kind] for m in group["python-modules"]}
)

_IMPORT = """
import json, sys
import airflow.sdk
before = set(sys.modules)
__import__(sys.argv[1])
print(json.dumps(sorted(m for m in set(sys.modules) - before if m.startswith(("airflow_osds", "sqlglot")))))
"""

# Interpreters at once: one per core (importing Airflow is CPU-bound), at least two.
_WORKERS = max(2, os.cpu_count() or 1)


def _probe(module: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _IMPORT, module], capture_output=True, text=True)


@pytest.fixture(scope="module")
def probes(request: pytest.FixtureRequest) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every selected case's interpreter, run concurrently: module name → its completed process."""
    wanted = [
        item.callspec.params["module"]
        for item in request.session.items
        if item.module is request.module and hasattr(item, "callspec") and "module" in item.callspec.params
    ]
    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        return dict(zip(wanted, pool.map(_probe, wanted)))


@pytest.mark.parametrize("module", MODULES)
def test_operator_module_imports_no_factory(module: str, probes: dict[str, subprocess.CompletedProcess[str]]) -> None:
    result = probes[module]
    assert result.returncode == 0, result.stderr
    imported = json.loads(result.stdout.splitlines()[-1])
    assert module in imported, "the probe sees what the import pulled in"
    assert not [m for m in imported if m.startswith(("airflow_osds.factory", "airflow_osds.sql", "sqlglot"))], imported
