"""Engine modules import without Airflow (they are used by tools and tests that run without it)."""

from __future__ import annotations

import subprocess
import sys

ENGINE_MODULES = [
    "airflow_osds",
    "airflow_osds.assets",
    "airflow_osds.background",
    "airflow_osds.dbt.artifacts",
    "airflow_osds.dbt.graph",
    "airflow_osds.dbt.invocation",
    "airflow_osds.dbt.partial_parse",
    "airflow_osds.dbt.state",
    "airflow_osds.dbt.profiles",
    "airflow_osds.dbt.runner",
    "airflow_osds.dbt.freshness",
    "airflow_osds.dbt.selection",
    "airflow_osds.dbt.yaml_selectors",
    "airflow_osds.cli",
    "airflow_osds.embedded",
    "airflow_osds.exceptions",
    "airflow_osds.factory",
    "airflow_osds.factory.build",
    "airflow_osds.factory.cache",
    "airflow_osds.factory.compile",
    "airflow_osds.factory.compiled",
    "airflow_osds.factory.loader",
    "airflow_osds.factory.plan",
    "airflow_osds.factory.project",
    "airflow_osds.factory.spec",
    "airflow_osds.snowplow",
    "airflow_osds.superset",
    "airflow_osds.superset.client",
    "airflow_osds.superset.local",
    "airflow_osds.superset.refresh",
    "airflow_osds.snowplow.entities",
    "airflow_osds.snowplow.iglu",
    "airflow_osds.snowplow.keys",
    "airflow_osds.snowplow.registries",
    "airflow_osds.snowplow.tables",
    "airflow_osds.snowplow.validation",
    "airflow_osds.singer",
    "airflow_osds.singer.columns",
    "airflow_osds.singer.meltano",
    "airflow_osds.singer.plugins",
    "airflow_osds.singer.runner",
    "airflow_osds.singer.state",
    "airflow_osds.singer.target_postgres",
    "airflow_osds.sql",
    "airflow_osds.lineage",
    "airflow_osds.localrun",
    "airflow_osds.reverse_etl.delivery",
    "airflow_osds.reverse_etl.destinations.base",
    "airflow_osds.reverse_etl.destinations.http",
    "airflow_osds.reverse_etl.destinations.hubspot",
    "airflow_osds.reverse_etl.destinations.mailchimp",
    "airflow_osds.reverse_etl.destinations.postgres",
    "airflow_osds.reverse_etl.diff",
    "airflow_osds.reverse_etl.preview",
    "airflow_osds.reverse_etl.spec",
    "airflow_osds.reverse_etl.sync",
    "airflow_osds.snowplow",
    "airflow_osds.snowplow.fields",
    "airflow_osds.snowplow.tsv",
    "airflow_osds.snowplow.badrows",
    "airflow_osds.snowplow.generate",
]

_BLOCK_AIRFLOW = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name == "airflow" or name.startswith("airflow."):
            raise ImportError(f"airflow is blocked in this test: {name}")
sys.meta_path.insert(0, _Block())
import importlib
for module in sys.argv[1:]:
    importlib.import_module(module)
print("ok")
"""


def test_engine_modules_import_without_airflow() -> None:
    result = subprocess.run([sys.executable, "-c", _BLOCK_AIRFLOW, *ENGINE_MODULES], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_the_blocker_does_block_airflow() -> None:
    result = subprocess.run([sys.executable, "-c", _BLOCK_AIRFLOW, "airflow_osds.hooks.superset"], capture_output=True, text=True)
    assert result.returncode != 0 and "airflow is blocked" in result.stderr
