"""The dbt engine imports without Airflow and without dbt (both are slow to import at parse time)."""

from __future__ import annotations

import subprocess
import sys

MODULES = ["airflow_osds.dbt", "airflow_osds.dbt.artifacts", "airflow_osds.dbt.errors",
           "airflow_osds.dbt.graph", "airflow_osds.dbt.selection"]

_CHECK = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("airflow", "dbt", "pydantic"):
            raise ImportError(f"blocked in this test: {name}")
sys.meta_path.insert(0, _Block())
import importlib
for module in sys.argv[1:]:
    importlib.import_module(module)
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("airflow", "dbt", "pydantic"))
print("leaked:", leaked)
"""


def test_imports_without_airflow_dbt_or_pydantic() -> None:
    result = subprocess.run([sys.executable, "-c", _CHECK, *MODULES], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "leaked: []"


def test_the_blocker_blocks_dbt() -> None:
    result = subprocess.run([sys.executable, "-c", _CHECK, "dbt.version"], capture_output=True, text=True)
    assert result.returncode != 0 and "blocked in this test: dbt" in result.stderr
