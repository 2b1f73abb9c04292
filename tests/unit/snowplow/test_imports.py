"""The Snowplow engine imports without Airflow, and defers its heavy dependencies to first use.

httpx (~200 ms), jsonschema (~200 ms), tenacity and fastjsonschema are imported by the first
HTTP lookup, the first invalid datum, the first validation — not by importing the modules.
"""

from __future__ import annotations

import subprocess
import sys

MODULES = [
    "airflow_osds.snowplow",
    "airflow_osds.snowplow.keys",
    "airflow_osds.snowplow.registries",
    "airflow_osds.snowplow.iglu",
    "airflow_osds.snowplow.tables",
    "airflow_osds.snowplow.entities",
]
HEAVY = ("airflow", "httpx", "jsonschema", "tenacity", "fastjsonschema", "psycopg", "referencing")

_CHECK = """
import importlib, sys
for module in sys.argv[2:]:
    importlib.import_module(module)
if sys.argv[1] == "use":
    from airflow_osds.snowplow.iglu import Resolver, SchemaKey
    from airflow_osds.snowplow import entities
    resolver = Resolver([])
    entities.extract("contexts", '{"schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1", "data": []}', resolver)
heavy = %r
print("loaded:", sorted({m.split(".")[0] for m in sys.modules if m.split(".")[0] in heavy}))
""" % (HEAVY,)


def _loaded(mode: str, *modules: str) -> str:
    result = subprocess.run([sys.executable, "-c", _CHECK, mode, *modules], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_importing_loads_none_of_the_heavy_dependencies() -> None:
    assert _loaded("import", *MODULES) == "loaded: []"


def test_validating_valid_data_needs_only_fastjsonschema() -> None:
    assert _loaded("use", *MODULES) == "loaded: ['fastjsonschema']"
