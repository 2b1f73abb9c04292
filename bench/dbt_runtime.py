"""Shape E's runtime part: what ``granularity: model`` costs at run time on a 20-model project (dbt_runtime_child.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

from dbt_project import ensure_project
from envs import BENCH_DIR, PROJECT_PYTHON, WORK, ChildFailed

__all__ = ["measure_runtime"]

CHILD = BENCH_DIR / "dbt_runtime_child.py"


def measure_runtime(reps: int) -> dict[str, Any]:
    """``reps`` rounds of one ``dbt build`` vs one ``dbt build --select path:<file>`` per model, embedded PostgreSQL."""
    work = WORK / "dbt"
    small = ensure_project(work / "project-small", 20, 4, parse=False)
    files = work / "project-small-files.json"
    files.write_text(json.dumps(small.model_files))
    out = work / "runtime.json"
    out.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    t0 = time.monotonic()
    proc = subprocess.run([str(PROJECT_PYTHON), str(CHILD), str(small.path), str(files), str(reps), str(out)],
                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=3600)
    for line in proc.stderr.splitlines():
        if line.startswith("bench:"):
            print(line, file=sys.stderr, flush=True)
    if proc.returncode != 0 or not out.exists():
        raise ChildFailed(f"{CHILD.name} exited {proc.returncode}:\n" + "\n".join(proc.stderr.splitlines()[-15:]))
    result: dict[str, Any] = json.loads(out.read_text())
    result["wall_s"] = time.monotonic() - t0
    result["tests"] = small.tests
    return result
