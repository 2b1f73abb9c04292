"""Running an operator never imports the factory: no YAML, pydantic models, planner or SQL parser."""

from __future__ import annotations

import json
import subprocess
import sys

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


@pytest.mark.parametrize("module", MODULES)
def test_operator_module_imports_no_factory(module: str) -> None:
    result = subprocess.run([sys.executable, "-c", _IMPORT, module], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    imported = json.loads(result.stdout.splitlines()[-1])
    assert module in imported, "the probe sees what the import pulled in"
    assert not [m for m in imported if m.startswith(("airflow_osds.factory", "airflow_osds.sql", "sqlglot"))], imported
