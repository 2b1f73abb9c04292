"""Import time of each operator and sensor module of airflow_osds, in a fresh process after ``import airflow.sdk``.

A worker running a Python DAG's task imports the operator's module; nothing of the YAML
factory (``airflow_osds.factory``, the pydantic step models) should come along. Each import
runs in a child forked from a server that has imported ``airflow.sdk`` only.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from envs import PROJECT_PYTHON, WORK, ChildFailed, child_env
from runners import ForkServer

__all__ = ["NAMED_MODULES", "measure_imports", "operator_modules"]

NAMED_MODULES = ("airflow_osds.operators.sql", "airflow_osds.operators.dbt", "airflow_osds.sensors.path")
_PROVIDER_MODULES = (
    "import json\n"
    "from airflow_osds.get_provider_info import get_provider_info\n"
    "info = get_provider_info()\n"
    "print(json.dumps([m for key in ('operators', 'sensors') for e in info.get(key, []) for m in e['python-modules']]))\n"
)


def operator_modules() -> list[str]:
    """The named modules plus every module under ``operators`` / ``sensors`` of the provider info, now."""
    proc = subprocess.run([str(PROJECT_PYTHON), "-c", _PROVIDER_MODULES], capture_output=True, text=True, check=True)
    return list(dict.fromkeys([*NAMED_MODULES, *json.loads(proc.stdout)]))


def measure_imports(reps: int) -> dict[str, dict[str, Any]]:
    """Module → ``times`` (s) and what its first import brought along, or ``error``."""
    modules = operator_modules()
    env = child_env(Path(tempfile.mkdtemp(prefix="imports-", dir=WORK / "homes")), WORK / "inputs")
    out: dict[str, dict[str, Any]] = {m: {"times": []} for m in modules}
    with ForkServer(PROJECT_PYTHON, env, WORK / "logs" / "imports.log", base_imports=("airflow.sdk",)) as server:
        for rep in range(reps + 1):  # the first round writes .pyc files: not measured
            for module in modules:
                if "error" in out[module]:
                    continue
                try:
                    r = server.request({"kind": "import", "module": module})
                except ChildFailed as exc:
                    out[module]["error"] = str(exc).strip().splitlines()[-1][:300]
                    continue
                if rep:
                    out[module]["times"].append(r.pop("import_s"))
                    out[module].update(r)
    for module, r in out.items():
        print(f"bench: import {module}: " + (r.get("error") or f"{min(r['times']) * 1000:.0f} ms (min)"),
              file=sys.stderr, flush=True)
    return out
